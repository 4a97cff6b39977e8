"""ICC profile, EXIF (orientation included) and XMP survive KMQ (spec 5.1): never silently dropped."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, kmq_bytes
from PIL import Image, ImageCms, ImageOps

import pil_kmq
from pil_kmq.format import HEADER_SIZE, parse_extensions, parse_header

ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"/></x:xmpmeta>'


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "pil_kmq test camera"  # Make
    return exif


def reopened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.fixture(scope="module")
def jpeg_with_metadata(ihc: Image.Image) -> Image.Image:
    """A JPEG as cameras and slide scanners write them: ICC profile, EXIF with orientation, XMP."""
    buffer = io.BytesIO()
    ihc.save(buffer, "JPEG", icc_profile=ICC, exif=exif_with_orientation(6), xmp=XMP)
    image = Image.open(io.BytesIO(buffer.getvalue()))
    image.load()
    return image


def test_metadata_is_taken_from_im_info_by_default(jpeg_with_metadata: Image.Image) -> None:
    image = reopened(kmq_bytes(jpeg_with_metadata, k=16))
    assert image.info["icc_profile"] == ICC
    assert image.info["xmp"] == XMP
    assert image.getexif()[0x0112] == 6 and image.getexif()[0x010F] == "pil_kmq test camera"


def test_exif_orientation_applies_with_exif_transpose(jpeg_with_metadata: Image.Image) -> None:
    image = reopened(kmq_bytes(jpeg_with_metadata, k=16))
    upright = ImageOps.exif_transpose(image)
    assert upright.size == (image.height, image.width)  # orientation 6: rotated 90 degrees


def test_save_options_override_and_drop_metadata(jpeg_with_metadata: Image.Image) -> None:
    image = reopened(kmq_bytes(jpeg_with_metadata, k=4, exif=exif_with_orientation(3), icc_profile=None, xmp=b""))
    assert image.getexif()[0x0112] == 3
    assert "icc_profile" not in image.info and "xmp" not in image.info


def test_options_accept_bytes_exif_object_and_str_xmp(parrot: Image.Image) -> None:
    exif_bytes = exif_with_orientation(8).tobytes()  # starts with Exif\0\0, as JPEG's APP1
    image = reopened(kmq_bytes(parrot, k=4, icc_profile=ICC, exif=exif_bytes, xmp=XMP.decode()))
    assert image.info["icc_profile"] == ICC and image.info["xmp"] == XMP and image.getexif()[0x0112] == 8
    assert image.info["exif"] == exif_bytes  # Pillow readers give EXIF with its Exif\0\0 prefix


def test_metadata_is_stored_as_the_specs_chunks(parrot: Image.Image) -> None:
    data = kmq_bytes(parrot, k=64, icc_profile=ICC, exif=exif_with_orientation(1), xmp=XMP)
    header = parse_header(data[:HEADER_SIZE])
    chunks = parse_extensions(data[HEADER_SIZE : header.codebook_offset], pil_kmq.format.KNOWN_CHUNKS)
    assert [tag for tag, _ in chunks] == [b"iccp", b"exif", b"xmpp"]
    assert dict(chunks)[b"exif"].startswith((b"MM\0*", b"II*\0"))  # TIFF header, no Exif\0\0 prefix
    assert header.version_minor == 2


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_without_metadata_files_keep_the_lowest_version(parrot: Image.Image, compression: str) -> None:
    data = kmq_bytes(parrot, k=64, compression=compression)  # a photo: runs, not rows (1.3)
    header = parse_header(data[:HEADER_SIZE])
    assert header.extension_length == 0 and header.version_minor == (0 if compression == "none" else 1)


def test_metadata_survives_kmq_to_kmq_and_kmq_to_png(jpeg_with_metadata: Image.Image) -> None:
    first = reopened(kmq_bytes(jpeg_with_metadata, k=16))
    second = reopened(kmq_bytes(first))
    assert second.info["icc_profile"] == ICC and second.getexif()[0x0112] == 6 and second.info["xmp"] == XMP
    png = io.BytesIO()
    first.save(png, "PNG")
    with Image.open(png) as as_png:
        assert as_png.info["icc_profile"] == ICC


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"exif": b"not exif at all"}, "exif must be EXIF data"),
        ({"icc_profile": 42}, "icc_profile must be bytes"),
        ({"xmp": ["x"]}, "xmp must be bytes"),
    ],
)
def test_bad_metadata_raises_valueerror_before_writing(parrot: Image.Image, options: dict[str, object], message: str) -> None:
    out = io.BytesIO()
    with pytest.raises(ValueError, match=message):
        parrot.save(out, "KMQ", k=4, **options)
    assert out.getvalue() == b""


def test_golden_file_carries_all_three(tmp_path: object) -> None:
    with Image.open(SAMPLES / "ihc-k16-metadata.kmq") as image:
        assert set(image.info) >= {"icc_profile", "exif", "xmp"}
        assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))).startswith("sRGB")
        assert image.getexif()[0x0112] == 6


def test_numpy_api_reads_and_writes_metadata(parrot: Image.Image) -> None:
    indices, codebook = pil_kmq.compress_image(np.asarray(parrot), k=4)
    data = pil_kmq.encode_kmq(indices, codebook, metadata={"icc_profile": ICC, "xmp": XMP})
    assert pil_kmq.read_metadata(data) == {"icc_profile": ICC, "xmp": XMP}
    assert reopened(data).info["icc_profile"] == ICC


def test_chunks_follow_the_spec_order_whatever_the_order_given(parrot: Image.Image) -> None:
    indices, codebook = pil_kmq.compress_image(np.asarray(parrot), k=4)
    given = pil_kmq.encode_kmq(indices, codebook, metadata={"xmp": XMP, "icc_profile": ICC})
    spec_order = pil_kmq.encode_kmq(indices, codebook, metadata={"icc_profile": ICC, "xmp": XMP})
    assert given == spec_order


def test_tiff_descriptive_tags_are_kept_and_orientation_applied_once(ihc: Image.Image) -> None:
    """A TIFF keeps EXIF in its own tags, not in im.info: its descriptive tags are kept. Pillow
    turns a TIFF upright as it loads it and drops the orientation tag, so the KMQ file holds
    the upright pixels and no orientation: turning it again would be wrong."""
    tiff = io.BytesIO()
    ihc.save(tiff, "TIFF", exif=exif_with_orientation(6))
    with Image.open(io.BytesIO(tiff.getvalue())) as source:
        assert "exif" not in source.info
        source.load()
        image = reopened(kmq_bytes(source, k=8))
        assert image.size == source.size == (ihc.height, ihc.width)
    exif = image.getexif()
    assert exif[0x010F] == "pil_kmq test camera" and 0x0112 not in exif
    assert 0x0111 not in exif  # StripOffsets: the TIFF's layout, not metadata


def test_kmq_decode_passes_metadata_to_the_output(tmp_path: Path, jpeg_with_metadata: Image.Image) -> None:
    from pil_kmq.cli import main

    (tmp_path / "x.kmq").write_bytes(kmq_bytes(jpeg_with_metadata, k=16))
    for suffix in (".png", ".jpg", ".webp"):
        assert main(["decode", str(tmp_path / "x.kmq"), str(tmp_path / f"x{suffix}")]) == 0
        with Image.open(tmp_path / f"x{suffix}") as out:
            assert out.info.get("icc_profile") == ICC, suffix
            assert out.getexif().get(0x0112) == 6, suffix


def test_metadata_kmq_does_not_keep_is_named_in_a_warning(tmp_path: Path) -> None:
    """dpi, gamma and a PNG's text chunks have no KMQ chunk: saved without, never silently."""
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "scanned at 40x")
    text.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta xmlns:x="adobe:ns:meta/"/>')  # kept: no warning for it
    with Image.open(SAMPLES / "ihc.png") as source:
        source.convert("RGB").save(tmp_path / "scan.png", pnginfo=text, dpi=(300, 300))
    with Image.open(tmp_path / "scan.png") as png, pytest.warns(UserWarning, match=r"KMQ keeps no resolution \(dpi\), text 'Comment' \(only"):
        png.save(tmp_path / "scan.kmq", k=4)
    with Image.open(tmp_path / "scan.kmq") as kmq:
        assert "xmp" in kmq.info and "dpi" not in kmq.info
    with Image.open(SAMPLES / "ihc.png") as plain, warnings.catch_warnings():
        warnings.simplefilter("error")
        plain.save(io.BytesIO(), "KMQ", k=4)  # nothing to drop, nothing said


