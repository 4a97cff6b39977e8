"""Gigapixel images in bounded memory: encode from, and decode to, arrays read by row strips.

Pillow holds a whole image; this module never does. The source is any (height, width,
channels) uint8 array-like that can be sliced by rows: a numpy memmap, a zarr or dask array,
a tifffile page opened as zarr. It is read twice: a streaming colour histogram (memory
bounded by the colour count) and the clustering on it, then assignment and coding strip by
strip, the strips spilled to a temporary file until the header's lengths are known. The
bytes are those `Image.save` writes for the same pixels and options. Decoding goes strip by
strip too: an iterator of row strips, a row range, or straight into a caller's array.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import numbers
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Self

import numpy as np

from .api import (
    DEFAULT_COMPRESSION,
    DEFAULT_K,
    check_compression,
    check_k,
    check_metadata,
    check_psnr,
    check_seed,
    warn_if_not_near,
)
from .atomic import atomic_output
from .bitpack import pack_indices
from .codec import IndexStreamDecoder, Piece, Strip, codebook_section, decode_rows, place, read_codebook, read_prefix, tables_first
from .coding import (
    STRIP_HEAD_SIZE,
    Palette,
    StripTable,
    check_strip_crc,
    encode_strip,
    iter_table,
    pack_table,
    parallel_map,
    parse_strip_height,
    predictable,
    strip_height_for,
    strips_minor,
    table_size,
    uncoded_is_no_longer,
    writer_strips,
)
from .decoding import (
    BLOCK_PIXELS,
    JOB_PIXELS,
    READ_SIZE,
    StripDecoder,
    job_weight,
)
from .format import (
    HEADER_SIZE,
    MAX_K,
    Header,
    IndexCoding,
    KmqError,
    StripMethod,
    bits_for_k,
    index_dtype,
    crc32,
    new_header,
    pack_crc,
    pack_metadata,
    parse_header,
    raw_stream_length,
    unpack_metadata,
)
from .jobs import WORKERS, run_jobs
from .near import coding_palette
from .quantize import (
    Histogram,
    RowSource,
    cluster_for_psnr,
    color_keys,
    quantize_histogram,
    streaming_histogram,
)

# Rows of an uncoded stream are packed this many pixels at a time (a multiple of 8 rows, so
# each batch ends on a byte boundary and the batches concatenate to the whole stream).
_PACK_PIXELS = 1 << 20
_COPY_BLOCK = 1 << 24  # bytes per read when copying the spilled strips and checksumming
_READ_BLOCK = 1 << 24  # bytes per read when decoding a whole file


def _release_pages(array: object) -> Callable[[int, int], None] | None:
    """For a numpy memmap, a function dropping the pages of rows [top, bottom) from this
    process once read or written, so its resident memory stays at a strip whatever the file's
    size (the data stays in the file and the page cache); None for anything else."""
    if not isinstance(array, np.memmap) or not isinstance(array.base, mmap.mmap) or not array.flags.c_contiguous:
        return None
    if array.mode == "c":  # a private mapping: dropping its pages would drop the caller's edits
        return None
    mapping = array.base
    start = array.offset % mmap.ALLOCATIONGRANULARITY  # np.memmap maps from an aligned offset
    row_bytes = array.strides[0]

    def release(top: int, bottom: int) -> None:
        begin = (start + top * row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        end = (start + bottom * row_bytes) // mmap.PAGESIZE * mmap.PAGESIZE
        if end > begin:
            with contextlib.suppress(OSError, ValueError):
                mapping.madvise(mmap.MADV_DONTNEED, begin, end - begin)

    return release


def _shape(source: RowSource) -> tuple[int, int, int]:
    shape = tuple(source.shape)
    if len(shape) == 2:
        shape = (*shape, 1)
    if len(shape) != 3 or not 1 <= shape[2] <= 4 or 0 in shape:
        raise ValueError(f"source must have shape (height, width) or (height, width, 1..4 channels), not {shape}")
    return int(shape[0]), int(shape[1]), int(shape[2])


class _Rows:
    """The source read as (rows, width, channels) uint8 strips, its pages released after reading."""

    def __init__(self, source: RowSource) -> None:
        self._source = source
        self.shape = _shape(source)
        self.release = _release_pages(source)

    def __getitem__(self, rows: slice) -> np.ndarray:
        top, bottom, _ = rows.indices(self.shape[0])
        strip = np.array(self._source[top:bottom])  # a copy: a memmap's pages can then go
        if strip.dtype != np.uint8:
            raise ValueError(f"source must hold uint8 values, not {strip.dtype}")
        if self.release is not None:
            self.release(top, bottom)
        return strip.reshape(bottom - top, self.shape[1], self.shape[2])


class _Lookup:
    """Each pixel's index from its colour: a table over all keys for <= 3 channels, else a
    search in the histogram's sorted keys (as the in-memory quantizer does)."""

    def __init__(self, hist: Histogram, color_index: np.ndarray, channels: int) -> None:
        self.dtype = index_dtype(int(color_index.max(initial=0)) + 1)
        self._keys, self._index = hist.keys, color_index.astype(self.dtype)
        self._table = None
        if channels <= 3:
            self._table = np.empty(1 << (8 * channels), dtype=self.dtype)
            self._table[hist.keys] = self._index

    def __call__(self, strip: np.ndarray) -> np.ndarray:
        rows, width, channels = strip.shape
        keys = color_keys(strip.reshape(-1, channels))
        found = self._table[keys] if self._table is not None else self._index[np.searchsorted(self._keys, keys)]
        return found.reshape(rows, width)


