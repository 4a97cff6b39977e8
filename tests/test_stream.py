"""The streaming API: same bytes as Image.save, row strips and ranges, bounded memory."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES, kmq_bytes
from PIL import Image

import pil_kmq.coding
import pil_kmq.quantize
import pil_kmq.stream
from pil_kmq import KmqError, stream


@pytest.fixture
def small_strips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Strips of a few rows, histogram strips and packing batches too: many of each on samples."""
    monkeypatch.setattr(pil_kmq.coding, "STRIP_PIXELS", 4096)
    monkeypatch.setattr(pil_kmq.coding, "DRAWING_STRIP_PIXELS", 16384)
    monkeypatch.setattr(pil_kmq.quantize, "_STRIP_PIXELS", 5000)
    monkeypatch.setattr(pil_kmq.stream, "_PACK_PIXELS", 4000)


def sample(name: str, mode: str) -> Image.Image:
    with Image.open(SAMPLES / name) as image:
        return image.convert(mode)


CASES = [
    ("ihc.png", "RGB", {}),
    ("ihc.png", "RGB", {"compression": "none", "k": 6}),
    ("ihc.png", "RGB", {"compression": "zlib", "k": 1000}),
    ("ihc.png", "L", {"k": 5}),
    ("ihc.png", "RGB", {"k": 1}),
    ("ihc.png", "RGB", {"k": 2}),  # a segmentation: rows_zstd strips
    ("ihc-cutout.png", "LA", {"k": 3}),
    ("ihc-cutout.png", "RGBA", {"k": 64}),
    ("ihc-cutout.png", "LA", {"psnr": 30, "compression": "none"}),
    ("kodim03-p12.png", "RGB", {"k": 16, "compression": "none"}),
    ("ihc.png", "RGB", {"k": 40, "compression": "near"}),
    ("ihc.png", "RGB", {"k": 600, "compression": "near"}),  # near_rans above 256 entries: KMQ 1.6
]


@pytest.mark.parametrize(("name", "mode", "options"), CASES)
def test_stream_encode_writes_the_bytes_image_save_writes(small_strips: None, name: str, mode: str, options: dict[str, object]) -> None:
    image = sample(name, mode)
    out = io.BytesIO()
    header = stream.encode(np.asarray(image), out, **options)
    assert out.getvalue() == kmq_bytes(image, **{"compression": "zstd", **options})  # stream's "auto" is zstd's
    assert header.file_length == len(out.getvalue())


def test_stream_psnr_is_the_smallest_k_that_reaches_it() -> None:
    """Image.save's psnr= compares whole encoded files across k; stream.encode, reading the
    image once more, keeps the smallest k with nearest entries (as compression="none" does)."""
    image = sample("ihc.png", "RGB")
    out = io.BytesIO()
    header = stream.encode(np.asarray(image), out, psnr=33)
    with Image.open(io.BytesIO(kmq_bytes(image, psnr=33, compression="none"))) as smallest_k, Image.open(out) as streamed:
        assert header.k == smallest_k.kmq_header.k
        assert np.array_equal(np.asarray(streamed), np.asarray(smallest_k))


def test_metadata_is_written_and_read(tmp_path: Path) -> None:
    image = sample("ihc.png", "RGB")
    xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"
    stream.encode(np.asarray(image), tmp_path / "a.kmq", metadata={"xmp": xmp})
    assert (tmp_path / "a.kmq").read_bytes() == kmq_bytes(image, xmp=xmp)
    with stream.open_kmq(tmp_path / "a.kmq") as reader:
        assert reader.metadata == {"xmp": xmp}


@pytest.mark.parametrize(("name", "mode", "options"), CASES)
def test_row_ranges_and_indices_match_the_whole_decode(small_strips: None, name: str, mode: str, options: dict[str, object]) -> None:
    image = sample(name, mode)
    data = kmq_bytes(image, **options)
    with Image.open(io.BytesIO(data)) as decoded:
        whole = np.asarray(decoded).reshape(image.height, image.width, -1)
    indices = pil_kmq.decode_kmq(data)[1].indices
    with stream.open_kmq(io.BytesIO(data)) as reader:
        assert np.array_equal(reader.read_rows(), whole)
        for start, stop in [(0, 1), (5, 17), (13, 14), (40, 227), (226, 227), (0, 227), (63, 64)]:
            if stop > image.height:
                continue
            assert np.array_equal(reader.read_rows(start, stop), whole[start:stop])
            assert np.array_equal(reader.read_rows(start, stop, indices=True), indices[start:stop])
        firsts = [first for first, _ in reader.iter_rows(3, 60)]
        assert firsts[0] == 3 and firsts == sorted(firsts)


