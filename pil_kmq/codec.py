"""KMQ files <-> (indices, codebook): writing the parts of a file and decoding it incrementally.

Knows the byte layout and the bit packing; knows nothing of Pillow or of k-means.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from .bitpack import pack_indices
from .coding import (
    STRIP_HEAD_SIZE,
    Palette,
    StripTable,
    check_strip_crc,
    encode_codebook,
    encode_strips,
    is_near,
    looks_drawn,
    one_drawn_strip,
    parse_strip_height,
    parse_table,
    predictable,
    rows_floor,
    rows_trial,
    runs_floor,
    runs_trial,
    strips_minor,
    table_size,
    trials_kept,
    uncoded_is_no_longer,
)
from .decoding import (
    BLOCK_PIXELS,
    JOB_PIXELS,
    READ_SIZE,
    StripDecoder,
    decode_codebook,
    decode_whole,
    job_weight,
)
from .format import (
    CRC_SIZE,
    HEADER_SIZE,
    KNOWN_CHUNKS,
    NEAR_METHODS,
    ROWS_METHODS,
    Header,
    IndexCoding,
    KmqError,
    StripMethod,
    bits_for_k,
    index_dtype,
    crc32,
    new_header,
    pack_crc,
    parse_extensions,
    parse_header,
    unpack_crc,
)
from .jobs import WORKERS, run_jobs, side_by_side, spare_worker
from .near import MAX_K, coding_palette, estimated_size, split_tables
from .quantize import Quantized


class Coded(Quantized):
    """A Quantized whose index stream has been coded already (a psnr= search measures the
    files it compares): writing it with the same method reuses those bytes, which a plain save
    would write only once weighed (weighed())."""

    method: StripMethod | None
    index_stream: tuple[IndexCoding, list[bytes]]
    weighed: bool  # False: coded for size (encode_strip's weigh), to be weighed (weighed()); auto's choice is final


def coded(quantized: Quantized, method: StripMethod | None, weigh: bool = True) -> Coded:
    """quantized with its index stream coded with `method` (`weigh`: encode_strip's)."""
    result = Coded(*quantized)
    result.method, result.weighed = method, weigh or method != StripMethod.NEAR_FLAT or len(quantized.codebook) > MAX_K  # only near coded strips are weighed
    result.index_stream = index_stream(quantized.indices, quantized.codebook, method, weigh)
    return result


def weighed(result: Quantized) -> Quantized:
    """A Coded result coded unweighed (coded(..., weigh=False)) coded as a plain save codes it,
    its near coded strips used again; anything else as it is."""
    if not isinstance(result, Coded) or result.weighed:
        return result
    coding, stream = result.index_stream
    again = Coded(*result)
    again.method, again.weighed = result.method, True
    again.index_stream = index_stream(result.indices, result.codebook, result.method, True, stream if coding == IndexCoding.STRIPS else ())
    return again


# compression="auto" codes a drawing's k= result near_rans where rows sampled one in AUTO_STEP
# estimate that at most AUTO_NEAR_MARGIN of zstd's bytes: on the drawings made for tuning
# (benchmarks/auto.py) the estimate fell that low on three, where weighed near_rans was 4 to
# 55 % smaller (unweighed, as here, one of them, 0.850 x and just in, came out 0.4 % larger and
# kept zstd's), and missed a 3 % gain. Below AUTO_MIN_BYTES of zstd's little is to be gained.
AUTO_STEP = 16
AUTO_NEAR_MARGIN = 0.85
AUTO_MIN_BYTES = 2048
AUTO_PNG8_K = 256  # up to here the alternative is PNG-8, whose loads a photo's zstd strips beat


def auto_coded(quantized: Quantized, exact: bool, zstd: Coded | None = None) -> Coded:
    """quantized (a k= save's, not traded for bits; `exact`: its codebook holds the image
    exactly) coded as compression="auto" codes it: zstd's strips, or where the estimate
    (AUTO_NEAR_MARGIN, a near_rans estimate) and then the coding find them smaller, near coded
    strips (near_flat; near_rans for a small strip where shorter), unweighed and
    sized as a photo's (two or more above 2^17 pixels, which decode side by side; one where
    the image is mostly flat stretches, coding.NEAR_ONE_STRIP_BITS). Weighing
    each against zstd's, as "near" does, made the label maps' files 4 % smaller but took 2.6 x
    as long (coding zstd again) for one strip that loads on one thread. Loads of near_rans
    strips are slower than zstd's (PNG-8's): they are tried only for a drawing (few literals:
    a label map, at its colours or fewer) or an image kept exactly in more than AUTO_PNG8_K
    colours. A photo's indices mostly have many literals and keep zstd's fast loads; one with
    wide flat areas at few entries (a black surround, a defocused background) looks drawn and
    takes near_rans only where that is far smaller. `zstd`: these indices' zstd strips, if
    coded already (coded(quantized, RUNS_ZSTD)); if not, where zstd's quick trial puts a floor
    under them (_zstd_floor), near coding is weighed against that first, and zstd's strips are
    coded only where it is not below it: a label map's save spent 40 % of its time on them.
    Where near coding is likely to be weighed against that one strip all the same
    (_near_likely) and a worker is spare (jobs.spare_worker), the two are coded side by side."""
    if zstd is not None and (zstd.indices is not quantized.indices or zstd.method != StripMethod.RUNS_ZSTD):
        zstd = None
    estimate = functools.cache(lambda: estimated_size(quantized.indices, quantized.codebook, AUTO_STEP))
    near = spare = None
    if zstd is None:
        with trials_kept() as kept:  # the floor's trials, run again in coding zstd's strip
            trials = _DrawnTrials(quantized)
            floor = _zstd_floor(quantized, exact, estimate, trials)
            if floor is not None:
                near = _near_within(quantized, exact, floor, estimate)
                if near is not None and _stream_length(near) < floor:
                    return near
            if near is None and spare_worker() and _near_likely(quantized, exact, estimate, trials):
                spare, zstd = side_by_side(lambda: _near_coded(quantized), lambda: _zstd_coded(quantized, kept))
            else:
                zstd = coded(quantized, StripMethod.RUNS_ZSTD)
    size = _stream_length(zstd)
    if near is None:  # near coding tried against the floor passes against zstd's bytes, at or above it
        near = _near_within(quantized, exact, size, estimate, spare)
    return near if near is not None and _stream_length(near) < size else zstd


def _near_within(quantized: Quantized, exact: bool, size: int, estimate: Callable[[], int], known: Coded | None = None) -> Coded | None:
    """quantized near coded as auto_coded codes it (`known`: so coded already), where zstd's
    strips take `size` bytes (or at least that many: a floor) and the estimate (`estimate`())
    is within AUTO_NEAR_MARGIN of them; else None."""
    if not auto_estimates(quantized, exact, size) or estimate() > AUTO_NEAR_MARGIN * size:
        return None
    return known if known is not None else _near_coded(quantized)


def _near_coded(quantized: Quantized) -> Coded:
    near = coded(quantized, StripMethod.NEAR_FLAT, weigh=False)
    near.weighed = True  # as a plain save writes it: weighed() leaves it so
    return near


def _zstd_coded(quantized: Quantized, kept: dict[tuple[int, int], int]) -> Coded:
    """quantized's zstd strips, coded on a pool thread with the caller's `kept` trials."""
    with trials_kept(kept):
        return coded(quantized, StripMethod.RUNS_ZSTD)


class _DrawnTrials:
    """Where one drawn strip holds quantized's zstd strips (coding.one_drawn_strip: `drawn`),
    the quick trial's bytes of that strip as runs and as rows (or MED residuals), each tried
    once, when first asked for."""

    def __init__(self, quantized: Quantized) -> None:
        self.indices, codebook = quantized
        self.bits_per_index, self.ordered = bits_for_k(len(codebook)), predictable(codebook)
        self.drawn = 1 < len(codebook) <= MAX_K and one_drawn_strip(self.indices)

    @functools.cached_property
    def runs(self) -> int:
        return runs_trial(self.indices, self.bits_per_index)

    @functools.cached_property
    def rows(self) -> int:
        return rows_trial(self.indices, self.bits_per_index, self.ordered)


def _zstd_floor(quantized: Quantized, exact: bool, estimate: Callable[[], int], trials: _DrawnTrials) -> int | None:
    """A floor under the bytes of quantized's zstd strips from zstd's quick trial (`trials`),
    where one drawn strip holds them and the runs' floor leaves near coding a chance
    (auto_estimates' gates, the estimate within AUTO_NEAR_MARGIN of it); else None."""
    if not trials.drawn:
        return None
    floor = runs_floor(trials.indices, trials.bits_per_index, trials.runs)
    if not auto_estimates(quantized, exact, floor) or estimate() > AUTO_NEAR_MARGIN * floor:
        return None
    return min(floor, rows_floor(trials.indices, trials.bits_per_index, trials.ordered, trials.rows))


# Where one drawn strip holds quantized's zstd strips, auto_coded takes it as likely that near
# coding will be weighed against them where it would be against AUTO_TRIAL_SHARE x the quick
# trial's bytes (the least of runs and rows), and codes both side by side. zstd's real levels
# stored the strips where that held in 0.736 x the trial and more on the drawings made for
# tuning (measured once, not kept as a script), and near coding coded so was weighed every
# time on them, the held-out graphics and generated label maps (benchmarks/side_by_side.py).
# Label maps can come out at 0.64 x, and a strip stored in under AUTO_MIN_BYTES is not
# weighed: a grey Voronoi map of 12 regions at k = 4, its trial 3,024 bytes and its strip
# 2,015, was near coded for nothing and saved in 1.09 x the time (measured once).
AUTO_TRIAL_SHARE = 0.73


def _near_likely(quantized: Quantized, exact: bool, estimate: Callable[[], int], trials: _DrawnTrials) -> bool:
    """Whether near coding is likely to be weighed against quantized's zstd strips
    (AUTO_TRIAL_SHARE): the runs' trial first, which the floor has run, then the rows' only
    where it may tell."""
    if not trials.drawn:
        return False
    most = int(AUTO_TRIAL_SHARE * trials.runs)
    if not auto_estimates(quantized, exact, most) or estimate() > AUTO_NEAR_MARGIN * most:
        return False
    expected = int(AUTO_TRIAL_SHARE * min(trials.runs, trials.rows))
    return expected >= AUTO_MIN_BYTES and estimate() <= AUTO_NEAR_MARGIN * expected


# compression="auto" searches psnr= for near coded strips where a near_rans estimate of the
# first k's nearest indices is at most PSNR_NEAR_MARGIN x their zstd strips' bytes, for zstd's
# strips where it is above PSNR_BOTH_MARGIN x, and for both (the smaller file kept) between.
# The estimate prices nearest indices, and near coding's trade then gains more than runs': on
# Kodak photos and the drawings made for tuning (benchmarks/psnr_auto.py, targets of 26-44 dB),
# photos estimated 0.75-1.06 x and came out 0.56-0.95 x as large near coded (loading in 2.4-6.7
# x the time), plots and a Voronoi map 0.37-0.92 x and 0.41-0.91 x; drawings whose rows and
# runs repeat far estimated 1.17-6.2 x and came out 0.99-1.16 x as large, but for a code
# listing at 1.28-1.40 x whose files near coding's trade made 0.61-1.00 x as large.
PSNR_NEAR_MARGIN = 1.1
PSNR_BOTH_MARGIN = 1.6


def psnr_methods(quantized: Quantized, zstd: Coded) -> tuple[StripMethod, ...]:
    """The strip methods compression="auto" runs a psnr= search for, from the nearest indices
    of its first k and their zstd strips: zstd's alone where near coding cannot go (k = 1,
    k > MAX_K)."""
    indices, codebook = quantized
    if not 1 < len(codebook) <= MAX_K:
        return (StripMethod.RUNS_ZSTD,)
    ratio = estimated_size(indices, codebook, AUTO_STEP) / max(1, _stream_length(zstd))
    if ratio <= PSNR_NEAR_MARGIN:
        return (StripMethod.NEAR_FLAT,)
    return (StripMethod.NEAR_FLAT, StripMethod.RUNS_ZSTD) if ratio <= PSNR_BOTH_MARGIN else (StripMethod.RUNS_ZSTD,)


def auto_estimates(quantized: Quantized, exact: bool, size: int) -> bool:
    """Whether auto_coded estimates near_rans bytes for quantized, whose zstd strips take `size`."""
    indices, codebook = quantized
    if not 1 < len(codebook) <= MAX_K or size < AUTO_MIN_BYTES:
        return False
    return (exact and len(codebook) > AUTO_PNG8_K) or looks_drawn(indices)


def _stream_length(result: Coded) -> int:
    return sum(len(part) for part in result.index_stream[1])


def index_stream(indices: np.ndarray, codebook: np.ndarray, method: StripMethod | None, weigh: bool = True, known: Sequence[bytes] = ()) -> tuple[IndexCoding, list[bytes]]:
    """The index_coding and the parts of the index stream of these indices (`weigh`, `known`:
    encode_strips's)."""
    k = len(codebook)
    bits_per_index = bits_for_k(k)
    if method is None or k == 1:
        return IndexCoding.NONE, [pack_indices(indices, bits_per_index)]
    palette = coding_palette(codebook) if method == StripMethod.NEAR_FLAT else None
    strips = list(encode_strips(indices, bits_per_index, method, palette, weigh, known, predictable(codebook)))
    if uncoded_is_no_longer(indices.size, bits_per_index, sum(len(part) for part in strips)):
        return IndexCoding.NONE, [pack_indices(indices, bits_per_index)]
    return IndexCoding.STRIPS, strips


def encode_parts(indices: np.ndarray, codebook: np.ndarray, method: StripMethod | None = None, extension: bytes = b"", reuse: Quantized | None = None) -> Iterator[bytes]:
    """The bytes of a KMQ file in order: header, extension area, codebook, index stream, file_crc.

    indices is (height, width) with values < len(codebook); codebook is (k, channels) uint8.
    method None writes index_coding 0 (bit-packed); a StripMethod writes index_coding 1 with
    strips stored that way (or RAW where that is smaller). k = 1 has no indices to code.
    `reuse`: a Coded result of these very indices, whose stream is used if its method matches
    (as a plain save writes it once weighed: weighed()).
    """
    height, width = indices.shape
    k, channels = codebook.shape
    if isinstance(reuse, Coded) and reuse.indices is indices and reuse.method == method:
        coding, stream = reuse.index_stream
    else:
        coding, stream = index_stream(indices, codebook, method)
    minor = strips_minor(stream[1:], k) if coding == IndexCoding.STRIPS else 0
    section, coded_length = codebook_section(codebook, method)
    header = new_header(width, height, channels, k, coding, sum(len(part) for part in stream), len(extension), minor, coded_length)
    crc = 0
    for part in (header.pack(), extension, section, *stream):
        crc = crc32(part, crc)
        yield part
    yield pack_crc(crc)


# Methods whose readers need zstd anyway: with these the codebook is coded (spec 6.1) where
# that saves an eighth of its bytes (coding.CODEBOOK_KEEP).
_ZSTD_METHODS = frozenset({StripMethod.RUNS_ZSTD, *ROWS_METHODS, *NEAR_METHODS})


def codebook_section(codebook: np.ndarray, method: StripMethod | None) -> tuple[bytes, int]:
    """The codebook's bytes in the file and its codebook_stream_length (0: stored raw)."""
    coded = encode_codebook(codebook) if method in _ZSTD_METHODS else None
    if coded is None:
        return np.ascontiguousarray(codebook, dtype=np.uint8).tobytes(), 0
    return coded, len(coded)


Piece = tuple[int, int, np.ndarray]  # (row, column, indices or their table values): whole rows, or part of one row


def place(first_pixel: int, found: np.ndarray, width: int) -> Piece:
    """A decoded run of pixels as (row, column, 2-D indices or table values)."""
    row, column = divmod(first_pixel, width)
    if column == 0 and found.size % width == 0:
        return row, 0, found.reshape(-1, width)
    return row, column, found.reshape(1, -1)


Strip = tuple[int, bytes, int, int, int]  # number, bytes, first row, rows, strip_crc


def decode_rows(strips: list[Strip], header: Header, out: np.ndarray | None = None, table: np.ndarray | None = None, palette: Palette | None = None) -> np.ndarray:
    """The indices (or their `table` values) of consecutive whole strips, decoded into `out`
    (their rows x width) or a new array, each checked against its strip_crc before it is
    decoded: one job for the shared pool. A caller that decodes image after image makes `out`
    in its own thread: made and freed in a pool thread, large arrays went back to the system
    after every image and were faulted in again."""
    width = header.width
    first = strips[0][2]
    if out is None:
        out = rows_array(strips, header, table)
    if not out.flags.c_contiguous or out.shape != _rows_shape(strips, header):
        raise ValueError("out must be a C-contiguous array of the strips' rows")
    for number, data, row, rows, stored in strips:
        check_strip_crc(crc32(data), stored, number)
        decode_whole(data, rows * width, row * width, width, header.k, header.bits_per_index, f"KMQ strip {number}", table, out[row - first : row - first + rows].reshape(-1), palette)
    return out


def tables_first(jobs: list[list[Strip]], palette: Palette | None) -> None:
    """Make the codebook's near tables on this thread before these jobs of decode_rows go to
    the pool, where they hold a near strip and the tables are made in halves side by side
    (near.split_tables): made in a job, one core made them while the other job waited."""
    if palette is not None and split_tables(len(palette.codebook)) and any(is_near(strip[1]) for job in jobs for strip in job):
        palette.tables  # noqa: B018 - made and kept


class _Spare:
    """Arrays of decoded rows kept from one image to the next. Made afresh for every image,
    the 4-byte-a-pixel arrays of codebook entries were given back to the system when freed
    and faulted in again by the next image (~750 page faults a Kodak load, when loads
    alternate with other work); the WORKERS largest arrays of up to MAX_BYTES given are kept,
    so that images of several sizes in turn (a dataset) find one that fits: keeping the first
    ones given, a small image's, made every larger image's load fault in its arrays again
    (500-2,300 page faults and 1.4-2.2 x the load time, graphics of 0.7-0.9 M pixels and photos
    at K = 256 loaded in turn with smaller images; benchmarks/README.md, dataset_loads.py)."""

    MAX_BYTES = 1 << 22
    MIN_BYTES = 1 << 16  # below, a new array comes from the heap: cheaper than the lock

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, shape: tuple[int, int], dtype: np.dtype) -> np.ndarray:
        size = shape[0] * shape[1] * np.dtype(dtype).itemsize
        if size < self.MIN_BYTES:
            return np.empty(shape, dtype=dtype)
        with self._lock:
            fits = [number for number, buffer in enumerate(self._free) if buffer.size >= size]
            if fits:
                buffer = self._free.pop(min(fits, key=lambda number: self._free[number].size))
                return buffer[:size].view(dtype).reshape(shape)
        return np.empty(shape, dtype=dtype)

    def give(self, *arrays: np.ndarray) -> None:
        kept = []
        for array in arrays:
            buffer = array
            while isinstance(buffer.base, np.ndarray):  # back to the whole buffer it was cut from
                buffer = buffer.base
            if self.MIN_BYTES <= buffer.nbytes <= self.MAX_BYTES and buffer.flags.c_contiguous:
                kept.append(buffer.reshape(-1).view(np.uint8))
        if kept:
            with self._lock:
                self._free = sorted(self._free + kept, key=lambda buffer: buffer.size)[-WORKERS:]


