"""Strip coding of the index stream (index_coding 1, spec section 7.2). Knows nothing of Pillow.

The image is cut into strips of rows, each coded on its own so strips can be coded and
decoded in parallel (zlib and zstd release the GIL), streamed in bounded memory, and a
corrupt one located. A coded strip splits the indices into run flags (is this index the
same as the previous one?) and the literals (the indices that are not): flags compress to
almost nothing and the literals, free of repeats, compress better than the raw stream.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
import zstandard

from .bitpack import pack_indices, padding_is_zero, unpack_indices
from .format import KmqError, StripMethod, crc32, field_width, raw_stream_length

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_ENTRY = struct.Struct(">QI")
STRIP_HEAD_SIZE = 4  # strip_height
STRIP_ENTRY_SIZE = 12  # strip_length u64, strip_crc u32
RUNS_HEAD_SIZE = 1 + 8  # strip_method, flags_length
# Pixels per strip a writer aims at: large enough to compress well, small enough to stream.
STRIP_PIXELS = 1 << 18
ZLIB_LEVEL = 9
ZSTD_LEVEL = 15  # 17 and 19 save < 0.5 % more and take 1.3x and 2x the time
WORKERS = min(2, os.cpu_count() or 1)


class StripTable(NamedTuple):
    """strip_height, then the byte length and CRC-32 of every strip, as the index stream starts."""

    strip_height: int
    lengths: tuple[int, ...]
    crcs: tuple[int, ...]

    @property
    def size(self) -> int:
        return STRIP_HEAD_SIZE + STRIP_ENTRY_SIZE * len(self.lengths)


def strip_height_for(width: int, height: int) -> int:
    """The writer's strip height: strips of at most about STRIP_PIXELS pixels, all the same
    height, so that parallel workers get equal shares."""
    count = max(1, -(-width * height // STRIP_PIXELS))
    return -(-height // min(count, height))


def strip_count(height: int, strip_height: int) -> int:
    return -(-height // strip_height)


def table_size(height: int, strip_height: int) -> int:
    return STRIP_HEAD_SIZE + STRIP_ENTRY_SIZE * strip_count(height, strip_height)


def parse_strip_height(data: bytes, height: int, stream_length: int) -> int:
    """strip_height from the first 4 bytes of the index stream, checked against the image and
    against the stream's length, which must at least hold the table it implies."""
    (strip_height,) = _U32.unpack_from(data)
    if not 1 <= strip_height <= height:
        raise KmqError(f"KMQ strip_height must be 1 to height={height}, not {strip_height}")
    if table_size(height, strip_height) > stream_length:
        raise KmqError(f"KMQ strip table of {strip_count(height, strip_height)} strips does not fit index_stream_length {stream_length}")
    return strip_height


def parse_table(data: bytes, height: int, stream_length: int) -> StripTable:
    """The strip table; the strip lengths must add up to the index stream's length."""
    strip_height = parse_strip_height(data, height, stream_length)
    count = strip_count(height, strip_height)
    entries = [_ENTRY.unpack_from(data, STRIP_HEAD_SIZE + STRIP_ENTRY_SIZE * number) for number in range(count)]
    lengths = tuple(length for length, _ in entries)
    table = StripTable(strip_height, lengths, tuple(crc for _, crc in entries))
    if table.size + sum(lengths) != stream_length:
        raise KmqError(
            f"KMQ strip table: {count} strips of {sum(lengths)} bytes plus a {table.size}-byte table "
            f"do not make index_stream_length {stream_length}"
        )
    if 0 in lengths:
        raise KmqError(f"KMQ strip {lengths.index(0)} is empty: every strip holds at least its strip_method byte")
    return table


def pack_table(table: StripTable) -> bytes:
    entries = b"".join(_ENTRY.pack(length, crc) for length, crc in zip(table.lengths, table.crcs))
    return _U32.pack(table.strip_height) + entries