def test_memmap_in_memmap_out(tmp_path: Path, small_strips: None) -> None:
    image = np.asarray(sample("ihc.png", "RGB"))
    source = np.lib.format.open_memmap(tmp_path / "source.npy", mode="w+", dtype=np.uint8, shape=image.shape)
    source[:] = image
    source.flush()
    source = np.load(tmp_path / "source.npy", mmap_mode="r")
    stream.encode(source, tmp_path / "image.kmq", k=32)
    out = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.uint8, shape=image.shape)
    header = stream.decode_into(tmp_path / "image.kmq", out)
    out.flush()
    assert header.k == 32
    with Image.open(tmp_path / "image.kmq") as decoded:
        assert np.array_equal(np.load(tmp_path / "out.npy"), np.asarray(decoded))
    part = np.zeros((50, image.shape[1], 3), dtype=np.uint8)
    stream.decode_into(tmp_path / "image.kmq", part, 100, 150)
    assert np.array_equal(part, np.load(tmp_path / "out.npy")[100:150])


def test_dask_array_source(small_strips: None) -> None:
    da = pytest.importorskip("dask.array")
    image = np.asarray(sample("ihc.png", "RGB"))
    out = io.BytesIO()
    stream.encode(da.from_array(image, chunks=(32, -1, -1)), out, k=16)
    assert out.getvalue() == kmq_bytes(Image.fromarray(image), k=16)


def test_memory_does_not_grow_with_the_image_height() -> None:
    """Eight times the rows, the same peak: nothing is held per pixel."""
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (5000, 3), dtype=np.uint8)

    def peak(height: int) -> int:
        rows = _PaletteRows(palette, height, 1024)
        tracemalloc.start()
        stream.encode(rows, io.BytesIO(), k=64)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(1024), peak(8192)
    assert large < small + (4 << 20), (small, large)  # the in-memory path would need ~40 MB more


