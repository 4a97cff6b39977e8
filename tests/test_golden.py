"""The committed golden files in samples/ decode to their committed pixels: any change to bytes on disk shows."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image

from pil_kmq import decode_kmq, reconstruct_image

sys.path.insert(0, str(SAMPLES))
from regenerate import GOLDEN, KEPT, WITH_METADATA, expected_path

NAMES = [entry[0] for entry in GOLDEN + KEPT]


def test_every_golden_file_is_committed() -> None:
    for name in NAMES:
        assert (SAMPLES / name).is_file(), name
        assert expected_path(name).is_file(), name


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_decodes_to_expected_pixels(name: str) -> None:
    with Image.open(expected_path(name)) as expected, Image.open(SAMPLES / name) as image:
        assert image.format == "KMQ"
        assert (image.mode, image.size) == (expected.mode, expected.size)
        assert image.tobytes() == expected.tobytes()


@pytest.mark.parametrize("name", NAMES)
def test_golden_file_decodes_the_same_through_numpy_api_and_parser(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    header, (indices, codebook) = decode_kmq(data)
    with Image.open(expected_path(name)) as expected:
        assert np.array_equal(reconstruct_image(indices, codebook), np.asarray(expected))
        with Image.open(io.BytesIO(data)) as image:
            image.verify()


@pytest.mark.parametrize("name", sorted(WITH_METADATA))
def test_golden_metadata_is_what_its_expected_png_carries(name: str) -> None:
    """ICC profile, EXIF and XMP: the expected PNG holds them too, so a decoder written from the
    spec can check them against it, not against prose."""
    with Image.open(expected_path(name)) as expected, Image.open(SAMPLES / name) as image:
        expected.load()
        for key in ("icc_profile", "exif", "xmp"):
            assert image.info[key] == expected.info[key], key
        assert image.getexif()[0x0112] == 6


# Uncoded and near_flat lossless files depend on nothing but the spec; zstd's bytes may change
# with the library version, so zstd and zlib goldens are checked by decoding only.
LOSSLESS = {"kodim03-p12-k16.kmq", "kodim23-k1.kmq", "kodim03-p12-k16-near.kmq", "labels-flat.kmq", "labels-gray-flat.kmq", "labels300-flat.kmq"}


@pytest.mark.parametrize(("name", "source", "mode", "k", "compression"), [g for g in GOLDEN if g[0] in LOSSLESS])
def test_encoder_reproduces_exact_golden_bytes(name: str, source: str, mode: str, k: int, compression: str) -> None:
    """Lossless and k = 1 files do not depend on k-means numerics: the writer must match byte for byte."""
    with Image.open(SAMPLES / source) as image:
        out = io.BytesIO()
        image.convert(mode).save(out, "KMQ", k=k, seed=0, compression=compression)
    assert out.getvalue() == (SAMPLES / name).read_bytes()


def test_lossy_golden_files_are_near_the_source() -> None:
    with Image.open(SAMPLES / "ihc.png") as source, Image.open(SAMPLES / "ihc-k16.kmq") as image:
        error = np.asarray(source.convert("RGB"), float) - np.asarray(image, float)
        mse = (error**2).sum(axis=2).mean()
    assert mse < 300  # 16 colours for an IHC slide: PSNR above ~28 dB per channel
