"""The article's worked examples and size table, reproduced bit for bit."""

from __future__ import annotations

import io

import numpy as np
from conftest import kmq_bytes
from PIL import Image

from pil_kmq import decode_kmq, size_report


def test_100x100_at_k16_takes_40000_index_bits_and_384_codebook_bits(parrot: Image.Image) -> None:
    data = kmq_bytes(parrot, k=16, compression="none")
    header, _ = decode_kmq(data)
    report = size_report(header)
    assert report.original_bits == 240_000
    assert report.index_bits == 40_000
    assert report.codebook_bits == 384
    assert report.payload_bits == 40_384
    assert round(report.payload_bits / report.original_bits, 3) == 0.168  # the article's 16.8 %
    assert report.total_bits == len(data) * 8 == 40_384 + (44 + 4) * 8


def test_227x303_at_k2_takes_68781_index_bits_and_48_codebook_bits(ihc: Image.Image) -> None:
    assert ihc.size == (303, 227)
    data = kmq_bytes(ihc, k=2, compression="none")
    header, (indices, codebook) = decode_kmq(data)
    report = size_report(header)
    assert report.original_bits == 1_650_744
    assert report.index_bits == 68_781
    assert report.codebook_bits == 48
    assert report.payload_bits == 68_829
    assert round(report.payload_bits / report.original_bits, 2) == 0.04
    assert report.overhead_bits == (44 + 4) * 8 + 3  # header, file_crc and 3 padding bits
    assert len(data) == 8_652


def test_k2_segments_the_slide_into_two_stains(ihc: Image.Image) -> None:
    """The article's K=2 result: stained tissue vs. pale background, each a real share of the slide."""
    _, (indices, codebook) = decode_kmq(kmq_bytes(ihc, k=2))
    shares = np.bincount(indices.ravel(), minlength=2) / indices.size
    assert shares.min() > 0.2
    brightness = codebook.astype(int).sum(axis=1)
    assert abs(brightness[0] - brightness[1]) > 150


def test_quality_improves_with_k_as_in_the_article_figure(ihc: Image.Image) -> None:
    source = np.asarray(ihc, float)
    errors = []
    for k in (2, 3, 6, 16):
        with Image.open(io.BytesIO(kmq_bytes(ihc, k=k))) as image:
            errors.append(((np.asarray(image, float) - source) ** 2).sum(axis=2).mean())
    assert errors == sorted(errors, reverse=True)


def test_size_report_prints_the_article_rows(ihc: Image.Image) -> None:
    header, _ = decode_kmq(kmq_bytes(ihc, k=2, compression="none"))
    text = str(size_report(header))
    for expected in ("1,650,744", "68,781", "48", "68,829", "0.0417"):
        assert expected in text
