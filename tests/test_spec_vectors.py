"""The hex vectors of spec/kmq.md decode to the pixels the spec gives, and the writer reproduces them."""

from __future__ import annotations

import io
import re

import pytest
from conftest import SPEC
from PIL import Image

from pil_kmq import KmqError, decode_kmq, encode_kmq, reconstruct_image

BLOCK = re.compile(r"^```(kmq-[a-z]+) (\S+)(.*?)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _hex(text: str) -> bytes:
    return bytes.fromhex(" ".join(line.split("#")[0] for line in text.splitlines()))


def _blocks(kind: str) -> dict[str, tuple[str, bytes]]:
    found = {}
    for match in BLOCK.finditer(SPEC.read_text(encoding="utf-8")):
        if match.group(1) == kind:
            found[match.group(2)] = (match.group(3).strip(), _hex(match.group(4)))
    return found


VECTORS = _blocks("kmq-vector")
PIXELS = _blocks("kmq-pixels")
INVALID = _blocks("kmq-invalid")


def test_spec_has_the_vectors_it_promises() -> None:
    assert set(VECTORS) == set(PIXELS) == {"A", "B", "C", "D", "E", "F", "I", "J", "J2", "N", "P", "P2", "R", "U", "W", "X", "Z", "Z3", "Z5"}
    assert set(INVALID) == {"G", "H", "J3", "K", "L", "M", "M2", "O", "Q", "S", "T", "V", "Y", "Z2", "Z4"}


def test_vectors_are_named_in_the_order_the_document_reads() -> None:
    names = re.findall(r"^```kmq-(?:vector|invalid) (\S+)", SPEC.read_text(encoding="utf-8"), re.M)
    assert names == sorted(names)


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_spec_vector_decodes_to_its_pixels(name: str) -> None:
    mode, size = PIXELS[name][0].split()
    width, height = map(int, size.split("x"))
    expected = Image.frombytes(mode, (width, height), PIXELS[name][1])
    with Image.open(io.BytesIO(VECTORS[name][1]), formats=["KMQ"]) as image:
        assert (image.mode, image.size) == (mode, (width, height))
        assert image.tobytes() == expected.tobytes()
    header, (indices, codebook) = decode_kmq(VECTORS[name][1])
    assert reconstruct_image(indices, codebook).tobytes() == expected.tobytes()


@pytest.mark.parametrize("name", ["A", "B", "E", "F"])
def test_writer_reproduces_spec_vector_bytes(name: str) -> None:
    header, (indices, codebook) = decode_kmq(VECTORS[name][1])
    assert encode_kmq(indices, codebook, compression="none") == VECTORS[name][1]


def test_writer_reproduces_the_rows_zstd_vector() -> None:
    """Vector N's strip is what the writer makes of its rows (it would store so tiny an image
    raw, 3 bytes; the vector shows the layout)."""
    from pil_kmq import coding

    header, (indices, codebook) = decode_kmq(VECTORS["N"][1])
    assert coding._rows_strip(indices, 2) == VECTORS["N"][1][-16:-4]
    assert header.version_minor == 3


def test_writer_reproduces_the_byte_rows_zstd_vector() -> None:
    """Vector Z's strip is what the writer makes of its rows in whole bytes, its version 1.9,
    and its pixels those of vector N, whose rows are packed."""
    from pil_kmq import coding
    from pil_kmq.format import StripMethod

    header, (indices, codebook) = decode_kmq(VECTORS["Z"][1])
    rows = coding._packed_rows(indices, 2, StripMethod.BYTE_ROWS_ZSTD)
    strip = coding._coded_rows(rows, StripMethod.BYTE_ROWS_ZSTD)
    assert rows == bytes([2, 1, 0, 0, 1, 2]) and strip == VECTORS["Z"][1][-20:-4]
    assert header.version_minor == coding.strips_minor([strip], 3) == 9
    assert PIXELS["Z"] == PIXELS["N"]


def test_writer_reproduces_the_med_rows_zstd_vector() -> None:
    """Vector Z3's strip is what the writer makes of the residuals of vector A's indices (a
    drawing's parameters; so tiny a strip is tried every way), its version 1.10, and its pixels
    those of vector N."""
    from pil_kmq import coding, predict

    header, (indices, codebook) = decode_kmq(VECTORS["Z3"][1])
    residuals = predict.residuals(indices).tobytes()
    strip = coding._coded_predicted(residuals, drawn=True)
    assert residuals == bytes([2, 0xFF, 0xFF, 0xFE, 1, 2]) and strip == VECTORS["Z3"][1][-20:-4]
    assert header.version_minor == coding.strips_minor([strip], 3) == 10
    assert PIXELS["Z3"] == PIXELS["N"]


def test_writer_reproduces_the_near_rans_vector() -> None:
    """Vector P's strip is what the writer's near coder makes of its indices (byte for byte:
    the coder depends on nothing but the spec)."""
    from pil_kmq import near

    header, (indices, codebook) = decode_kmq(VECTORS["P"][1])
    assert b"\x04" + near.encode_near(indices, near.Palette(codebook)) == VECTORS["P"][1][-74:-4]
    assert header.version_minor == 4


def test_writer_reproduces_each_strip_of_the_two_strip_vectors() -> None:
    """Vectors P2 and Z5: each strip is what the writer's coder makes of its own rows alone,
    with no row above its first (the edge rules of 7.2), and each begins with the one-strip
    vector's strip."""
    from pil_kmq import coding, near, predict

    header, (indices, codebook) = decode_kmq(VECTORS["P2"][1])
    strips = [b"\x04" + near.encode_near(indices[top : top + 2], near.Palette(codebook)) for top in (0, 2)]
    assert VECTORS["P2"][1][-4 - sum(map(len, strips)) : -4] == b"".join(strips)
    assert strips[0] == VECTORS["P"][1][-74:-4] and header.version_minor == 4
    header, (indices, codebook) = decode_kmq(VECTORS["Z5"][1])
    strips = [coding._coded_predicted(predict.residuals(indices[top : top + 2]).tobytes(), drawn=True) for top in (0, 2)]
    assert VECTORS["Z5"][1][-4 - sum(map(len, strips)) : -4] == b"".join(strips)
    assert strips[0] == VECTORS["Z3"][1][-20:-4] and predict.residuals(indices[1:])[1].tolist() == [0, 0, 0]
    assert header.version_minor == 10


def test_writer_reproduces_the_near_flat_vector() -> None:
    """Vector X's strip is what the writer's near coder makes of its indices with stretches,
    and its version is 1.8."""
    from pil_kmq import coding, near

    data = VECTORS["X"][1]
    header, (indices, codebook) = decode_kmq(data)
    strip = b"\x05" + near.encode_near(indices, near.Palette(codebook), stretches=True)
    assert strip == data[-4 - len(strip) : -4]
    assert header.version_minor == coding.strips_minor([strip], 2) == 8


@pytest.mark.parametrize(("name", "k", "minor"), [("U", 320, 6), ("W", 1100, 7)])
def test_writer_reproduces_the_near_rans_vectors_above_256_entries(name: str, k: int, minor: int) -> None:
    """Vector U: 16-bit indices, tokens of octave 8, a coded codebook, version 1.6; vector W:
    the order by index above 1,024 entries, tokens of octaves 6 to 10, version 1.7. The writer's
    coder makes their strips, and the writer's header and codebook sections match."""
    from pil_kmq import coding, near
    from pil_kmq.codec import codebook_section
    from pil_kmq.format import IndexCoding, StripMethod, new_header

    data = VECTORS[name][1]
    header, (indices, codebook) = decode_kmq(data)
    assert indices.dtype.name == "uint16" and header.version_minor == minor and header.k == k
    strip = b"\x04" + near.encode_near(indices, near.Palette(codebook))
    assert strip == data[-4 - len(strip) : -4]
    section, coded_length = codebook_section(codebook, StripMethod.NEAR_FLAT)
    assert section == data[44 : 44 + coded_length]
    rebuilt = new_header(4, 2, 1, k, IndexCoding.STRIPS, header.index_stream_length, 0, coding.strips_minor([strip], k), coded_length)
    assert rebuilt.pack() == data[:44]
    assert data[44 + coded_length + 4 : 44 + coded_length + 12] == len(strip).to_bytes(8, "big")  # the one strip's length


@pytest.mark.parametrize("name", ["A", "B"])
def test_image_save_reproduces_spec_vector_bytes(name: str) -> None:
    header, (indices, codebook) = decode_kmq(VECTORS[name][1])
    image = Image.fromarray(reconstruct_image(indices, codebook))
    out = io.BytesIO()
    image.save(out, "KMQ", k=header.k, compression="none")
    assert out.getvalue() == VECTORS[name][1]


@pytest.mark.parametrize("name", sorted(INVALID))
def test_spec_invalid_vector_is_rejected_for_its_rule(name: str) -> None:
    rule, data = INVALID[name]
    with pytest.raises(KmqError, match=rule):
        decode_kmq(data)
    with Image.open(io.BytesIO(data)) as image, pytest.raises(OSError, match=rule):
        image.load()


def test_vector_d_carries_exif_orientation_and_the_writer_reproduces_it() -> None:
    data = VECTORS["D"][1]
    with Image.open(io.BytesIO(data)) as image:
        assert image.getexif()[0x0112] == 6
        exif = image.info["exif"]
    header, (indices, codebook) = decode_kmq(data)
    assert encode_kmq(indices, codebook, compression="none", metadata={"exif": exif}) == data
