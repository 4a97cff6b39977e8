"""The coded codebook (spec 6.1): written where zstd is asked for and it is shorter, read back
exactly by every reader, and every broken frame refused with a clear error."""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
import pytest
import zstandard
from conftest import SAMPLES, kmq_bytes
from PIL import Image

from pil_kmq import KmqError, coding, compress_image, decode_kmq, encode_kmq, stream
from pil_kmq.codec import codebook_section
from pil_kmq.coding import encode_codebook
from pil_kmq.decoding import decode_codebook
from pil_kmq.format import HEADER_SIZE, StripMethod
from pil_kmq.kmeans import path_order


def _legend() -> Image.Image:
    with Image.open(SAMPLES / "legend.png") as image:
        return image.convert("RGB")


def _exact(image: Image.Image) -> int:
    return len(image.getcolors(1 << 24))


@pytest.mark.parametrize("compression", ["zstd", "near"])
def test_a_drawing_at_its_exact_colours_gets_a_coded_codebook(compression: str) -> None:
    legend = _legend()
    data = kmq_bytes(legend, k=_exact(legend), compression=compression)
    header, (indices, codebook) = decode_kmq(data)
    # a small strip keeps near_rans where shorter than near_flat: above 256 entries, version 1.6
    assert header.version_minor == (5 if compression == "zstd" else 6) and 0 < header.codebook_stream_length < header.k * header.channels
    assert np.array_equal(codebook[indices], np.asarray(legend))
    with Image.open(io.BytesIO(data)) as image:
        assert image.tobytes() == legend.tobytes()


@pytest.mark.parametrize("compression", ["none", "zlib"])
def test_without_zstd_the_codebook_stays_raw(compression: str) -> None:
    """zlib and uncoded files are for readers without zstd: their codebook is never coded."""
    legend = _legend()
    header, _ = decode_kmq(kmq_bytes(legend, k=_exact(legend), compression=compression))
    assert header.codebook_stream_length == 0 and header.version_minor < 5


def test_a_k_means_codebook_is_ordered_along_a_path_and_coded(ihc: Image.Image) -> None:
    """The seeds' order left a k-means codebook raw (its steps are as large as the colours);
    along the path each channel steps little, and the coded codebook is far shorter."""
    data = kmq_bytes(ihc, k=256)
    header, (indices, codebook) = decode_kmq(data)
    assert len(codebook) == 256 and np.array_equal(path_order(codebook), np.arange(256))
    assert header.version_minor == 5 and 0 < header.codebook_stream_length < 0.8 * codebook.size
    assert encode_codebook(np.random.default_rng(0).permutation(codebook)) is None  # out of order: raw
    colours, where = np.unique(np.asarray(ihc).reshape(-1, 3), axis=0, return_inverse=True)
    distances = ((colours[:, None, :].astype(np.int64) - codebook[None, :, :]) ** 2).sum(axis=2)
    assert np.array_equal(indices.ravel(), distances.argmin(axis=1)[where.ravel()])  # still each pixel's nearest, ties to the lowest


def test_with_alpha_the_path_is_kept_to_codebooks_of_up_to_1024_entries() -> None:
    """Above 1,024 entries near_rans ranks by index distance, where the path order lost: an RGBA
    codebook's classes are ordered only where the whole codebook is that small."""
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (96, 96, 4), dtype=np.uint8)
    pixels[:48, :, 3] = 255  # an opaque class and a partly transparent one
    for k, ordered in ((1024, True), (1500, False)):
        codebook = compress_image(pixels, k=k).codebook
        opaque = codebook[codebook[:, 3] == 255]
        assert np.array_equal(path_order(opaque), np.arange(len(opaque))) == ordered


@pytest.mark.parametrize(("saved", "coded"), [(40, True), (39, False)])
def test_a_codebook_is_coded_only_where_that_saves_an_eighth(monkeypatch: pytest.MonkeyPatch, saved: int, coded: bool) -> None:
    """A zstd frame costs a reader more time than raw entries: 320 bytes must code in 280."""
    codebook = np.arange(320, dtype=np.uint8).reshape(-1, 4)
    monkeypatch.setattr(coding, "_zstd_compress", lambda data, level: bytes(len(data) - saved))
    assert (encode_codebook(codebook) is not None) == coded