@contextlib.contextmanager
def _output(target: str | os.PathLike[str] | IO[bytes]) -> Iterator[IO[bytes]]:
    """A path is written to a temporary file beside it and renamed into place once complete;
    a file object is written as it is."""
    if not isinstance(target, (str, os.PathLike)):
        yield target
        return
    with atomic_output(target) as handle:
        yield handle


def encode(
    source: RowSource,
    target: str | os.PathLike[str] | IO[bytes],
    k: int | None = None,
    *,
    seed: int = 0,
    psnr: float | None = None,
    compression: str = DEFAULT_COMPRESSION,
    metadata: dict[str, object] | None = None,
) -> Header:
    """Write source, an (H, W[, C]) uint8 array-like read by row strips, as a KMQ file to target
    (a path, written atomically, or a binary file object); options as Image.save's, except that
    psnr= keeps the smallest k with nearest-entry indices (Image.save's smallest file compares
    whole encodings across k) and compression="auto" writes zstd's strips (its near_rans trial
    needs the whole image's indices at once). Memory stays bounded whatever the image size; returns the
    file's header."""
    if k is not None and psnr is not None:
        raise ValueError("give k or psnr, not both: psnr chooses k")
    seed, method = check_seed(seed), check_compression(compression)
    extension = pack_metadata(check_metadata(metadata or {}))
    rows = _Rows(source)
    target_psnr = None if psnr is None else check_psnr(psnr)
    k = check_k(DEFAULT_K if k is None else k)
    hist = streaming_histogram(rows)
    if target_psnr is None:
        codebook, color_index = quantize_histogram(hist, k, seed)
    else:
        codebook, color_index = cluster_for_psnr(hist, target_psnr, seed, MAX_K)
    warn_if_not_near(len(codebook), compression, stacklevel=2)
    lookup = _Lookup(hist, color_index, rows.shape[2])
    del hist, color_index
    with _output(target) as fp:
        if method is None or len(codebook) == 1:
            return _write_uncoded(fp, rows, lookup, codebook, extension, method)
        return _write_strips(fp, rows, lookup, codebook, extension, method)