def test_batch_puts_a_files_warnings_in_its_note(tmp_path: Path) -> None:
    from pil_kmq import batch

    Image.open(SAMPLES / "ihc.png").convert("RGB").save(tmp_path / "in.png", dpi=(300, 300))
    (result,) = batch.run_jobs(batch.plan_jobs([tmp_path / "in.png"], tmp_path / "out", batch.save_options(k=4)), workers=1)
    assert result.status == batch.Status.CONVERTED and "KMQ keeps no resolution (dpi)" in result.message


def test_a_jpegs_dpi_from_its_exif_is_not_warned_of(jpeg_with_metadata: Image.Image) -> None:
    """Pillow gives a JPEG without JFIF density the EXIF's resolution (kept in the exif chunk) or 72."""
    assert jpeg_with_metadata.info.get("dpi") is not None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jpeg_with_metadata.save(io.BytesIO(), "KMQ", k=4)
    buffer = io.BytesIO()
    jpeg_with_metadata.save(buffer, "JPEG", dpi=(300, 300))
    with Image.open(buffer) as dense, pytest.warns(UserWarning, match=r"resolution \(dpi\)") as caught:
        dense.save(io.BytesIO(), "KMQ", k=4)
    assert caught[0].filename == __file__  # the caller's line, not Pillow's


def test_what_kmq_pixels_are_anyway_and_tools_own_text_are_not_warned_of(tmp_path: Path) -> None:
    """sRGB, and the gAMA and cHRM written beside it, describe KMQ's pixels as they are; a
    Software or date: text chunk is a tool's, not the user's. A linear gamma is lost: named."""
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Software", "matplotlib version 3")
    text.add_text("date:create", "2026-01-01T00:00:00")
    with Image.open(SAMPLES / "ihc.png") as source:
        source.convert("RGB").save(tmp_path / "srgb.png", pnginfo=text)
    data = bytearray((tmp_path / "srgb.png").read_bytes())
    srgb_chunk = b"\x00\x00\x00\x01sRGB\x00\xae\xce\x1c\xe9"  # rendering intent 0, its CRC
    (tmp_path / "srgb.png").write_bytes(data[:33] + srgb_chunk + data[33:])
    with Image.open(tmp_path / "srgb.png") as png, warnings.catch_warnings():
        assert png.info.get("srgb") == 0
        warnings.simplefilter("error")
        png.save(io.BytesIO(), "KMQ", k=4)
    linear = Image.open(SAMPLES / "ihc.png").convert("RGB")
    linear.info["gamma"] = 1.0
    with pytest.warns(UserWarning, match="KMQ keeps no gamma 1.0"):
        linear.save(io.BytesIO(), "KMQ", k=4)