def _greedy_path(codebook: np.ndarray) -> list[int]:
    colours = codebook.astype(np.int64).tolist()
    current = min(range(len(colours)), key=lambda entry: (sum(colours[entry]), entry))
    path, left = [current], set(range(len(colours))) - {current}
    while left:
        current = min(left, key=lambda entry: (sum((a - b) ** 2 for a, b in zip(colours[entry], colours[current], strict=True)), entry))
        path.append(current)
        left.remove(current)
    return path


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("k", [1, 2, 17, 300])
@pytest.mark.parametrize("levels", [4, 256])  # few levels: many ties
def test_path_order_takes_the_nearest_entry_left_ties_to_the_lowest(channels: int, k: int, levels: int) -> None:
    codebook = np.random.default_rng(channels * k + levels).integers(0, levels, (k, channels), dtype=np.uint8)
    assert path_order(codebook).tolist() == _greedy_path(codebook)


def test_codebook_round_trips_through_differences() -> None:
    rng = np.random.default_rng(4)
    for channels in (1, 2, 3, 4):
        codebook = np.unique(rng.integers(0, 256, (3000, channels)).astype(np.uint8) // 4 * 4, axis=0)
        coded = encode_codebook(codebook)
        assert coded is not None and len(coded) < codebook.size
        assert np.array_equal(decode_codebook(coded, len(codebook), channels), codebook)
    assert encode_codebook(rng.integers(0, 256, (256, 3), dtype=np.uint8)) is None
    assert codebook_section(codebook, None) == (codebook.tobytes(), 0)
    assert codebook_section(codebook, StripMethod.RUNS_ZLIB) == (codebook.tobytes(), 0)


def test_the_streaming_writer_and_reader_agree_with_image_save() -> None:
    legend = _legend()
    k = _exact(legend)
    saved = kmq_bytes(legend, k=k)
    out = io.BytesIO()
    stream.encode(np.asarray(legend), out, k=k)
    assert out.getvalue() == saved
    with stream.open_kmq(io.BytesIO(saved)) as reader:
        assert np.array_equal(reader.read_rows(0, legend.height), np.asarray(legend))
        assert np.array_equal(np.concatenate([rows for _, rows in reader.iter_rows()]), np.asarray(legend))


def _with_codebook_section(data: bytes, section: bytes) -> bytes:
    """data (a file with a coded codebook) with another codebook section, its length and every
    checksum mended."""
    header, _ = decode_kmq(data)
    head = bytearray(data[:40])
    head[25:28] = len(section).to_bytes(3, "big")
    start = HEADER_SIZE + header.extension_length
    body = bytes(head) + struct.pack(">I", zlib.crc32(head)) + data[HEADER_SIZE:start] + section + data[start + header.codebook_stream_length : -4]
    return body + struct.pack(">I", zlib.crc32(body))


def _frame(content: bytes, **options: object) -> bytes:
    return zstandard.ZstdCompressor(level=19, **options).compress(content)


def _rejected(data: bytes, message: str) -> None:
    """Refused by the numpy API, by Pillow's load and by the streaming reader's open."""
    with pytest.raises(KmqError, match=message):
        decode_kmq(data)
    with Image.open(io.BytesIO(data)) as image, pytest.raises(OSError, match=message):
        image.load()
    with pytest.raises(KmqError, match=message):
        stream.open_kmq(io.BytesIO(data))


def test_broken_codebook_frames_are_refused_naming_the_problem() -> None:
    legend = _legend()
    k = _exact(legend)
    data = kmq_bytes(legend, k=k)
    header, _ = decode_kmq(data)
    start = HEADER_SIZE + header.extension_length
    frame = data[start : start + header.codebook_stream_length]
    deltas = zstandard.ZstdDecompressor().decompress(frame)
    skippable = struct.pack("<II", 0x184D2A50, 4) + b"skip"
    cases = {
        "not a zstd frame": b"\x00" * 20,
        "stream is cut short": frame[:-3],
        "bytes follow the end of the zstd frame": frame + b"\x00",
        "does not declare its Frame_Content_Size": _frame(deltas, write_content_size=False),
        f"declares {len(deltas) - 3} bytes, {len(deltas)} expected": _frame(deltas[:-3]),
        "corrupt zstd frame|stream is cut short": frame[:8] + bytes(len(frame) - 8),
    }
    for message, section in cases.items():
        _rejected(_with_codebook_section(data, section), message)
    _rejected(_with_codebook_section(data, skippable + frame[: len(deltas) - len(skippable) - 2]), "not a zstd frame")


def test_mutated_codebook_frames_decode_or_raise_cleanly() -> None:
    """Random changes to the frame and its length, checksums mended: only Pillow's errors."""
    legend = _legend()
    data = kmq_bytes(legend, k=_exact(legend))
    header, _ = decode_kmq(data)
    start = HEADER_SIZE + header.extension_length
    frame = data[start : start + header.codebook_stream_length]
    rng = random.Random(9)
    for _ in range(300):
        section = bytearray(frame)
        for _ in range(rng.randrange(1, 4)):
            section[rng.randrange(len(section))] ^= 1 << rng.randrange(8)
        if rng.random() < 0.3:
            section = section[: rng.randrange(1, len(section))]
        try:
            decode_kmq(_with_codebook_section(data, bytes(section)))
        except KmqError:
            pass


def _vector(name: str) -> bytes:
    from test_spec_vectors import VECTORS

    return VECTORS[name][1]


def test_the_writer_reproduces_vector_r() -> None:
    """Vector R's frame is what the writer's zstd makes of its differences (as vector N's rows)."""
    header, (indices, codebook) = decode_kmq(_vector("R"))
    assert encode_kmq(indices, codebook, compression="zstd") == _vector("R")


def test_vector_r_reads_through_the_parser_and_the_streaming_reader() -> None:
    """A coded codebook before an uncoded index stream, fed 3 bytes at a time or read by rows."""
    from PIL import ImageFile

    data = _vector("R")
    parser = ImageFile.Parser()
    for start in range(0, len(data), 3):
        parser.feed(data[start : start + 3])
    image = parser.close()
    with stream.open_kmq(io.BytesIO(data)) as reader:
        rows = reader.read_rows(0, 4)
    assert np.array_equal(np.asarray(image), rows) and rows[3, 3].tolist() == [0xF0, 0x78, 0xF0]


def test_a_codebook_stream_as_long_as_the_raw_codebook_is_refused_by_every_reader() -> None:
    data = bytearray(_vector("R"))
    data[25:28] = (48).to_bytes(3, "big")  # k x channels
    data[40:44] = struct.pack(">I", zlib.crc32(data[:40]))
    data[-4:] = struct.pack(">I", zlib.crc32(data[:-4]))
    message = "codebook_stream_length must be below k x channels = 48"
    with pytest.raises(KmqError, match=message):
        decode_kmq(bytes(data))
    with pytest.raises(OSError, match=message):
        Image.open(io.BytesIO(bytes(data)))
    with pytest.raises(KmqError, match=message):
        stream.open_kmq(io.BytesIO(bytes(data)))


def test_a_drawing_cut_as_one_wide_row_is_tried_in_halves_too() -> None:
    """A first strip of one row (an image 2**18 pixels wide) is split by its pixels."""
    from pil_kmq import coding

    rng = np.random.default_rng(6)
    lengths = rng.integers(1, 6, 150_000)
    half = np.repeat(rng.integers(0, 600, lengths.size), lengths)[:150_000]
    row = np.concatenate([half, half])[None, :].astype(np.uint16)
    assert coding._repeats_far(row, 10, coding._probe_runs(row, coding._run_flags(row), 10))
