"""The CLI takes the images a user has (--convert), keeps metadata in every output format it
names, names the user's paths, follows one exit-code table, and shows progress on a terminal."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image, ImageCms

from pil_kmq import decode_kmq, modes, stream
from pil_kmq.cli import main

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/"/><?xpacket end="w"?>'


def _sixteen_bit(path: Path) -> np.ndarray:
    values = (np.arange(64 * 32, dtype=np.uint32).reshape(32, 64) * 32).astype(np.uint16)
    Image.fromarray(values).save(path)
    return values


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_images_need_convert_and_are_scaled_not_clipped(tmp_path: Path, suffix: str, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / f"grey16{suffix}"
    values = _sixteen_bit(source)
    out = tmp_path / "grey.kmq"
    assert main(["encode", "-q", str(source), str(out)]) == 1
    error = capsys.readouterr().err
    assert f"{source}: mode 'I;16' is not stored as it is" in error and "--convert converts it (16-bit grey: scaled to 8-bit L" in error
    assert main(["encode", "-q", "--convert", "-k", "256", str(source), str(out)]) == 0
    with Image.open(out) as image:
        decoded = np.asarray(image)
    expected = (values.astype(np.int64) * 255 + 32_767) // 65_535
    assert image.mode == "L" and np.abs(decoded.astype(int) - expected).max() <= 1  # 256 levels kept: only rounding
    assert decoded.max() > 200  # not Pillow's convert("L"), which clips all but the darkest to 255


def test_convert_command_takes_convert_too(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    _sixteen_bit(tmp_path / "in" / "a.png")
    assert main(["convert", "-q", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 1
    assert main(["convert", "-q", "--convert", str(tmp_path / "in"), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "a.kmq").exists()


def test_cmyk_becomes_srgb_with_or_without_a_usable_profile(tmp_path: Path) -> None:
    """Without a profile (or with one lcms cannot read) Pillow's formula is used; the stored
    profile is sRGB either way, since the old one would describe the colours wrongly."""
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red ink
    cmyk.save(tmp_path / "plain.jpg")
    cmyk.save(tmp_path / "profiled.jpg", icc_profile=b"not a profile")
    for source in (tmp_path / "plain.jpg", tmp_path / "profiled.jpg"):
        out = tmp_path / f"{source.stem}.kmq"
        assert main(["encode", "-q", "--convert", str(source), str(out)]) == 0
        with Image.open(out) as image:
            assert image.mode == "RGB"
            red, green, blue = image.getpixel((8, 8))
            assert red > 200 and green < 60 and blue < 60
            assert image.info["icc_profile"] == modes.srgb_profile()  # the same bytes on any day


def test_float_images_in_0_to_1_are_scaled(tmp_path: Path) -> None:
    image = Image.fromarray(np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8), "F")
    converted = modes.to_storable(image)
    assert converted.mode == "L" and converted.getpixel((7, 7)) == 255 and converted.getpixel((0, 0)) == 0


def test_the_api_keeps_refusing_lossy_conversions() -> None:
    with pytest.raises(ValueError, match="pil_kmq.modes.to_storable"):
        Image.new("I;16", (4, 4)).save(io.BytesIO(), "KMQ")


def _image_with_metadata(tmp_path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Scanner Co"
    path = tmp_path / "meta.kmq"
    Image.open(SAMPLES / "kodim23.png").convert("RGB").save(path, k=8, icc_profile=SRGB, exif=exif, xmp=XMP)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg", ".webp"])
def test_decode_keeps_icc_exif_and_xmp_in_every_format_the_readme_names(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    assert main(["decode", str(_image_with_metadata(tmp_path)), str(out)]) == 0
    with Image.open(out) as image:
        assert image.info["icc_profile"] == SRGB
        xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp")
        assert XMP in (xmp if isinstance(xmp, bytes) else xmp.encode())
        if suffix == ".tif":  # Pillow turns a TIFF upright on open: the tag is in the file
            assert image.tag_v2[0x0112] == 6 and image.tag_v2[0x010F] == "Scanner Co"
        else:
            assert image.getexif()[0x0112] == 6 and image.getexif()[0x010F] == "Scanner Co"


def test_decode_to_stdout_without_format_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decode", str(SAMPLES / "kodim23-k16.kmq"), "-"]) == 2
    assert "needs --format" in capsys.readouterr().err


def test_info_on_a_truncated_file_warns_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cut = tmp_path / "cut.kmq"
    cut.write_bytes((SAMPLES / "kodim23-k16.kmq").read_bytes()[:-100])
    assert main(["info", str(cut)]) == 1
    assert f"kmq: warning: {cut}: file is truncated" in capsys.readouterr().err


def test_write_errors_name_the_users_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "nope" / "y.kmq"
    assert main(["encode", "-q", str(SAMPLES / "kodim23.png"), str(target)]) == 1
    error = capsys.readouterr().err
    assert error == f"kmq: error: {target}: cannot write: No such file or directory\n"


def test_kmq_under_a_foreign_extension_gets_a_warning_unless_meant(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", "-q", str(SAMPLES / "kodim23.png"), str(tmp_path / "weird.png")]) == 0
    assert "KMQ written to a name whose extension means PNG" in capsys.readouterr().err
    assert main(["encode", "-q", "--format", "KMQ", str(SAMPLES / "kodim23.png"), str(tmp_path / "meant.png")]) == 0
    assert capsys.readouterr().err == ""


def test_python_m_names_itself() -> None:
    result = subprocess.run([sys.executable, "-m", "pil_kmq", "--help"], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.startswith("usage: python -m pil_kmq")
    assert "exit status: 0 done; 1 a file failed" in " ".join(result.stdout.split())


def test_every_option_shows_its_default_in_help() -> None:
    for command in ("encode", "convert", "compare"):
        result = subprocess.run([sys.executable, "-m", "pil_kmq", command, "--help"], capture_output=True, text=True, check=True, timeout=60)
        text = " ".join(result.stdout.split())
        for default in ("(default 16", "(default 0)", "(default auto", "(default: refuse them)"):
            if command == "compare" and default == "(default 16":
                continue  # compare's -k lists the article's Ks
            assert default in text, (command, default)


def _run_on_a_terminal(arguments: list[str]) -> str:
    """stderr of the command when it is a terminal."""
    main_fd, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen([sys.executable, "-m", "pil_kmq", *arguments], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(main_fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    process.wait(timeout=300)
    os.close(main_fd)
    return seen.decode("utf-8", "replace")


def test_long_work_shows_progress_on_a_terminal_and_not_with_q(tmp_path: Path) -> None:
    shown = _run_on_a_terminal(["encode", str(SAMPLES / "ihc.png"), str(tmp_path / "a.kmq"), "--psnr", "33"])
    assert "kmq: ihc.png: psnr 33 dB" in shown
    quiet = _run_on_a_terminal(["encode", "-q", str(SAMPLES / "ihc.png"), str(tmp_path / "b.kmq"), "--psnr", "33"])
    assert quiet == ""
    compared = _run_on_a_terminal(["compare", str(SAMPLES / "kodim23.png"), "-o", str(tmp_path / "c.png"), "-k", "2", "4"])
    assert "kmq: kodim23.png" in compared


@pytest.mark.parametrize("k", [16, 256, 300])
def test_one_index_dtype_rule_everywhere(tmp_path: Path, k: int) -> None:
    """uint8 when the stored k is at most 256, else uint16: compress_image, decode_kmq, read_rows."""
    import pil_kmq

    image = np.asarray(Image.open(SAMPLES / "kodim23.png").convert("RGB"))
    indices, codebook = pil_kmq.compress_image(image, k=k)
    expected = np.uint8 if len(codebook) <= 256 else np.uint16
    assert len(codebook) > 256 or k <= 256
    assert indices.dtype == expected
    data = pil_kmq.encode_kmq(indices, codebook)
    assert decode_kmq(data)[1].indices.dtype == expected
    (tmp_path / "x.kmq").write_bytes(data)
    with stream.open_kmq(tmp_path / "x.kmq") as reader:
        assert reader.read_rows(0, 10, indices=True).dtype == expected