_SPARE_ROWS = _Spare()


def rows_array(strips: list[Strip], header: Header, table: np.ndarray | None = None) -> np.ndarray:
    """An array for decode_rows to decode these strips into."""
    return np.empty(_rows_shape(strips, header), dtype=index_dtype(header.k) if table is None else table.dtype)


def _rows_shape(strips: list[Strip], header: Header) -> tuple[int, int]:
    return sum(strip[3] for strip in strips), header.width


class IndexStreamDecoder:
    """Decodes the bytes that follow the extension area, fed in chunks of any size, in memory
    bounded by a piece (BLOCK_PIXELS) whatever the strips' sizes.

    `feed` yields a Piece for every run of pixels it completes, so a caller can show a
    partial image; `done` turns True once the file_crc has been checked. Given `table_for`,
    pieces hold table_for(codebook)[index] instead of indices (see StripDecoder), and a piece
    is valid only until the next one is asked for: its memory is used again (Pillow's decoder
    copies each piece into the image at once).
    """

    def __init__(self, header: Header, prefix_crc: int, table_for: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        self.header = header
        self.codebook: np.ndarray | None = None
        self._palette: Palette | None = None  # near coded strips' tables, made if one comes
        self._table_for = table_for
        self._values: np.ndarray | None = None  # table_for(codebook), once it has been read
        self._piece_scratch: np.ndarray | None = None  # where strips decoded piece by piece put each piece
        self.done = False
        self._crc = prefix_crc
        self._pending = bytearray()
        self._at = 0  # bytes of _pending already used
        self._table: StripTable | None = None
        self._next_strip = 0
        self._strip: StripDecoder | None = None  # a strip too big for one piece, decoded as it comes
        self._strip_crc = 0
        self._pixels_done = 0

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[Piece]:
        """Take the next bytes of the file; yield the pieces they complete."""
        if self.done:
            return
        del self._pending[: self._at]
        self._at = 0
        self._pending += data
        if self.codebook is None and not self._take_codebook():
            return
        if self.header.index_coding == IndexCoding.STRIPS:
            yield from self._take_strips()
        else:
            yield from self._take_uncoded()
        if self._pixels_done == self.header.width * self.header.height:
            self._take_trailer()

    def _available(self) -> int:
        return len(self._pending) - self._at

    def _consume(self, length: int) -> bytes:
        """The next `length` pending bytes, added to the running CRC."""
        taken = bytes(self._pending[self._at : self._at + length])
        self._at += length
        self._crc = crc32(taken, self._crc)
        return taken

    def _take_codebook(self) -> bool:
        length = self.header.codebook_length
        if self._available() < length:
            return False
        self.codebook = read_codebook(self._consume(length), self.header)
        self._palette = Palette(self.codebook)
        if self._table_for is not None:
            self._values = self._table_for(self.codebook)
        return True

    def _take_uncoded(self) -> Iterator[Piece]:
        header = self.header
        pixels = header.width * header.height
        if self._strip is None and pixels <= BLOCK_PIXELS and self._available() >= header.index_stream_length:  # all in hand
            data = self._consume(header.index_stream_length)
            found = decode_whole(data, pixels, 0, header.width, header.k, header.bits_per_index, "KMQ index stream", self._values, method=StripMethod.RAW)
            self._pixels_done = pixels
            yield 0, 0, found.reshape(header.height, header.width)
            return
        if self._strip is None:
            self._strip = StripDecoder(
                pixels, 0, header.width, header.k, header.bits_per_index, header.index_stream_length, "KMQ index stream", method=StripMethod.RAW, table=self._values, scratch=self._scratch()
            )
        yield from self._feed_strip()

    def _feed_strip(self) -> Iterator[Piece]:
        """Hand pending bytes to the strip being decoded piece by piece; yield its pieces."""
        strip = self._strip
        assert strip is not None
        with memoryview(self._pending) as view:
            part = view[self._at :]
            used = strip.feed(part)
            self._crc = crc32(part[:used], self._crc)
            self._strip_crc = crc32(part[:used], self._strip_crc)
            del part
        self._at += used
        for first, found in strip.pieces():
            self._pixels_done = first + found.size
            yield place(first, found, self.header.width)

    def _take_strips(self) -> Iterator[Piece]:
        header = self.header
        if self._table is None and not self._take_table():
            return
        table = self._table
        assert table is not None
        while self._next_strip < len(table.lengths):
            if self._strip is not None:
                yield from self._feed_strip()
                if not self._strip.done:
                    return
                check_strip_crc(self._strip_crc, int(table.crcs[self._next_strip]), self._next_strip)
                self._strip = None
                self._next_strip += 1
                continue
            jobs = self._ready_jobs(table)
            if jobs:
                outs = [self._job_rows(job) for job in jobs]
                tables_first(jobs, self._palette)
                for rows in run_jobs(decode_rows, [(job, header, out, self._values, self._palette) for job, out in zip(jobs, outs)]):
                    first = jobs.pop(0)[0][2]
                    self._pixels_done = (first + len(rows)) * header.width
                    yield first, 0, rows
                if self._values is not None:  # the caller is done with them: see table_for
                    _SPARE_ROWS.give(*outs)
                continue
            number = self._next_strip
            top = number * table.strip_height
            rows = min(table.strip_height, header.height - top)
            if rows * header.width <= BLOCK_PIXELS:
                return  # a small strip is decoded whole, once all of it has arrived
            self._strip = StripDecoder(
                rows * header.width, top * header.width, header.width, header.k, header.bits_per_index, int(table.lengths[number]), f"KMQ strip {number}", table=self._values, scratch=self._scratch(),
                palette=self._palette,
            )
            self._strip_crc = 0

    def _scratch(self) -> np.ndarray | None:
        """Where a strip decoded piece by piece puts each piece, one array for the whole
        stream, kept from image to image as the batches' rows are (with table_for only)."""
        if self._values is not None and self._piece_scratch is None:
            self._piece_scratch = _SPARE_ROWS.take((1, BLOCK_PIXELS), self._values.dtype).reshape(-1)
        return self._piece_scratch

    def _job_rows(self, job: list[Strip]) -> np.ndarray:
        if self._values is None:
            return rows_array(job, self.header)
        return _SPARE_ROWS.take(_rows_shape(job, self.header), self._values.dtype)

    def _take_table(self) -> bool:
        header = self.header
        if self._available() < STRIP_HEAD_SIZE:
            return False
        head = bytes(self._pending[self._at : self._at + STRIP_HEAD_SIZE])
        strip_height = parse_strip_height(head, header.height, header.index_stream_length)
        size = table_size(header.height, strip_height)
        if self._available() < size:
            return False
        self._table = parse_table(self._consume(size), header.height, header.width, header.bits_per_index, header.index_stream_length)
        return True

    def _ready_jobs(self, table: StripTable) -> list[list[Strip]]:
        """Whole small strips that have arrived, in up to WORKERS jobs of about JOB_PIXELS
        pixels each: many tiny strips cost one job, not one each."""
        header = self.header
        jobs: list[list[Strip]] = []
        job: list[Strip] = []
        job_pixels = 0
        number = self._next_strip
        while number < len(table.lengths):
            top = number * table.strip_height
            rows = min(table.strip_height, header.height - top)
            pixels, length = rows * header.width, int(table.lengths[number])
            if pixels > BLOCK_PIXELS or length > self._available():
                break
            pixels *= job_weight(self._pending[self._at]) if length else 1
            if job and job_pixels + pixels > JOB_PIXELS:
                jobs.append(job)
                job, job_pixels = [], 0
                if len(jobs) == WORKERS:
                    break
            job.append((number, self._consume(length), top, rows, int(table.crcs[number])))
            job_pixels += pixels
            number += 1
        if job:
            jobs.append(job)
        self._next_strip = number
        return jobs

    def _take_trailer(self) -> None:
        if self._available() < CRC_SIZE:
            return
        stored = unpack_crc(bytes(self._pending[self._at : self._at + CRC_SIZE]))
        if stored != self._crc:
            raise KmqError(f"KMQ file checksum mismatch (stored {stored:#010x}, computed {self._crc:#010x}): the data is corrupt")
        if self._piece_scratch is not None:  # every piece is out
            _SPARE_ROWS.give(self._piece_scratch)
            self._piece_scratch = None
        self._pending.clear()
        self._at = 0
        self.done = True


def read_codebook(section: bytes, header: Header) -> np.ndarray:
    """The (k, channels) entries from the codebook section's bytes, coded or raw."""
    if header.codebook_stream_length:
        return decode_codebook(section, header.k, header.channels)
    return np.frombuffer(section, dtype=np.uint8).reshape(header.k, header.channels)


def read_prefix(data: bytes) -> tuple[Header, list[tuple[bytes, bytes]], int]:
    """Parse header and extension area from the start of a file: (header, chunks, crc so far)."""
    header = parse_header(data[:HEADER_SIZE])
    extension = data[HEADER_SIZE : header.codebook_offset]
    if len(extension) < header.extension_length:
        raise KmqError(f"truncated KMQ file: extension area needs {header.extension_length} bytes, {len(extension)} present")
    chunks = parse_extensions(extension, KNOWN_CHUNKS)
    return header, chunks, crc32(data[: header.codebook_offset])


# Pillow's decompression-bomb error threshold (2 x MAX_IMAGE_PIXELS), the numpy API's default.
DEFAULT_MAX_PIXELS = 2 * 89_478_485


def decode_bytes(data: bytes, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tuple[Header, Quantized]:
    """Decode a whole KMQ file held in memory: its header and (indices (H, W), codebook).

    A header declaring more than max_pixels pixels (None: no limit) is refused before
    anything is allocated, as Pillow refuses decompression bombs.
    """
    header, _, crc = read_prefix(data)
    pixels = header.width * header.height
    if max_pixels is not None and pixels > max_pixels:
        raise KmqError(f"KMQ image of {pixels:,} pixels exceeds max_pixels={max_pixels:,} (a possible decompression bomb)")
    if header.file_length > len(data):
        raise KmqError(f"truncated KMQ file: {len(data)} bytes of {header.file_length}")
    decoder = IndexStreamDecoder(header, crc)
    indices = np.empty((header.height, header.width), dtype=index_dtype(header.k))
    view = memoryview(data)[header.codebook_offset : header.file_length]
    for start in range(0, len(view), READ_SIZE):  # fed in blocks: the decoder copies only those
        for row, column, found in decoder.feed(view[start : start + READ_SIZE]):
            indices[row : row + len(found), column : column + found.shape[1]] = found
    if not decoder.done:
        raise KmqError(f"truncated KMQ file: {len(data)} bytes of {header.file_length}")
    assert decoder.codebook is not None
    return header, Quantized(indices, decoder.codebook)