class _PaletteRows:
    """A synthetic (height, width, 3) image made row by row on demand: no array holds it."""

    def __init__(self, palette: np.ndarray, height: int, width: int) -> None:
        self.palette, self.shape = palette, (height, width, 3)

    def __getitem__(self, rows: slice) -> np.ndarray:
        top, bottom, _ = rows.indices(self.shape[0])
        y, x = np.mgrid[top:bottom, 0 : self.shape[1]]
        return self.palette[(y * 7 + x // 3) % len(self.palette)]


def test_corrupt_strip_in_a_range_is_named(small_strips: None) -> None:
    data = bytearray(kmq_bytes(sample("ihc.png", "RGB"), k=16))
    header = pil_kmq.decode_kmq(bytes(data))[0]
    data[header.file_length - 10] ^= 0xFF  # inside the last strip
    with stream.open_kmq(io.BytesIO(bytes(data))) as reader:
        reader.read_rows(0, 10)  # strips before it are fine
        with pytest.raises(KmqError, match=r"KMQ strip \d+: checksum mismatch"):
            reader.read_rows(200, 227)


def test_whole_file_read_checks_file_crc() -> None:
    data = bytearray(kmq_bytes(sample("ihc.png", "RGB"), k=16, compression="none"))
    data[-1] ^= 0xFF
    with stream.open_kmq(io.BytesIO(bytes(data))) as reader, pytest.raises(KmqError, match="file checksum mismatch"):
        reader.read_rows()


def test_truncated_and_foreign_files_raise_kmqerror(tmp_path: Path) -> None:
    data = kmq_bytes(sample("ihc.png", "RGB"), k=16)
    with pytest.raises(KmqError, match=f"truncated KMQ file: {len(data) // 2:,} bytes of {len(data):,}"):  # checked at open
        stream.open_kmq(io.BytesIO(data[: len(data) // 2]))
    (tmp_path / "x.png").write_bytes((SAMPLES / "ihc.png").read_bytes())
    with pytest.raises(KmqError, match="not a KMQ file"):
        stream.open_kmq(tmp_path / "x.png")


def test_bad_arguments_raise_valueerror(tmp_path: Path) -> None:
    image = np.asarray(sample("ihc.png", "RGB"))
    with pytest.raises(ValueError, match="give k or psnr"):
        stream.encode(image, io.BytesIO(), k=4, psnr=30)
    with pytest.raises(ValueError, match="uint8"):
        stream.encode(image.astype(np.float32), io.BytesIO())
    with pytest.raises(ValueError, match="shape"):
        stream.encode(np.zeros((4, 4, 5), np.uint8), io.BytesIO())
    stream.encode(image, tmp_path / "a.kmq")
    with stream.open_kmq(tmp_path / "a.kmq") as reader:
        with pytest.raises(ValueError, match="rows must satisfy"):
            reader.read_rows(10, 5)
        with pytest.raises(ValueError, match="out must have shape"):
            reader.decode_into(np.zeros((3, 3, 3), np.uint8))


def test_failed_encode_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "keep.kmq"
    target.write_bytes(b"precious")

    class Broken(_PaletteRows):
        def __getitem__(self, rows: slice) -> np.ndarray:
            top, _, _ = rows.indices(self.shape[0])
            if top > 100:
                raise OSError("disk read failed")
            return super().__getitem__(rows)

    with pytest.raises(OSError, match="disk read failed"):
        stream.encode(Broken(np.zeros((4, 3), np.uint8), 3000, 1000), target)
    assert target.read_bytes() == b"precious" and sorted(p.name for p in tmp_path.iterdir()) == ["keep.kmq"]


def test_copy_on_write_memmap_keeps_the_callers_edits(tmp_path: Path) -> None:
    """Pages of a private (mode "c") mapping are not dropped: that would drop the edits."""
    image = np.asarray(sample("ihc.png", "RGB"))
    np.save(tmp_path / "source.npy", image)
    source = np.load(tmp_path / "source.npy", mmap_mode="c")
    source[:] = 255 - source
    edited = np.array(source)
    out = io.BytesIO()
    stream.encode(source, out, k=16)
    assert np.array_equal(source, edited)
    assert out.getvalue() == kmq_bytes(Image.fromarray(edited), k=16)


def test_decode_into_refuses_other_dtypes(tmp_path: Path) -> None:
    stream.encode(np.asarray(sample("ihc.png", "RGB")), tmp_path / "a.kmq", k=4)
    for dtype in (np.float32, np.uint16, np.int8):
        with pytest.raises(ValueError, match="out must be a uint8 array"):
            stream.decode_into(tmp_path / "a.kmq", np.zeros((227, 303, 3), dtype))


def test_encoded_file_gets_the_permissions_open_would_give(tmp_path: Path) -> None:
    image = np.asarray(sample("ihc.png", "RGB"))
    stream.encode(image, tmp_path / "a.kmq", k=4)
    Image.fromarray(image).save(tmp_path / "b.kmq", k=4)
    assert (tmp_path / "a.kmq").stat().st_mode == (tmp_path / "b.kmq").stat().st_mode


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_one_reader_serves_several_threads(tmp_path: Path, compression: str) -> None:
    """Tiles read side by side from one reader: interleaved seeks and reads gave wrong pixels
    ("none") or false checksum errors (zstd) before each seek and read went together."""
    from concurrent.futures import ThreadPoolExecutor

    y, x = np.mgrid[0:600, 0:700]
    image = np.dstack([x * 3 % 256, y * 5 % 256, (x ^ y) % 256]).astype(np.uint8)
    path = tmp_path / "tiles.kmq"
    stream.encode(image, path, k=200, compression=compression)
    with stream.open_kmq(path) as reader:
        whole = reader.read_rows()
        with ThreadPoolExecutor(8) as pool:
            same = list(pool.map(lambda top: np.array_equal(reader.read_rows(top, top + 20), whole[top : top + 20]), range(0, 580, 4)))
    assert all(same)


def test_open_kmq_reads_a_file_object_from_its_start_and_takes_bytes() -> None:
    """As Image.open: a caller that sniffed the magic bytes first is not refused, a file object
    that fails to open is left open, and a file's bytes are read as one."""
    data = (SAMPLES / "ihc-k16.kmq").read_bytes()
    expected = stream.open_kmq(io.BytesIO(data)).read_rows()
    sniffed = io.BytesIO(data)
    sniffed.read(8)
    with stream.open_kmq(sniffed) as reader:
        assert np.array_equal(reader.read_rows(), expected)
    with stream.open_kmq(data) as reader:
        assert np.array_equal(reader.read_rows(), expected)
    broken = io.BytesIO(b"not a KMQ file at all, but long enough for a header")
    with pytest.raises(KmqError):
        stream.open_kmq(broken)
    assert not broken.closed


def test_rows_that_are_not_ints_are_a_type_error_naming_them() -> None:
    with stream.open_kmq(SAMPLES / "ihc-k16.kmq") as reader:
        with pytest.raises(TypeError, match="rows' start must be an int, not str"):
            reader.read_rows("1", 3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="rows' stop must be an int, not float"):
            reader.read_rows(0, 3.0)  # type: ignore[arg-type]
        assert reader.read_rows(np.int64(1), 3).shape == (2, 303, 3)


def test_a_closed_reader_a_bad_max_pixels_and_a_list_for_out_are_named() -> None:
    reader = stream.open_kmq(SAMPLES / "ihc-k16.kmq")
    with pytest.raises(TypeError, match="out must be a numpy array"):
        reader.decode_into([[0]])  # type: ignore[arg-type]
    reader.close()
    with pytest.raises(ValueError, match="the KMQ reader is closed"):
        reader.read_rows(0, 2)
    with pytest.raises(TypeError, match="max_pixels must be an int or None, not str"):
        stream.open_kmq(SAMPLES / "ihc-k16.kmq", max_pixels="x")  # type: ignore[arg-type]
