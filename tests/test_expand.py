"""The compiled run decoder and palette lookup: same indices as the spec's definition for
any flags, offset and literals; a mismatch of flags and literals is refused, never read past."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pil_kmq.expand import expand_runs, lookup, zero_flags


def spec_runs(indices: np.ndarray, previous: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Flags and literals of spec 7.2, a repeat sometimes coded as a literal (valid too)."""
    before = np.concatenate([[previous], indices[:-1]])
    flags = (before == indices) & (rng.random(indices.size) < 0.9)
    return flags, indices[~flags]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_expansion_matches_the_definition_at_any_bit_offset(dtype: type) -> None:
    rng = np.random.default_rng(7)
    for _ in range(1500):
        count, offset, previous = int(rng.integers(1, 90)), int(rng.integers(0, 8)), int(rng.integers(0, 3))
        indices = rng.integers(0, 3, count).astype(dtype)
        if rng.random() < 0.5:  # long runs: whole bytes of 1 flags
            indices = np.repeat(indices[: count // 12 + 1], 12)[:count]
        flags, literals = spec_runs(indices, previous, rng)
        packed = np.packbits(np.concatenate([rng.random(offset) < 0.5, flags, rng.random(7) < 0.5]))
        out = np.empty(count, dtype=dtype)
        assert expand_runs(packed, offset, literals, previous, out)
        np.testing.assert_array_equal(out, indices)
        assert zero_flags(packed, offset, count) == literals.size


def test_too_few_or_too_many_literals_are_refused() -> None:
    indices = np.array([1, 1, 2, 2, 2, 2, 2, 2, 2, 0, 0, 1], dtype=np.uint8)
    flags, literals = spec_runs(indices, 0, np.random.default_rng(1))
    packed = np.packbits(flags)
    out = np.empty(indices.size, dtype=np.uint8)
    for wrong in (literals[:-1], literals[:0], np.concatenate([literals, literals])):
        with pytest.raises(ValueError, match="do not match"):
            expand_runs(packed, 0, wrong, 0, out)
    with pytest.raises(ValueError, match="fewer flag bytes"):
        expand_runs(packed[:1], 0, literals, 0, out)


def test_lookup_refuses_an_index_beyond_the_table() -> None:
    table = np.arange(4, dtype=np.uint32)
    out = np.empty(3, dtype=np.uint32)
    lookup(table, np.array([3, 0, 2], dtype=np.uint8), out)
    assert out.tolist() == [3, 0, 2]
    with pytest.raises(ValueError, match="beyond the table"):
        lookup(table, np.array([0, 4, 1], dtype=np.uint8), out)


def test_expansion_through_a_table_is_the_table_of_the_expansion() -> None:
    """With a table each pixel gets table[index] in the same pass; a literal the table does
    not cover makes it return False, a previous index it does not cover is refused."""
    rng = np.random.default_rng(11)
    table = rng.integers(0, 2**32, 5, dtype=np.uint32)
    for _ in range(300):
        count, offset, previous = int(rng.integers(1, 70)), int(rng.integers(0, 8)), int(rng.integers(0, 5))
        indices = np.repeat(rng.integers(0, 5, count // 6 + 1), 6)[:count].astype(np.uint8)
        flags, literals = spec_runs(indices, previous, rng)
        packed = np.packbits(np.concatenate([np.zeros(offset, dtype=bool), flags]))
        out = np.empty(count, dtype=np.uint32)
        assert expand_runs(packed, offset, literals, previous, out, table)
        np.testing.assert_array_equal(out, table[indices])
    packed, out = np.packbits([False, True, False]), np.empty(3, dtype=np.uint32)
    assert not expand_runs(packed, 0, np.array([1, 5], dtype=np.uint8), 0, out, table)  # 5 is past the table
    assert not expand_runs(packed, 0, np.array([1, 4], dtype=np.uint8), 0, out, table[:4])
    with pytest.raises(ValueError, match="previous index"):
        expand_runs(packed, 0, np.array([1, 2], dtype=np.uint8), 5, out, table)
    with pytest.raises(ValueError, match="signed literals"):
        expand_runs(packed, 0, np.array([1, -2], dtype=np.int16), 0, out, table)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_rows_wider_than_a_piece_decode_whole(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """A 70,000-pixel row is written in parts of one row; every mode's entries land whole."""
    from pil_kmq import codec, decoding

    monkeypatch.setattr(decoding, "BLOCK_PIXELS", 1 << 14)
    monkeypatch.setattr(codec, "BLOCK_PIXELS", 1 << 14)
    rng = np.random.default_rng(3)
    channels = len(mode)
    palette = rng.integers(0, 256, (5, channels), dtype=np.uint8)
    indices = np.repeat(rng.integers(0, 5, 7000), 10).reshape(1, -1).repeat(2, axis=0)
    pixels = palette[indices].reshape(2, -1, channels)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=5)
    with Image.open(buffer) as decoded:
        assert decoded.mode == mode
        np.testing.assert_array_equal(np.asarray(decoded), np.asarray(image))


@pytest.mark.parametrize("mode", ["L", "RGBA"])
def test_pieces_of_part_of_a_row_land_where_they_belong(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Pieces of 64 pixels in rows of 100, decoded straight to codebook entries: every piece
    starts mid-row and mid-flag-byte, and the image is the one decode_kmq gives."""
    from pil_kmq import codec, decoding

    rng = np.random.default_rng(5)
    channels = len(mode)
    palette = rng.integers(1, 255, (9, channels), dtype=np.uint8)
    indices = np.repeat(rng.integers(0, 9, 30 * 50), rng.integers(1, 6, 30 * 50))[: 30 * 100].reshape(30, 100)
    pixels = palette[indices]
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=9)
    monkeypatch.setattr(decoding, "BLOCK_PIXELS", 64)
    monkeypatch.setattr(codec, "BLOCK_PIXELS", 64)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), np.asarray(image))


@pytest.mark.parametrize("piece", [None, 4096])
def test_images_loaded_side_by_side_never_share_decoded_rows(monkeypatch: pytest.MonkeyPatch, piece: int | None) -> None:
    """Decoded rows live in arrays kept from one image to the next: two threads loading
    different images, and two parsers fed in turns, each get their own pixels (strips
    decoded whole, or piece by piece into a kept scratch array)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import ImageFile

    from pil_kmq import codec, decoding

    if piece:
        monkeypatch.setattr(decoding, "BLOCK_PIXELS", piece)
        monkeypatch.setattr(codec, "BLOCK_PIXELS", piece)

    rng = np.random.default_rng(9)
    images, files = [], []
    for colours in (3, 7):
        palette = rng.integers(0, 256, (colours, 3), dtype=np.uint8)
        indices = np.repeat(rng.integers(0, colours, 300 * 240), 4).reshape(600, 480)  # two strips
        images.append(palette[indices])
        buffer = io.BytesIO()
        Image.fromarray(images[-1]).save(buffer, "KMQ", k=colours)
        files.append(buffer.getvalue())

    def load(which: int) -> bool:
        with Image.open(io.BytesIO(files[which])) as image:
            return bool(np.array_equal(np.asarray(image), images[which]))

    with ThreadPoolExecutor(2) as pool:
        assert all(pool.map(load, [0, 1] * 20))
    parsers = [ImageFile.Parser(), ImageFile.Parser()]
    for start in range(0, max(map(len, files)), 997):
        for parser, data in zip(parsers, files):
            parser.feed(data[start : start + 997])
    for parser, expected in zip(parsers, images):
        np.testing.assert_array_equal(np.asarray(parser.close()), expected)
