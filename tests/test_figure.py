"""kmq compare and pil_kmq.figure: the article's figure, with true sizes and PSNR."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, kmq_bytes
from PIL import Image

from pil_kmq import figure
from pil_kmq.cli import main
from pil_kmq.figure import MARGIN


def numpy_psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    mse = np.mean((original.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def region(image: Image.Image, left: int, top: int, size: tuple[int, int]) -> bytes:
    return image.crop((left, top, left + size[0], top + size[1])).tobytes()


def test_round_trip_is_the_file_image_save_writes(ihc: Image.Image) -> None:
    trip = figure.round_trip(ihc, 6, seed=3, compression="zlib")
    assert trip.data == kmq_bytes(ihc, k=6, seed=3, compression="zlib")
    with Image.open(io.BytesIO(trip.data)) as kmq:
        assert trip.image.mode == kmq.mode and trip.image.tobytes() == kmq.tobytes()
        assert trip.header == kmq.kmq_header


def test_round_trip_figures_are_the_articles(ihc: Image.Image) -> None:
    # K = 2 with the bit-packed stream: the article's 68,781 index bits, + header, codebook, CRC.
    trip = figure.round_trip(ihc, 2, compression="none")
    assert trip.file_bytes == len(trip.data) == 8652
    assert trip.bits_per_pixel == 8 * 8652 / (303 * 227)
    assert trip.original_bytes == 303 * 227 * 3 == 206_343
    assert trip.ratio == 8652 / 206_343
    assert trip.psnr == pytest.approx(
        numpy_psnr(np.asarray(ihc), np.asarray(trip.image)), rel=1e-12
    )
    assert trip.caption() == [
        "K = 2",
        "1.006 bits per pixel",
        "8,652 bytes, ratio 4.19%",
        f"PSNR {trip.psnr:.2f} dB",
    ]
    assert 15 < trip.psnr < figure.round_trip(ihc, 16).psnr < 60


def test_lossless_round_trip_has_infinite_psnr_and_says_how_many_colours(
    palette_image: Image.Image,
) -> None:
    trip = figure.round_trip(palette_image, 16)  # 12 colours, so stored exactly
    assert trip.mse == 0 and trip.psnr == math.inf and trip.header.k == 12
    assert (
        trip.caption()[0] == "K = 16 (12 colours)"
        and trip.caption()[-1] == "PSNR ∞ dB (lossless)"
    )
    assert figure.original_caption(palette_image, trip.image.mode) == [
        "original",
        "96 × 64 P as RGB",
        f"{96 * 64 * 3:,} bytes raw",
        "24 bits per pixel",
    ]


def test_psnr_with_alpha_is_the_psnr_option_s_measure(ihc: Image.Image) -> None:
    """All channels, alpha included, but not the colour under full transparency: the same
    measure psnr= targets, so `kmq compare` shows what psnr= promised."""
    alpha = np.zeros((227, 303), np.uint8)
    alpha[:, 100:200], alpha[:, 200:] = 128, 255
    rgba = ihc.copy()
    rgba.putalpha(Image.fromarray(alpha))
    trip = figure.round_trip(rgba, 16)
    assert trip.image.mode == "RGBA" and trip.original_bytes == 303 * 227 * 4

    def as_seen(image: Image.Image) -> np.ndarray:
        values = np.asarray(image, dtype=np.float64).copy()
        values[values[..., 3] == 0] = 0
        return values

    assert trip.psnr == pytest.approx(
        numpy_psnr(as_seen(rgba), as_seen(trip.image)), rel=1e-9
    )
    # psnr= at the PSNR the figure reports for k = 16 needs no more than 16 entries (with
    # bit-packed indices, where psnr= looks for the smallest k, not for traded indices).
    with Image.open(io.BytesIO(kmq_bytes(rgba, psnr=trip.psnr - 1e-6, compression="none"))) as chosen:
        assert chosen.kmq_header.k <= 16
    # The colour under a fully transparent pixel does not count.
    recoloured = np.asarray(rgba).copy()
    recoloured[:, :100, :3] = 255 - recoloured[:, :100, :3]
    assert (
        figure.mean_squared_error(Image.fromarray(recoloured), trip.image) == trip.mse
    )


def test_figure_puts_captioned_panels_side_by_side(ihc: Image.Image) -> None:
    drawn = figure.comparison_figure(ihc, [2, 16])
    assert drawn.mode == "RGB" and drawn.width == 3 * 303 + 4 * MARGIN
    cell_height = drawn.height - 2 * MARGIN
    assert cell_height > 227 + 4 * 15  # four lines of captions under the panels
    trips = [figure.round_trip(ihc, k) for k in (2, 16)]
    for column, image in enumerate([ihc, *(trip.image for trip in trips)]):
        left = MARGIN + column * (303 + MARGIN)
        assert region(drawn, left, MARGIN, (303, 227)) == image.tobytes()
        caption = np.asarray(
            drawn.crop((left, MARGIN + 227, left + 303, drawn.height - MARGIN)).convert(
                "L"
            )
        )
        assert (caption < 100).sum() > 200  # text is drawn
    gutter = np.asarray(drawn.crop((MARGIN + 303, 0, 2 * MARGIN + 303, drawn.height)))
    assert (gutter == 255).all()


def test_width_scales_every_panel(ihc: Image.Image) -> None:
    drawn = figure.comparison_figure(ihc, [4], width=150)
    size = (150, round(227 * 150 / 303))
    cell_width = (drawn.width - 3 * MARGIN) // 2
    assert drawn.width == 2 * cell_width + 3 * MARGIN and cell_width >= 150
    left = MARGIN + (cell_width - 150) // 2
    assert (
        region(drawn, left, MARGIN, size)
        == ihc.resize(size, Image.Resampling.LANCZOS).tobytes()
    )


def test_many_ks_wrap_into_rows(palette_image: Image.Image) -> None:
    ks = [1, 2, 3, 4, 6, 8, 12]  # 8 panels with the original: two rows of four
    drawn = figure.comparison_figure(palette_image, ks)
    cell_width, cell_height = (
        (drawn.width - 5 * MARGIN) / 4,
        (drawn.height - 3 * MARGIN) / 2,
    )
    assert cell_width == int(cell_width) >= 96 and cell_height == int(cell_height) > 64
    fifth = figure.round_trip(palette_image, ks[3]).image  # first of the second row
    left, top = MARGIN + (int(cell_width) - 96) // 2, 2 * MARGIN + int(cell_height)
    assert region(drawn, left, top, (96, 64)) == fifth.tobytes()
    three_rows = figure.comparison_figure(palette_image, ks[:4], columns=2)
    assert (three_rows.height - 4 * MARGIN) / 3 == cell_height


def test_figure_needs_a_k_and_a_positive_width(ihc: Image.Image) -> None:
    with pytest.raises(ValueError, match="at least one K"):
        figure.comparison_figure(ihc, [])
    with pytest.raises(ValueError, match="width must be a positive"):
        figure.comparison_figure(ihc, [2], width=0)


def test_compare_writes_the_figure_and_prints_its_numbers(
    tmp_path: Path, ihc: Image.Image, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grid.png"
    assert (
        main(
            [
                "compare",
                str(SAMPLES / "ihc.png"),
                "-k",
                "2",
                "16",
                "-o",
                str(out),
                "--seed",
                "1",
            ]
        )
        == 0
    )
    expected = figure.comparison_figure(ihc, [2, 16], seed=1)
    with Image.open(out) as written:
        assert written.format == "PNG" and written.size == expected.size
        assert written.tobytes() == expected.tobytes()
    table = capsys.readouterr().out.splitlines()
    assert table[1] == "original: 303 x 227 RGB, 206,343 bytes raw"
    for line, k in zip(table[3:], (2, 16), strict=True):
        trip = figure.round_trip(ihc, k, seed=1)
        assert line.split() == [
            str(k),
            str(trip.header.k),
            f"{trip.file_bytes:,}",
            f"{trip.bits_per_pixel:.3f}",
            f"{trip.ratio:.2%}",
            f"{trip.psnr:.2f}",
        ]
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary left


def test_compare_defaults_to_the_articles_ks_and_writes_any_format(
    tmp_path: Path,
) -> None:
    out = tmp_path / "grid.jpg"
    assert main(["compare", str(SAMPLES / "kodim23.png"), "-o", str(out), "-q"]) == 0
    with Image.open(out) as written:
        assert written.format == "JPEG"
        cell_width = (
            written.width - 6 * MARGIN
        ) / 5  # the original and K = 2, 3, 6, 16 in a row
        assert cell_width == int(cell_width) >= 100
        assert 100 < written.height - 2 * MARGIN < 300


def test_compare_dither_is_passed_to_the_encoder(parrot: Image.Image) -> None:
    dithered = figure.round_trip(parrot, 6, dither=True)
    assert dithered.data == kmq_bytes(parrot, k=6, dither=True)
    assert dithered.data != figure.round_trip(parrot, 6).data


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.png"], "kmq: error: missing.png: no such file"),
        (
            [str(SAMPLES / "ihc.png"), "-k", "2", "0"],
            "k must be an int from 1 to 65,536, not 0",
        ),
        ([str(SAMPLES / "ihc.png"), "-k", "two"], "k must be an int, not 'two'"),
        (
            [str(SAMPLES / "ihc.png"), "--width", "0"],
            "width must be a positive int, not '0'",
        ),
        ([str(SAMPLES / "regenerate.py")], "not an image format Pillow can read"),
    ],
)
def test_compare_errors_are_one_line_and_write_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        status = main(["compare", *args, "-o", "grid.png"])
    except SystemExit as usage:  # argparse's usage errors
        status = usage.code  # type: ignore[assignment]
    assert status in (1, 2)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and message in err[0] and err[0].startswith("kmq: error:")
    assert list(tmp_path.iterdir()) == []


def test_compare_unknown_extension_fails_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["compare", str(SAMPLES / "ihc.png"), "-o", str(tmp_path / "grid.nope")])
        == 2  # a usage error: the name asks for a format Pillow cannot write
    )
    assert (
        "cannot write files with extension '.nope'; pass --format"
        in capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []


def test_compare_to_stdout_keeps_the_table_on_stderr() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pil_kmq",
            "compare",
            str(SAMPLES / "kodim23.png"),
            "-k",
            "4",
            "-o",
            "-",
            "--format",
            "PNG",
        ],
        check=False,
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.startswith(b"\x89PNG")
    assert b"bits/pixel" in result.stderr