def check_strip_crc(data: bytes, table: StripTable, number: int) -> None:
    """Each strip's own CRC-32 locates corruption to the strip before any decoding."""
    computed = crc32(data)
    if computed != table.crcs[number]:
        raise KmqError(f"KMQ strip {number}: checksum mismatch (stored {table.crcs[number]:#010x}, computed {computed:#010x}): the strip is corrupt")


# --- the run/literal transform -------------------------------------------------------------


def _run_flags(indices: np.ndarray) -> np.ndarray:
    """flag[i] = indices[i] == indices[i - 1] in raster order; flag[0] = False."""
    flat = indices.ravel()
    flags = np.zeros(flat.size, dtype=bool)
    np.equal(flat[1:], flat[:-1], out=flags[1:])
    return flags


def _unflag(flags: np.ndarray, literals: np.ndarray) -> np.ndarray:
    """Inverse of the transform: each index is the most recent literal (a cumulative count)."""
    rank = np.cumsum(~flags, dtype=np.int32 if flags.size < 2**31 else np.int64)
    np.subtract(rank, 1, out=rank)
    return literals[rank]


# --- codecs -------------------------------------------------------------------------------


def _zlib_compress(data: bytes) -> bytes:
    return zlib.compress(data, ZLIB_LEVEL)


def _zstd_compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=False).compress(data)