def _write_uncoded(fp: IO[bytes], rows: _Rows, lookup: _Lookup, codebook: np.ndarray, extension: bytes, method: StripMethod | None) -> Header:
    height, width, channels = rows.shape
    bits = bits_for_k(len(codebook))
    section, coded_length = codebook_section(codebook, method)
    header = new_header(width, height, channels, len(codebook), IndexCoding.NONE, raw_stream_length(width, height, bits), len(extension), codebook_stream_length=coded_length)
    crc = _write_all(fp, 0, header.pack(), extension, section)
    step = max(8, _PACK_PIXELS // width // 8 * 8)
    for top in range(0, height if bits else 0, step):
        crc = _write_all(fp, crc, pack_indices(lookup(rows[top : top + step]), bits))
    fp.write(pack_crc(crc))
    return header


def _write_strips(fp: IO[bytes], rows: _Rows, lookup: _Lookup, codebook: np.ndarray, extension: bytes, method: StripMethod) -> Header:
    """Strips are coded WORKERS at a time and spilled to a temporary file: the strip table and
    the header, which precede them, need their lengths. Where they come out no shorter than the
    packed indices, the source is read once more and written uncoded, as Image.save does."""
    height, width, channels = rows.shape
    bits = bits_for_k(len(codebook))
    palette = coding_palette(codebook) if method == StripMethod.NEAR_FLAT else None
    strip_height, drawn = writer_strips(lookup(rows[0 : strip_height_for(width, height)]), width, height, bits, method, palette)
    lengths, crcs = [], []
    minor = 0
    ordered = predictable(codebook)

    def code(top: int) -> bytes:
        return encode_strip(lookup(rows[top : top + strip_height]), bits, method, palette, drawn=drawn, ordered=ordered)

    tops = range(0, height, strip_height)
    with tempfile.TemporaryFile() as spill:
        for first in range(0, len(tops), 2 * WORKERS):
            for strip in parallel_map(code, [(top,) for top in tops[first : first + 2 * WORKERS]]):
                lengths.append(len(strip))
                crcs.append(crc32(strip))
                minor = max(minor, strips_minor([strip], len(codebook)))
                spill.write(strip)
        table = pack_table(StripTable(strip_height, tuple(lengths), tuple(crcs)))
        assert len(table) == table_size(height, strip_height)
        stream_length = len(table) + sum(lengths)
        if uncoded_is_no_longer(width * height, bits, stream_length):
            return _write_uncoded(fp, rows, lookup, codebook, extension, method)
        section, coded_length = codebook_section(codebook, method)
        header = new_header(width, height, channels, len(codebook), IndexCoding.STRIPS, stream_length, len(extension), minor, coded_length)
        crc = _write_all(fp, 0, header.pack(), extension, section, table)
        spill.seek(0)
        while block := spill.read(_COPY_BLOCK):
            crc = _write_all(fp, crc, block)
    fp.write(pack_crc(crc))
    return header


def _write_all(fp: IO[bytes], crc: int, *parts: bytes) -> int:
    for part in parts:
        fp.write(part)
        crc = crc32(part, crc)
    return crc


# --- decoding ------------------------------------------------------------------------------


@dataclass
class KmqReader:
    """An open KMQ file read strip by strip: header, metadata and codebook are read at once,
    pixels only as asked. Use as a context manager (or call close). One reader may serve
    several threads (tiles read side by side): each read of the file is a seek and a read
    under the reader's lock, and the decoding happens outside it."""

    header: Header
    metadata: dict[str, bytes]
    codebook: np.ndarray
    _fp: IO[bytes]
    _prefix_crc: int
    _table_checked: bool = False  # the strip table's total has been checked
    _near: Palette | None = None  # near_rans strips' tables, made when asked for
    _lock: threading.Lock = field(default_factory=threading.Lock)  # a seek and its read, together

    @property
    def _palette(self) -> Palette:
        if self._near is None:
            self._near = Palette(self.codebook)
        return self._near

    def close(self) -> None:
        self._fp.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the decoded image."""
        return self.header.height, self.header.width, self.header.channels

    def iter_rows(self, start: int = 0, stop: int | None = None, *, indices: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, rows) for each run of rows [start, stop), top down: pixels
        (rows, width, channels) uint8, or with indices=True each pixel's codebook index (the
        segmentation; uint8 when k <= 256, else uint16). Memory stays at a piece of
        BLOCK_PIXELS pixels (or one row, if wider) however the file is cut into strips. The
        whole image checks every checksum, file_crc included; a row range checks the header
        and the strips it reads (strip_crc; uncoded streams have none)."""
        start, stop = self._range(start, stop)
        convert = self._converter(indices)
        row_buffer: np.ndarray | None = None  # a row wider than a piece, joined from its parts
        for row, column, found in self._pieces(start, stop):
            if column == 0 and found.shape[1] == self.header.width:
                yield row, convert(found)
                continue
            if row_buffer is None:
                row_buffer = np.empty((1, *self._row_shape(indices)), dtype=self._dtype(indices))
            row_buffer[0, column : column + found.shape[1]] = convert(found)[0]
            if column + found.shape[1] == self.header.width:
                yield row, row_buffer
                row_buffer = None

    def read_rows(self, start: int = 0, stop: int | None = None, *, indices: bool = False) -> np.ndarray:
        """Rows [start, stop) as one array: (rows, width, channels) pixels, or (rows, width) indices."""
        start, stop = self._range(start, stop)
        out = np.empty((stop - start, *self._row_shape(indices)), dtype=self._dtype(indices))
        convert = self._converter(indices)
        for row, column, found in self._pieces(start, stop):
            out[row - start : row - start + len(found), column : column + found.shape[1]] = convert(found)
        return out

    def decode_into(self, out: np.ndarray, start: int = 0, stop: int | None = None) -> None:
        """Write rows [start, stop) into out (e.g. a np.memmap), of shape (stop - start, width,
        channels), or (stop - start, width) for one channel; a memmap's written pages are
        released piece by piece, so memory stays bounded."""
        start, stop = self._range(start, stop)
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy array (e.g. a np.memmap), not {type(out).__name__}")
        expected = (stop - start, self.header.width, self.header.channels)
        if tuple(out.shape) not in (expected, expected[:2] if expected[2] == 1 else expected):
            raise ValueError(f"out must have shape {expected}, not {tuple(out.shape)}")
        if out.dtype != np.uint8:
            raise ValueError(f"out must be a uint8 array, not {out.dtype}")
        with _piece_writer(out) as write, ThreadPoolExecutor(max_workers=1) as writer:
            pending: Future[None] | None = None
            for row, column, found in self._pieces(start, stop):
                pixels = self.codebook[found]
                if pending is not None:
                    pending.result()  # one piece written while the next decodes: bounded memory
                pending = writer.submit(write, row - start, column, pixels)
            if pending is not None:
                pending.result()

    def _pieces(self, start: int, stop: int) -> Iterator[Piece]:
        """The decoded pieces of rows [start, stop), clipped to them."""
        if (start, stop) == (0, self.header.height):
            yield from self._iter_all()  # read to its end: file_crc is checked last
            return
        if self.header.index_coding == IndexCoding.STRIPS:
            pieces = self._iter_strips(start, stop)
        else:
            pieces = self._iter_uncoded(start, stop)
        for row, column, found in pieces:
            low, high = max(start, row), min(stop, row + len(found))
            if low < high:
                yield low, column, found[low - row : high - row]
            if row + len(found) >= stop and column + found.shape[1] == self.header.width:
                return

    def _converter(self, indices: bool) -> Callable[[np.ndarray], np.ndarray]:
        return (lambda found: found) if indices else (lambda found: self.codebook[found])

    def _row_shape(self, indices: bool) -> tuple[int, ...]:
        return (self.header.width,) if indices else (self.header.width, self.header.channels)

    def _dtype(self, indices: bool) -> np.dtype:
        return index_dtype(self.header.k) if indices else np.dtype(np.uint8)

    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        height = self.header.height
        stop = height if stop is None else stop
        for name, row in (("start", start), ("stop", stop)):
            if isinstance(row, bool) or not isinstance(row, numbers.Integral):
                raise TypeError(f"rows' {name} must be an int, not {type(row).__name__}")
        if not 0 <= start < stop <= height:
            raise ValueError(f"rows must satisfy 0 <= start < stop <= height={height}, not {start}, {stop}")
        return start, stop

    def _read_at(self, offset: int, size: int) -> bytes:
        """size bytes at offset of the file (within its length, checked at open). Under the
        lock: two threads' seeks and reads interleaved read each other's bytes (wrong pixels
        from "none" strips, checksum errors from the others)."""
        with self._lock:
            if getattr(self._fp, "closed", False):  # a file-like object may not say
                raise ValueError("the KMQ reader is closed")
            self._fp.seek(offset)
            return _read_exactly(self._fp, size)

    def _iter_all(self) -> Iterator[Piece]:
        """The whole file, sequentially, through the same incremental decoder as Pillow's load()."""
        decoder = IndexStreamDecoder(self.header, self._prefix_crc)
        position, end = self.header.codebook_offset, self.header.file_length
        while not decoder.done and position < end:
            # Read by position: a caller may read other rows of this reader in between.
            block = self._read_at(position, min(READ_SIZE, end - position))
            position += len(block)
            yield from decoder.feed(block)
        if not decoder.done:
            raise KmqError(f"truncated KMQ file: it should be {end} bytes")

    def _strip_height(self) -> int:
        header = self.header
        return parse_strip_height(self._read_at(header.index_stream_offset, STRIP_HEAD_SIZE), header.height, header.index_stream_length)

    def _strips(self, first: int, last: int) -> list[tuple[int, int, int, int]]:
        """(number, offset from the stream's start, length, crc) of strips first..last: the
        table is read in chunks, every entry checked and, once per reader, their total."""
        header = self.header
        fields = (header.height, header.width, header.bits_per_index, header.index_stream_length)
        wanted = list(iter_table(self._read_at, header.index_stream_offset, fields, first, last, not self._table_checked))
        self._table_checked = True
        return wanted

    def _iter_strips(self, start: int, stop: int) -> Iterator[Piece]:
        """The strips holding rows [start, stop): small ones read whole and decoded in jobs on
        the shared pool, big ones checked against strip_crc, then decoded piece by piece."""
        header, width = self.header, self.header.width
        strip_height = self._strip_height()
        strips = self._strips(start // strip_height, (stop - 1) // strip_height)
        position = 0
        while position < len(strips):
            number, offset, length, crc = strips[position]
            rows = min(strip_height, header.height - number * strip_height)
            if rows * width > BLOCK_PIXELS:
                yield from self._big_strip(number, rows, offset, length, crc, strip_height)
                position += 1
                continue
            jobs: list[list[Strip]] = []
            while position < len(strips) and len(jobs) < WORKERS:
                job: list[Strip] = []
                pixels = 0
                while position < len(strips):
                    number, offset, length, crc = strips[position]
                    rows = min(strip_height, header.height - number * strip_height)
                    if rows * width > BLOCK_PIXELS:
                        break
                    method = self._read_at(header.index_stream_offset + offset, 1)[0] if length else 0
                    weighted = rows * width * job_weight(method)
                    if job and pixels + weighted > JOB_PIXELS:
                        break
                    data = self._read_at(header.index_stream_offset + offset, length)
                    job.append((number, data, number * strip_height, rows, crc))
                    pixels += weighted
                    position += 1
                if not job:
                    break
                jobs.append(job)
            tables_first(jobs, self._palette)
            for job, found in zip(jobs, run_jobs(decode_rows, [(job, header, None, None, self._palette) for job in jobs])):
                yield job[0][2], 0, found

    def _big_strip(self, number: int, rows: int, offset: int, length: int, crc: int, strip_height: int) -> Iterator[Piece]:
        header = self.header
        base = header.index_stream_offset + offset
        computed = 0
        for position in range(0, length, READ_SIZE):  # strip_crc first, in bounded reads
            computed = crc32(self._read_at(base + position, min(READ_SIZE, length - position)), computed)
        check_strip_crc(computed, crc, number)
        top = number * strip_height
        decoder = StripDecoder(
            rows * header.width, top * header.width, header.width, header.k, header.bits_per_index, length, f"KMQ strip {number}",
            lambda at, size: self._read_at(base + at, size), palette=self._palette,
        )
        for first, found in decoder.pieces():
            yield place(first, found, header.width)

    def _iter_uncoded(self, start: int, stop: int) -> Iterator[Piece]:
        header = self.header
        width, bits = header.width, header.bits_per_index
        first_bit, end_bit = start * width * bits, stop * width * bits
        base = header.index_stream_offset + first_bit // 8
        decoder = StripDecoder(
            (stop - start) * width, start * width, width, header.k, bits, (end_bit + 7) // 8 - first_bit // 8, "KMQ index stream",
            lambda at, size: self._read_at(base + at, size), StripMethod.RAW, first_bit % 8, stop == header.height,
        )
        for first, found in decoder.pieces():
            yield place(first, found, width)


@contextlib.contextmanager
def _piece_writer(out: np.ndarray) -> Iterator[Callable[[int, int, np.ndarray], None]]:
    """write(row, column, pixels) into out: whole rows, or part of one row. A writable,
    C-contiguous np.memmap of a file is written through the file (os.pwrite): the page cache
    is the one its mapping shows, and this skips a page fault per 4 KiB of a fresh file
    (measured 2.5x faster) and keeps the pages out of this process's resident memory.
    Anything else is assigned to."""
    filename = getattr(out, "filename", None)
    if isinstance(out, np.memmap) and filename and out.mode in ("r+", "w+") and out.flags.c_contiguous and isinstance(out.base, mmap.mmap):
        out.flush()  # earlier writes through the mapping reach the page cache first
        row_bytes, pixel_bytes = out.strides[0], out.strides[1]
        with open(filename, "r+b") as file:
            fd = file.fileno()

            def write(row: int, column: int, pixels: np.ndarray) -> None:
                data = memoryview(np.ascontiguousarray(pixels, dtype=np.uint8)).cast("B")
                position = out.offset + row * row_bytes + column * pixel_bytes
                while data:
                    written = os.pwrite(fd, data, position)
                    data, position = data[written:], position + written

            yield write
        return

    def assign(row: int, column: int, pixels: np.ndarray) -> None:
        target = out[row : row + len(pixels), column : column + pixels.shape[1]]
        target[...] = pixels.reshape(target.shape)

    yield assign


def _read_exactly(fp: IO[bytes], size: int) -> bytes:
    data = fp.read(size)
    if len(data) != size:
        raise KmqError(f"truncated KMQ file: {size} bytes expected, {len(data)} present")
    return data


# Pixels open_kmq accepts by default: 2**34 (131,072 x 131,072), far above Pillow's limit,
# for gigapixel work; memory stays bounded by the rows asked for whatever the image's size.
STREAM_MAX_PIXELS = 1 << 34


def open_kmq(source: str | os.PathLike[str] | IO[bytes] | bytes, max_pixels: int | None = STREAM_MAX_PIXELS) -> KmqReader:
    """Open a KMQ file (a path, a file's bytes, or a seekable binary file object, read from its
    start as Image.open reads one, which the reader then owns) for reading by rows; checks the
    header, extension area and codebook, and that the file is as long as its header says.
    max_pixels: refuse larger images (None: no limit). A file object it fails to open is left
    open, as Image.open leaves one."""
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Integral)):
        raise TypeError(f"max_pixels must be an int or None, not {type(max_pixels).__name__}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    opened = isinstance(source, (str, os.PathLike))
    fp: IO[Any] = open(source, "rb") if opened else source  # noqa: SIM115 - the reader owns it
    try:
        _rewind(fp)
        prefix = fp.read(HEADER_SIZE)
        header = parse_header(prefix)
        if max_pixels is not None and header.width * header.height > max_pixels:
            raise KmqError(f"KMQ image of {header.width * header.height:,} pixels exceeds max_pixels={max_pixels:,} (a possible decompression bomb)")
        size = _file_size(fp)
        if size < header.file_length:  # every length in the header is now within the file
            raise KmqError(f"truncated KMQ file: {size:,} bytes of {header.file_length:,}")
        head = prefix + _read_exactly(fp, header.extension_length)
        header, chunks, prefix_crc = read_prefix(head)
        codebook = read_codebook(_read_exactly(fp, header.codebook_length), header)
        return KmqReader(header, unpack_metadata(chunks), codebook, fp, prefix_crc)
    except BaseException:
        if opened:
            fp.close()
        raise


def _rewind(fp: IO[bytes]) -> None:
    """To the file's start: every offset the reader uses is counted from it (a caller that
    sniffed the magic bytes first got 'not a KMQ file')."""
    try:
        fp.seek(0)
    except (AttributeError, OSError, ValueError) as error:
        raise ValueError("open_kmq needs a seekable file") from error


def _file_size(fp: IO[bytes]) -> int:
    """The file's length in bytes, from its current position's file."""
    try:
        here = fp.tell()
        end = fp.seek(0, os.SEEK_END)
        fp.seek(here)
    except (AttributeError, OSError, ValueError) as error:
        raise ValueError("open_kmq needs a seekable file") from error
    return end


def iter_rows(
    source: str | os.PathLike[str] | IO[bytes], start: int = 0, stop: int | None = None, *, indices: bool = False, max_pixels: int | None = STREAM_MAX_PIXELS
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows) piece by piece, as KmqReader.iter_rows, for a path or file object."""
    with open_kmq(source, max_pixels) as reader:
        yield from reader.iter_rows(start, stop, indices=indices)


def decode_into(
    source: str | os.PathLike[str] | IO[bytes], out: np.ndarray, start: int = 0, stop: int | None = None, max_pixels: int | None = STREAM_MAX_PIXELS
) -> Header:
    """Decode rows [start, stop) of a KMQ file into out (e.g. a np.memmap); returns the header."""
    with open_kmq(source, max_pixels) as reader:
        reader.decode_into(out, start, stop)
        return reader.header


__all__ = ["STREAM_MAX_PIXELS", "KmqReader", "decode_into", "encode", "iter_rows", "open_kmq"]