def _zlib_decompress(data: bytes, expected: int, what: str) -> bytes:
    """Inflate to exactly `expected` bytes: more, less, or trailing bytes are an error."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, expected)
        ended = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    except zlib.error as error:
        raise KmqError(f"{what}: corrupt zlib stream ({error})") from None
    if len(out) != expected or not ended:
        raise KmqError(f"{what}: zlib stream does not hold exactly {expected} bytes")
    return out


def _zstd_decompress(data: bytes, expected: int, what: str) -> bytes:
    """One zstd frame declaring exactly `expected` bytes of content, and nothing after it:
    nothing bigger is allocated."""
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError as error:
        raise KmqError(f"{what}: corrupt zstd frame header ({error})") from None
    if declared != expected:
        raise KmqError(f"{what}: zstd frame declares {declared} bytes, {expected} expected")
    try:
        out = zstandard.ZstdDecompressor().decompress(data, max_output_size=expected, allow_extra_data=False)
    except zstandard.ZstdError as error:
        raise KmqError(f"{what}: corrupt zstd frame ({error})") from None
    if len(out) != expected:
        raise KmqError(f"{what}: zstd frame holds {len(out)} bytes, {expected} expected")
    return out


_COMPRESS: dict[StripMethod, Callable[[bytes], bytes]] = {
    StripMethod.RUNS_ZLIB: _zlib_compress,
    StripMethod.RUNS_ZSTD: _zstd_compress,
}
_DECOMPRESS: dict[StripMethod, Callable[[bytes, int, str], bytes]] = {
    StripMethod.RUNS_ZLIB: _zlib_decompress,
    StripMethod.RUNS_ZSTD: _zstd_decompress,
}


# --- one strip ----------------------------------------------------------------------------


def encode_strip(indices: np.ndarray, bits_per_index: int, method: StripMethod) -> bytes:
    """One strip: strip_method byte and payload; RAW when coding would not make it smaller."""
    raw = bytes([StripMethod.RAW]) + pack_indices(indices, bits_per_index)
    if method == StripMethod.RAW:
        return raw
    flags = _run_flags(indices)
    compress = _COMPRESS[method]
    coded_flags = compress(np.packbits(flags).tobytes())
    coded_literals = compress(pack_indices(indices.ravel()[~flags], field_width(bits_per_index)))
    coded = bytes([method]) + _U64.pack(len(coded_flags)) + coded_flags + coded_literals
    return coded if len(coded) < len(raw) else raw


def decode_strip(data: bytes, rows: int, width: int, k: int, bits_per_index: int, number: int) -> np.ndarray:
    """The (rows, width) indices of one strip; KmqError naming the strip for anything malformed."""
    what = f"KMQ strip {number}"
    method = data[0]
    if method not in StripMethod._value2member_map_:
        raise KmqError(f"{what}: unknown strip_method {method}")
    count = rows * width
    if method == StripMethod.RAW:
        indices = _decode_raw(data[1:], count, bits_per_index, what)
        if k < 1 << bits_per_index:  # else every value the bits can hold is < k
            check_range(indices, k, f"{what}: ", lambda found: _strip_place(found, width))
    else:
        flags, literals = _decode_runs(data, StripMethod(method), count, bits_per_index, what)
        # Literals are whole bytes, wider than bits_per_index: each must be checked.
        check_range(literals, k, f"{what}: ", lambda found: _strip_place(int(np.flatnonzero(~flags)[found]), width))
        indices = _unflag(flags, literals)
    return indices.reshape(rows, width)


def check_range(values: np.ndarray, k: int, prefix: str, place: Callable[[int], str]) -> None:
    """KmqError naming the first value >= k and where it is (place(i) is only called on error)."""
    if not values.size or int(values.max()) < k:
        return
    found = int(np.argmax(values >= k))
    raise KmqError(f"{prefix}index {int(values[found])} at {place(found)} is out of range for k={k}")


def _strip_place(pixel: int, width: int) -> str:
    row, column = divmod(pixel, width)
    return f"row {row} of the strip, column {column}"


def _decode_raw(payload: bytes, count: int, bits_per_index: int, what: str) -> np.ndarray:
    expected = raw_stream_length(count, 1, bits_per_index)
    if len(payload) != expected:
        raise KmqError(f"{what}: RAW strip holds {len(payload)} bytes, {expected} expected")
    if not padding_is_zero(payload, count * bits_per_index):
        raise KmqError(f"{what}: padding bits are not zero")
    return unpack_indices(payload, bits_per_index, count)


def _decode_runs(data: bytes, method: StripMethod, count: int, bits_per_index: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """The run flags (count bools) and the literals of a runs_zlib / runs_zstd strip."""
    if len(data) < RUNS_HEAD_SIZE:
        raise KmqError(f"{what}: cut short before flags_length")
    (flags_length,) = _U64.unpack_from(data, 1)
    if flags_length > len(data) - RUNS_HEAD_SIZE:
        raise KmqError(f"{what}: flags_length {flags_length} runs past the strip's end")
    decompress = _DECOMPRESS[method]
    flag_bytes = decompress(data[RUNS_HEAD_SIZE : RUNS_HEAD_SIZE + flags_length], (count + 7) // 8, f"{what} flags")
    if not padding_is_zero(flag_bytes, count):
        raise KmqError(f"{what} flags: padding bits are not zero")
    flags = np.unpackbits(np.frombuffer(flag_bytes, dtype=np.uint8), count=count).view(bool)
    if flags[0]:
        raise KmqError(f"{what} flags: the first flag of a strip must be 0")
    literal_count = count - int(np.count_nonzero(flags))
    width = field_width(bits_per_index)
    literal_bytes = decompress(data[RUNS_HEAD_SIZE + flags_length :], raw_stream_length(literal_count, 1, width), f"{what} literals")
    return flags, unpack_indices(literal_bytes, width, literal_count)


# --- all strips ---------------------------------------------------------------------------


def parallel_map(function: Callable[..., bytes | np.ndarray], jobs: Sequence[tuple[object, ...]]) -> list:
    """function(*job) for each job, on up to two threads when there is more than one job."""
    if len(jobs) < 2 or WORKERS < 2:
        return [function(*job) for job in jobs]
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(lambda job: function(*job), jobs))


def encode_strips(indices: np.ndarray, bits_per_index: int, method: StripMethod) -> Iterable[bytes]:
    """The index stream of index_coding 1: strip table, then every strip."""
    height, width = indices.shape
    strip_height = strip_height_for(width, height)
    jobs = [(indices[top : top + strip_height], bits_per_index, method) for top in range(0, height, strip_height)]
    strips = parallel_map(encode_strip, jobs)
    table = StripTable(strip_height, tuple(len(strip) for strip in strips), tuple(crc32(strip) for strip in strips))
    return [pack_table(table), *strips]
