"""Decoding an index stream in bounded memory, whatever its sizes and however it was cut.

A strip (or the whole uncoded stream of index_coding 0) is decoded in pieces of at most
BLOCK_PIXELS pixels: whole rows, or part of one row when a row is wider than that. Its two
compressed streams (run flags, literals) are inflated as the pieces need them, a bounded
amount per call, so a strip covering a gigapixel image costs what one piece costs. Bytes
come either pushed in order (Pillow's decoder, ImageFile.Parser) or pulled from a seekable
file (row ranges). Knows nothing of Pillow.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import zstandard

from .bitpack import padding_is_zero, unpack_indices, unpack_rows
from .expand import expand_runs, identity, lookup, lookup_rows, zero_flags
from .format import (
    MED_MAX_WIDTH,
    NEAR_METHODS,
    ROWS_METHODS,
    KmqError,
    StripMethod,
    field_width,
    index_dtype,
    packing_width,
    raw_stream_length,
    row_bytes,
)
from .jobs import kept_by_thread
from .near import MAX_K, NEAR_MAX_PIXELS, NearStrip, Palette
from .predict import Unpredictor

BLOCK_PIXELS = 1 << 20  # pixels per piece: the decoder's temporaries are a few bytes per pixel of it
# Pixels of small strips batched into one job of the shared pool: enough that tiny strips
# cost little each, few enough that a photo's strips (2**18 pixels from our writer) spread
# over both workers.
JOB_PIXELS = 1 << 19
NEAR_JOB_WEIGHT = 4
READ_SIZE = 1 << 20  # compressed bytes read from a file, or handed to a decompressor, at a time
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
MAX_ZSTD_WINDOW = 1 << 23  # 8 MiB: what RFC 8878 asks every decoder to support
# libzstd never writes past a frame's Frame_Content_Size, so a frame declaring at most this
# much is inflated in one call; a bigger one gets 512 input bytes per call, which yield at
# most 16 MiB (an RLE block of at most 128 KiB costs at least 4 bytes).
_ONE_CALL_OUTPUT = 1 << 24
_SLICE = 512
RUNS_HEAD_SIZE = 1 + 8  # strip_method, flags_length
_ONE_BYTE_HEADS = (StripMethod.RAW, *ROWS_METHODS, *NEAR_METHODS)  # no flags_length follows these
_U64 = struct.Struct(">Q")


def job_weight(method: int) -> int:
    """How many pixels of a job a strip's pixel counts for: a near_rans or near_flat pixel
    takes several times a run's decoding time, so a photo's near strips go to both workers."""
    return NEAR_JOB_WEIGHT if method in NEAR_METHODS else 1


def stream_bound(size: int) -> int:
    """The most bytes a zlib stream or zstd frame holding `size` bytes may take (spec 9.1.11):
    above what zlib's deflateBound and zstd's ZSTD_compressBound allow for any input."""
    return size + (size >> 7) + 1024


def literal_width(bits_per_index: int) -> int:
    """Bytes per literal of a coded strip."""
    return field_width(bits_per_index) // 8


def max_strip_length(pixels: int, bits_per_index: int) -> int:
    """The longest a strip of this many pixels may be: raw, or runs within stream_bound (a
    rows strip, at most 1 + stream_bound(pixels * literal width), is within that too)."""
    raw = 1 + raw_stream_length(pixels, 1, bits_per_index)
    runs = RUNS_HEAD_SIZE + stream_bound((pixels + 7) // 8) + stream_bound(pixels * literal_width(bits_per_index))
    return max(raw, runs)


def piece_length(pixel: int, width: int, end: int) -> int:
    """Pixels of the piece starting at `pixel` (counted from the image's first pixel): whole
    rows up to BLOCK_PIXELS, or up to BLOCK_PIXELS of one row; never past `end`."""
    if width <= BLOCK_PIXELS:
        return min(end - pixel, BLOCK_PIXELS // width * width)
    return min(end - pixel, BLOCK_PIXELS, width - pixel % width)


# --- one compressed stream ----------------------------------------------------------------


class Inflater:
    """One zlib stream or zstd frame inflated to exactly `expected` bytes, a bounded amount
    per call. Compressed input comes from supply() (b"" when none is there now); final()
    says no more will ever come. read() returns None when input ran out before `size` bytes
    (the bytes so far are kept), finish() False when the stream's end has not arrived yet."""

    def __init__(self, method: StripMethod, expected: int, what: str, supply: Callable[[], bytes], final: Callable[[], bool]) -> None:
        self._zstd = method == StripMethod.RUNS_ZSTD or method in ROWS_METHODS
        self.expected, self.what = expected, what
        self._supply, self._final = supply, final
        self._input = memoryview(b"")
        self._out = b""  # inflated bytes not read yet, from self._at on
        self._at = 0
        self._parts: list[bytes] = []  # ... then these, inflated since and not joined yet
        self._parts_size = 0
        self._produced = 0
        self._ended = False
        self._head = bytearray()  # a zstd frame header, until it is whole and checked
        self._head_checked = not self._zstd
        self._engine: object = None if self._zstd else zlib.decompressobj()
        self._fed = False  # input has gone into the streaming engine: no one-call decoding then

    def read(self, size: int) -> memoryview | None:
        """The next `size` inflated bytes (a view of an immutable bytes object, not a copy)."""
        while len(self._out) - self._at + self._parts_size < size:
            if self._ended:
                raise KmqError(f"{self.what}: stream holds {self._produced} bytes, {self.expected} expected")
            if not self._refill():
                return None  # what was inflated stays in self._parts for the next call
            piece = self._step(size - (len(self._out) - self._at + self._parts_size))
            self._parts.append(piece)
            self._parts_size += len(piece)
        if self._parts:  # joined once a read is complete: a streamed frame comes in many pieces
            rest = [self._out[self._at :]] if self._at < len(self._out) else []
            pieces = rest + self._parts
            self._out = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            self._at, self._parts, self._parts_size = 0, [], 0
        taken = memoryview(self._out)[self._at : self._at + size]
        self._at += size
        return taken

    def finish(self) -> bool:
        """True once the stream has ended right at its input's end, having produced exactly
        `expected` bytes, all of them read; KmqError for anything else."""
        while not self._ended:
            if not self._refill():
                return False
            piece = self._step(1)  # bytes here were never read: refused below
            self._parts.append(piece)
            self._parts_size += len(piece)
        if self._at < len(self._out) or self._parts_size or self._produced != self.expected:
            raise KmqError(f"{self.what}: stream holds {self._produced} bytes, {self.expected} expected")
        if self._input or self._supply():
            raise KmqError(f"{self.what}: bytes follow the end of the stream")
        return self._final()  # else bytes may still arrive, and must then be refused

    def _refill(self) -> bool:
        if not self._input:
            data = self._supply()
            if not data:
                if self._final():
                    raise KmqError(f"{self.what}: stream is cut short ({self._produced} of {self.expected} bytes)")
                return False
            self._input = memoryview(data)
        return True

    def _step(self, wanted: int) -> bytes:
        if self._zstd:
            piece = self._zstd_step()
        else:
            piece = self._zlib_step(wanted)
        self._produced += len(piece)
        if self._produced > self.expected:
            raise KmqError(f"{self.what}: stream holds more than {self.expected} bytes")
        return piece

    def _zlib_step(self, wanted: int) -> bytes:
        engine: Any = self._engine
        try:
            piece = engine.decompress(self._input, max(wanted, 1))
        except zlib.error as error:
            raise KmqError(f"{self.what}: corrupt zlib stream ({error})") from None
        self._input = memoryview(engine.unconsumed_tail)
        if engine.eof:
            self._ended = True
            if engine.unused_data:
                raise KmqError(f"{self.what}: bytes follow the end of the zlib stream")
        return piece

    def _zstd_step(self) -> bytes:
        if not self._head_checked:
            self._take_zstd_header()
            return b""
        if self.expected <= _ONE_CALL_OUTPUT and not self._fed and self._final():  # the whole frame is in hand
            return self._zstd_whole()
        size = len(self._input) if self.expected <= _ONE_CALL_OUTPUT else _SLICE
        data, self._input = self._input[:size], self._input[size:]
        self._fed = True
        if self._engine is None:  # made only now: a context costs as much as inflating a small frame
            self._engine = _decompressor().decompressobj()
        engine: Any = self._engine
        try:
            piece = engine.decompress(data)
        except zstandard.ZstdError as error:
            raise KmqError(f"{self.what}: corrupt zstd frame ({error})") from None
        if engine.eof:
            self._ended = True
            if engine.unused_data or self._input:
                raise KmqError(f"{self.what}: bytes follow the end of the zstd frame")
        return piece

    def _zstd_whole(self) -> bytes:
        """The frame is all in hand and small: one call of the one-shot decoder, which also
        refuses anything after the frame."""
        data, self._input = bytes(self._input), memoryview(b"")
        piece = inflate_zstd_whole(data, self.expected, self.what)
        self._ended = True
        return piece

    def _take_zstd_header(self) -> None:
        """Move input into the frame header until it is whole, then check it (spec 9.1.11)."""
        needed = zstd_header_length(self._head)
        take = needed - len(self._head)
        self._head += self._input[:take]
        self._input = self._input[take:]
        if len(self._head) < zstd_header_length(self._head):
            return
        check_zstd_header(bytes(self._head), self.expected, self.what)
        self._head_checked = True
        self._input = memoryview(bytes(self._head) + bytes(self._input))
        self._head.clear()


def _decompressor() -> zstandard.ZstdDecompressor:
    return zstandard.ZstdDecompressor(max_window_size=MAX_ZSTD_WINDOW)


def _whole_frame_decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor for whole frames: made afresh, a context took ten times as
    long as inflating a thumbnail's frame. One-call decompression leaves it ready for the next."""
    return kept_by_thread("zstd decompressor", _decompressor)


def inflate_zstd_whole(data: bytes, expected: int, what: str) -> bytes:
    """A frame whose header check_zstd_header passed, inflated in one call to at most
    `expected` bytes; KmqError if anything follows it or it is cut short or corrupt."""
    try:
        return _whole_frame_decompressor().decompress(data, max_output_size=expected, allow_extra_data=False)
    except zstandard.ZstdError as error:
        message = str(error)
        if "unused data" in message:
            raise KmqError(f"{what}: bytes follow the end of the zstd frame") from None
        if "full frame" in message:
            raise KmqError(f"{what}: stream is cut short") from None
        raise KmqError(f"{what}: corrupt zstd frame ({error})") from None


def decode_codebook(data: bytes, k: int, channels: int) -> np.ndarray:
    """A coded codebook section (spec 6.1) -> (k, channels) uint8 entries: one zstd frame of
    k x channels bytes, each channel's differences from the entry before (mod 256), channel
    by channel."""
    what = "KMQ codebook stream"
    expected = k * channels
    head = zstd_header_length(data)
    if len(data) < head:
        raise KmqError(f"{what}: stream is cut short")
    check_zstd_header(data[:head], expected, what)
    deltas = inflate_zstd_whole(data, expected, what)
    if len(deltas) != expected:
        raise KmqError(f"{what}: stream is cut short")
    return np.cumsum(np.frombuffer(deltas, dtype=np.uint8).reshape(channels, k), axis=1, dtype=np.uint8).T.copy()


def zstd_header_length(prefix: bytes | bytearray) -> int:
    """Bytes of the zstd frame header that starts with prefix (5 until the descriptor is known)."""
    if len(prefix) < 5:
        return 5
    descriptor = prefix[4]
    fcs_flag, single_segment, dictionary_flag = descriptor >> 6, descriptor >> 5 & 1, descriptor & 3
    fcs_size = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    return 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dictionary_flag] + fcs_size


def check_zstd_header(head: bytes, expected: int, what: str) -> None:
    """A single standard frame (no skippable frame), without a dictionary, declaring exactly
    `expected` bytes of content, with a window of at most 8 MiB."""
    if head[:4] != ZSTD_MAGIC:
        raise KmqError(f"{what}: not a zstd frame (magic {head[:4].hex()})")
    descriptor = head[4]
    if descriptor & 3:
        raise KmqError(f"{what}: zstd frame needs a dictionary")
    if descriptor >> 6 == 0 and not descriptor >> 5 & 1:
        raise KmqError(f"{what}: zstd frame does not declare its Frame_Content_Size")
    try:
        declared = zstandard.frame_content_size(head)
    except zstandard.ZstdError as error:
        raise KmqError(f"{what}: corrupt zstd frame header ({error})") from None
    if declared != expected:
        raise KmqError(f"{what}: zstd frame declares {declared} bytes, {expected} expected")
    if descriptor >> 5 & 1:
        window = declared  # a single-segment frame's window is its content
    else:
        exponent, mantissa = head[5] >> 3, head[5] & 7
        base = 1 << (10 + exponent)
        window = base + base // 8 * mantissa
    if window > MAX_ZSTD_WINDOW:
        raise KmqError(f"{what}: zstd frame's window of {window:,} bytes is over {MAX_ZSTD_WINDOW:,}")


# --- the bytes of one strip ---------------------------------------------------------------


class Segment:
    """A run of a strip's bytes, handed out in order: pushed as they arrive, or pulled
    from a file (read_at(offset, size)). Pushed bytes are kept only until handed out, unless
    keep=True (the run flags, read twice)."""

    def __init__(self, length: int, read_at: Callable[[int, int], bytes] | None = None, offset: int = 0, keep: bool = False) -> None:
        self.length = length
        self._read_at, self._offset = read_at, offset
        self._keep = keep
        self._buffer = bytearray()
        self._received = length if read_at is not None else 0
        self._position = 0  # bytes handed out

    @property
    def complete(self) -> bool:
        """Every byte has arrived."""
        return self._received == self.length

    @property
    def exhausted(self) -> bool:
        """Every byte has arrived and been handed out."""
        return self.complete and self._position == self.length

    def push(self, data: memoryview) -> int:
        taken = min(len(data), self.length - self._received)
        self._buffer += data[:taken]
        self._received += taken
        return taken

    def available(self) -> int:
        return self._received - self._position

    def take(self, size: int = READ_SIZE) -> bytes:
        """Up to size of the next bytes (b"" when none are there now)."""
        size = min(size, self.available())
        if not size:
            return b""
        if self._read_at is not None:
            data = self._read_at(self._offset + self._position, size)
        elif self._keep:
            data = bytes(self._buffer[self._position : self._position + size])
        else:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        self._position += size
        return data

    def rewind(self) -> None:
        """Hand the bytes out again from the start (kept or pulled segments)."""
        assert self._keep or self._read_at is not None
        self._position = 0


# --- one strip ----------------------------------------------------------------------------


class StripDecoder:
    """Decodes one strip of `pixels` indices, piece by piece (piece_length), from bytes
    pushed by feed() or pulled through read_at. `first_pixel` places the strip in the image
    (pieces follow the image's rows). A given method (RAW) means the bytes have no
    strip_method byte: the uncoded stream of index_coding 0, or part of it that starts
    `first_bit` bits into its first byte and, unless `padded`, ends before the stream does.
    With a `table` (k values or more), pieces hold table[index] instead of the indices: a
    run decodes straight to codebook entries, with no array of indices in between. With
    `out` (`pixels` values of the pieces' dtype), pieces are decoded into it and are views
    of it; else with `scratch` (a flat array of the pieces' dtype), each piece that fits is
    decoded into its start, valid until the next piece is asked for. A near_rans strip needs
    the codebook's `palette`, and is decoded once all its bytes are in hand (at most
    NEAR_MAX_PIXELS pixels, so its bytes are bounded as a piece's are)."""

    def __init__(
        self,
        pixels: int,
        first_pixel: int,
        width: int,
        k: int,
        bits_per_index: int,
        length: int,
        what: str,
        read_at: Callable[[int, int], bytes] | None = None,
        method: StripMethod | None = None,
        first_bit: int = 0,
        padded: bool = True,
        table: np.ndarray | None = None,
        out: np.ndarray | None = None,
        scratch: np.ndarray | None = None,
        palette: Palette | None = None,
    ) -> None:
        self.pixels, self.first_pixel, self.width, self.k = pixels, first_pixel, width, k
        self.bits, self.length, self.what = bits_per_index, length, what
        self._read_at = read_at
        self._head = bytearray()
        self._method = method
        self._has_method = method is None
        self._first_bit, self._padded = first_bit, padded
        self._received = 0 if read_at is None else length
        self._decoded = 0  # pixels yielded
        self._dtype = index_dtype(k)
        self._table = table
        # What runs expand through: exactly k values, so the kernel refuses any literal >= k.
        self._runs_table = (identity(self._dtype) if table is None else table)[:k]
        self._out = out
        self._out_dtype = self._dtype if table is None else table.dtype
        if out is not None and (out.dtype != self._out_dtype or out.shape != (pixels,)):
            raise ValueError(f"out must be {pixels} values of {self._out_dtype}")
        if scratch is not None and (scratch.dtype != self._out_dtype or scratch.ndim != 1):
            raise ValueError(f"scratch must be a flat array of {self._out_dtype}")
        self._scratch = scratch
        self._raw: Segment | None = None
        self._packed: Segment | None = None  # a rows strip's frame (ROWS_METHODS)
        self._packed_reader: Inflater | None = None
        self._unpredictor: Unpredictor | None = None  # a med_rows_zstd strip's
        self._palette = palette
        self._near_bytes: Segment | None = None  # a near_rans strip's payload
        self._near: NearStrip | None = None
        self._flags: Segment | None = None
        self._literals: Segment | None = None
        self._flag_reader: Inflater | None = None
        self._literal_reader: Inflater | None = None
        self._flag_bytes = b""  # inflated flags from the byte holding the next pixel's flag on
        self._all_flags: bytes | None = None  # the whole inflated flags, when small enough to keep
        self._previous = 0  # the last index of the previous piece: a run may go on across pieces
        self._literal_total = 0  # 0 flags in the whole strip
        self.done = False
        if read_at is not None:
            self._open_pulled()
        elif not self._has_method:
            self._start(None)

    # -- bytes in

    def feed(self, data: memoryview) -> int:
        """Take the strip's next bytes from data; returns how many were its."""
        taken = 0
        while taken < len(data) and self._received < self.length:
            part = data[taken : taken + self.length - self._received]
            if not self._started:
                used = self._take_head(part)
            elif self._raw is not None:
                used = self._raw.push(part)
            elif self._packed is not None:
                used = self._packed.push(part)
            elif self._near_bytes is not None:
                used = self._near_bytes.push(part)
            else:
                assert self._flags is not None and self._literals is not None
                used = self._flags.push(part) if not self._flags.complete else self._literals.push(part)
            taken += used
            self._received += used
        if self._received == self.length and not self._started:
            self._start(None)  # the strip ended inside its head: says which rule it breaks
        return taken

    @property
    def _started(self) -> bool:
        return self._raw is not None or self._packed is not None or self._near_bytes is not None or self._flags is not None

    def _take_head(self, part: memoryview) -> int:
        """strip_method, and flags_length after a runs method."""
        needed = 1 if not self._head or self._head[0] in _ONE_BYTE_HEADS else RUNS_HEAD_SIZE
        used = min(len(part), needed - len(self._head))
        self._head += part[:used]
        if self._head[0] not in _ONE_BYTE_HEADS:
            needed = RUNS_HEAD_SIZE
        if len(self._head) == needed:
            self._start(None)
        return used

    def _open_pulled(self) -> None:
        assert self._read_at is not None
        if self._has_method:
            self._head = bytearray(self._read_at(0, min(RUNS_HEAD_SIZE, self.length)))
        self._start(self._read_at)

    def _start(self, read_at: Callable[[int, int], bytes] | None) -> None:
        """The head is known: set up the raw segment, or the flags and literals segments."""
        if self._has_method:
            code = self._head[0]
            if code not in StripMethod._value2member_map_:
                raise KmqError(f"{self.what}: unknown strip_method {code}")
            self._method = StripMethod(code)
        start = 1 if self._has_method else 0
        if self._method == StripMethod.RAW:
            expected = (self._first_bit + self.pixels * self.bits + 7) // 8
            if self.length - start != expected:
                raise KmqError(f"{self.what}: raw strip holds {self.length - start} bytes, {expected} expected")
            self._raw = Segment(expected, read_at, start)
            self._raw_bit = self._first_bit
            self._raw_bytes = b""
            return
        if self._method in ROWS_METHODS:
            self._start_rows(read_at)
            return
        if self._method in NEAR_METHODS:
            self._start_near(read_at)
            return
        if len(self._head) < RUNS_HEAD_SIZE:
            raise KmqError(f"{self.what}: cut short before flags_length")
        (flags_length,) = _U64.unpack_from(self._head, 1)
        if flags_length > self.length - RUNS_HEAD_SIZE:
            raise KmqError(f"{self.what}: flags_length {flags_length} runs past the strip's end")
        flag_bytes = (self.pixels + 7) // 8
        if flags_length > stream_bound(flag_bytes):
            raise KmqError(f"{self.what}: flags_length {flags_length} is over {stream_bound(flag_bytes)}, the most {flag_bytes} bytes of flags may take")
        self._flags = Segment(flags_length, read_at, RUNS_HEAD_SIZE, keep=True)
        self._literals = Segment(self.length - RUNS_HEAD_SIZE - flags_length, read_at, RUNS_HEAD_SIZE + flags_length)

    def _start_rows(self, read_at: Callable[[int, int], bytes] | None) -> None:
        """A rows strip (ROWS_METHODS): one zstd frame of whole rows, each padded to a byte."""
        assert self.first_pixel % self.width == 0 and self.pixels % self.width == 0  # strips are whole rows
        self._packing = packing_width(self.bits, self._method)
        self._row_bytes = row_bytes(self.width, self.bits, self._method)
        if self._method == StripMethod.MED_ROWS_ZSTD:
            self._unpredictor = _unpredictor(self.width, self.k, self.bits, self.what)
        expected = self.pixels // self.width * self._row_bytes
        frame = self.length - 1
        if frame > stream_bound(expected):
            raise KmqError(f"{self.what}: rows frame of {frame} bytes is over {stream_bound(expected)}, the most {expected} bytes of rows may take")
        packed = self._packed = Segment(frame, read_at, 1)
        self._packed_reader = Inflater(self._method, expected, f"{self.what} rows", packed.take, lambda: packed.exhausted)

    def _start_near(self, read_at: Callable[[int, int], bytes] | None) -> None:
        """A near_rans or near_flat strip: k <= MAX_K, at most NEAR_MAX_PIXELS pixels, its payload held whole."""
        name = self._method.name.lower()
        if self.k > MAX_K:
            raise KmqError(f"{self.what}: {name} needs k <= {MAX_K}, not {self.k}")
        if self.pixels > NEAR_MAX_PIXELS:
            raise KmqError(f"{self.what}: a {name} strip of {self.pixels:,} pixels is over {NEAR_MAX_PIXELS:,}")
        if self._palette is None:
            raise ValueError(f"a {name} strip needs the codebook's Palette")
        self._near_bytes = Segment(self.length - 1, read_at, 1)

    def _near_piece(self, count: int) -> np.ndarray | None:
        """The next `count` indices (or their table values) in the next piece's place, once the
        whole payload has arrived. Without a table they are decoded straight into it."""
        assert self._near_bytes is not None and self._palette is not None
        if self._near is None:
            if not self._near_bytes.complete:
                return None
            payload = self._near_bytes.take(self._near_bytes.length)
            self._near = NearStrip(payload, self._palette, self.width, self.k, self.what, self._method == StripMethod.NEAR_FLAT)
        if self._table is None and (self._out is not None or self._scratch is not None):
            found = self._piece(count)
            self._near.decode(found)
            return found
        found = np.empty(count, dtype=self._dtype)
        self._near.decode(found)
        return self._placed(found)

    # -- pieces out

    def pieces(self) -> Iterator[tuple[int, np.ndarray]]:
        """(first pixel in the image, flat indices, or their table values) of every piece the
        bytes so far allow."""
        while not self.done:
            if not self._started:
                return
            if self._decoded == self.pixels:
                if not self._end():
                    return
                self.done = True
                return
            start = self.first_pixel + self._decoded
            count = piece_length(start, self.width, self.first_pixel + self.pixels)
            if self._packed is not None and count % self.width == 0:
                # Rows unpack with their padding (up to 8 values a pixel at width 1): at most
                # BLOCK_PIXELS values a piece, not pixels.
                per_row = self._row_bytes * 8 // self._packing
                count = min(count, max(1, BLOCK_PIXELS // per_row) * self.width)
            if self._raw is not None:
                count = self._raw_ready(start, count)  # rows show as soon as their bits arrive
                if not count:
                    return
            if self._raw is not None:
                found = self._placed(self._raw_piece(count))
            elif self._packed is not None:
                found = self._rows_piece(start, count)
            elif self._near_bytes is not None:
                found = self._near_piece(count)
            else:
                found = self._runs_piece(count)
            if found is None:
                return
            self._decoded += count
            yield start, found

    def _placed(self, indices: np.ndarray | None) -> np.ndarray | None:
        """These indices (already checked against k), or their table values, in the next
        piece's place."""
        if indices is None or (self._table is None and self._out is None):
            return indices
        piece = self._piece(indices.size)
        if self._table is None:
            piece[:] = indices
        else:
            lookup(self._table, indices, piece)
        return piece

    def _piece(self, count: int) -> np.ndarray:
        """Where the next `count` pixels go: their part of `out`, the scratch array, or a new array."""
        if self._out is not None:
            return self._out[self._decoded : self._decoded + count]
        if self._scratch is not None and self._scratch.size >= count:
            return self._scratch[:count]
        return np.empty(count, dtype=self._out_dtype)

    def _raw_ready(self, start: int, count: int) -> int:
        """Of the next `count` pixels, those whose bits have arrived: whole rows, or part of a row
        wider than a piece."""
        assert self._raw is not None
        if not self.bits:
            return count
        arrived = ((len(self._raw_bytes) + self._raw.available()) * 8 - self._raw_bit) // self.bits
        if arrived >= count:
            return count
        if start % self.width == 0 and count % self.width == 0:
            return arrived // self.width * self.width
        return arrived

    def _raw_piece(self, count: int) -> np.ndarray | None:
        assert self._raw is not None
        end_bit = self._raw_bit + count * self.bits
        needed = (end_bit + 7) // 8 - len(self._raw_bytes)
        if needed > self._raw.available():
            return None
        data = self._raw_bytes + self._raw.take(needed) if needed > 0 else self._raw_bytes
        found = unpack_indices(data, self.bits, count, self._raw_bit).astype(self._dtype, copy=False)
        if self.k < 1 << self.bits:  # else every value the bits can hold is < k
            self._check_range(found, self.first_pixel + self._decoded)
        whole = end_bit // 8
        self._raw_bytes, self._raw_bit = data[whole:], end_bit % 8
        return found

    def _rows_piece(self, start: int, count: int) -> np.ndarray | None:
        """Whole rows, or part of one row (starting at a multiple of BLOCK_PIXELS, so on a
        byte), placed as _placed places them."""
        assert self._packed_reader is not None
        packing, column = self._packing, start % self.width
        whole_rows = column == 0 and count % self.width == 0
        if whole_rows:
            rows, size = count // self.width, count // self.width * self._row_bytes
        else:
            rows, size = 1, (min((column + count) * packing, self.width * packing) + 7) // 8 - column * packing // 8
        data = self._packed_reader.read(size)
        if data is None:
            return None
        ends_rows = whole_rows or column + count == self.width
        spare = size // rows * 8 - (self.width if whole_rows else count) * packing  # padding bits a row ends with
        if ends_rows and spare:  # checked on each row's last byte, before anything is unpacked
            last = np.frombuffer(data, np.uint8).reshape(rows, -1)[:, -1]
            if np.any(last & ((1 << spare) - 1)):
                raise KmqError(f"{self.what}: padding bits of a row are not zero")
        if self._unpredictor is not None:
            return self._placed(_unpredicted(self._unpredictor, data, self.k, self.what, start, self.width))
        if whole_rows and _byte_rows(packing, self.width):
            piece = self._piece(count)
            _look_up_rows(data, packing, self._row_bytes, self.width, self.k, self._table, piece, self.what, start)
            return piece
        values = unpack_rows(data, packing, rows, size // rows * 8 // packing)
        used = self.width if whole_rows else count
        found = np.array(values[:, :used], dtype=self._dtype).reshape(-1)  # a copy: data may be read-only
        if self.k < 1 << packing:  # else every value the bits can hold is < k
            self._check_range(found, start)
        return self._placed(found)

    def _runs_piece(self, count: int) -> np.ndarray | None:
        if self._literal_reader is None and not self._count_literals():
            return None
        flags, bit = self._peek_flags(count)
        # A piece that is the whole strip (the usual case) uses the literals counted already.
        literal_count = self._literal_total if count == self.pixels else zero_flags(flags, bit, count)
        assert self._literal_reader is not None
        data = self._literal_reader.read(literal_count * literal_width(self.bits))
        if data is None:
            return None
        self._use_flags(count)
        literals = np.frombuffer(data, dtype=np.uint8) if self.bits <= 8 else np.frombuffer(data, dtype=">u2").astype(np.uint16)
        found = self._piece(count)
        if not expand_runs(flags, bit, literals, self._previous, found, self._runs_table):
            bad = int(np.argmax(literals >= self.k))  # the kernel stopped at a literal >= k: which
            zero_at = np.flatnonzero(np.unpackbits(flags)[bit : bit + count] == 0)[bad]
            self._range_error(int(literals[bad]), self.first_pixel + self._decoded + int(zero_at))
        if literals.size:  # the last pixel holds the last literal: a run may go on into the next piece
            self._previous = int(literals[-1])
        return found

    def _count_literals(self) -> bool:
        """First pass over the complete flags: check them and count the literals, which sizes
        the literal stream before any of it is inflated."""
        assert self._flags is not None and self._literals is not None
        if not self._flags.complete:
            return False
        total = (self.pixels + 7) // 8
        reader = self._flag_inflater(total)
        zeros, seen, kept = 0, 0, []
        keep = total <= BLOCK_PIXELS // 8
        while seen < total:
            size = min(BLOCK_PIXELS // 8, total - seen)
            data = reader.read(size)
            assert data is not None  # the flags are complete
            if seen == 0 and data[0] & 0x80:
                raise KmqError(f"{self.what} flags: the first flag of a strip must be 0")
            flags = min(size * 8, self.pixels - seen * 8)
            zeros += zero_flags(np.frombuffer(data, dtype=np.uint8), 0, flags)
            seen += size
            if seen == total and not padding_is_zero(data, flags):
                raise KmqError(f"{self.what} flags: padding bits are not zero")
            if keep:
                kept.append(data)
        reader.finish()
        if keep:
            self._all_flags = b"".join(kept)
        else:
            self._flags.rewind()
            self._flag_reader = self._flag_inflater(total)
        self._literal_total = zeros
        expected = zeros * literal_width(self.bits)
        if self._literals.length > stream_bound(expected):
            raise KmqError(f"{self.what} literals: {self._literals.length} bytes is over {stream_bound(expected)}, the most {expected} bytes of literals may take")
        assert self._method is not None
        literals = self._literals
        self._literal_reader = Inflater(self._method, expected, f"{self.what} literals", literals.take, lambda: literals.exhausted)
        return True

    def _flag_inflater(self, total: int) -> Inflater:
        assert self._flags is not None and self._method is not None
        flags = self._flags
        return Inflater(self._method, total, f"{self.what} flags", flags.take, lambda: flags.exhausted)

    def _peek_flags(self, count: int) -> tuple[np.ndarray, int]:
        """The packed flags of the next `count` pixels: bytes, and the bit of the first one."""
        bit = self._decoded % 8
        needed = (bit + count + 7) // 8
        if self._all_flags is not None:
            first = self._decoded // 8
            data = self._all_flags[first : first + needed]
        else:
            assert self._flag_reader is not None
            if len(self._flag_bytes) < needed:
                more = self._flag_reader.read(needed - len(self._flag_bytes))
                assert more is not None  # the flags are complete
                self._flag_bytes += more
            data = self._flag_bytes[:needed]
        return np.frombuffer(data, dtype=np.uint8), bit

    def _use_flags(self, count: int) -> None:
        if self._all_flags is None:
            self._flag_bytes = self._flag_bytes[(self._decoded % 8 + count) // 8 :]

    def _end(self) -> bool:
        """After the last piece: the stream's end, padding and trailing bytes are right."""
        if self._packed_reader is not None:
            return self._packed_reader.finish()
        if self._near is not None:
            self._near.finish()
            return True
        if self._raw is not None:
            if self._padded and self._raw_bit and not padding_is_zero(self._raw_bytes[:1], self._raw_bit):
                raise KmqError(f"{self.what}: padding bits are not zero")
            return True
        assert self._literal_reader is not None
        if self._flag_reader is not None and not self._flag_reader.finish():
            return False
        return self._literal_reader.finish()

    def _check_range(self, found: np.ndarray, first: int) -> None:
        if found.size and int(found.max()) >= self.k:
            at = int(np.argmax(found >= self.k))
            self._range_error(int(found[at]), first + at)

    def _range_error(self, value: int, pixel: int) -> None:
        raise range_error(self.what, value, pixel, self.width, self.k)


def range_error(what: str, value: int, pixel: int, width: int, k: int) -> KmqError:
    """The error for index `value` >= k at `pixel` (counted from the image's first pixel)."""
    row, column = divmod(pixel, width)
    return KmqError(f"{what}: index {value} at row {row}, column {column} is out of range for k={k}")


def decode_whole(
    data: bytes | memoryview, pixels: int, first_pixel: int, width: int, k: int, bits_per_index: int, what: str, table: np.ndarray | None = None, out: np.ndarray | None = None,
    palette: Palette | None = None, method: StripMethod | None = None,
) -> np.ndarray:
    """The flat indices (or their `table` values) of a strip whose bytes are all in memory,
    decoded into `out` (see StripDecoder), or into a new array. `method` RAW: the uncoded
    stream of index_coding 0 (no strip_method byte). Runs and raw strips of at most
    BLOCK_PIXELS pixels are decoded whole, the rest piece by piece."""
    view = memoryview(data)

    def read_at(offset: int, size: int) -> bytes:
        return bytes(view[offset : offset + size])

    if out is None:
        out = np.empty(pixels, dtype=index_dtype(k) if table is None else table.dtype)
    code = method if method is not None else view[0] if len(view) else None
    if pixels <= BLOCK_PIXELS and code in _RUNS_METHODS:
        _runs_whole(view, pixels, first_pixel, width, k, bits_per_index, what, table, out)
        return out
    if pixels <= BLOCK_PIXELS and code in ROWS_METHODS and method is None:
        _rows_whole(view, pixels, first_pixel, width, k, bits_per_index, what, table, out)
        return out
    if pixels <= BLOCK_PIXELS and code == StripMethod.RAW:
        _raw_whole(view[0 if method is not None else 1 :], pixels, first_pixel, width, k, bits_per_index, what, table, out)
        return out
    decoder = StripDecoder(pixels, first_pixel, width, k, bits_per_index, len(view), what, read_at, method=method, table=table, out=out, palette=palette)
    for _ in decoder.pieces():
        pass
    if not decoder.done:
        raise KmqError(f"{what}: cut short")
    return out




# --- a strip held whole ----------------------------------------------------------------------
# The same rules as StripDecoder's, in a few calls: a thumbnail's strip went through ~150
# Python calls of the piece-by-piece machinery, a third of its load.


def _raw_whole(data: memoryview, pixels: int, first_pixel: int, width: int, k: int, bits: int, what: str, table: np.ndarray | None, out: np.ndarray) -> None:
    """Bit-packed indices (a raw strip after its strip_method byte, or index_coding 0's stream)."""
    expected = (pixels * bits + 7) // 8
    if len(data) != expected:
        raise KmqError(f"{what}: raw strip holds {len(data)} bytes, {expected} expected")
    found = unpack_indices(data, bits, pixels)
    if k < 1 << bits and pixels and int(found.max()) >= k:  # else every value the bits can hold is < k
        at = int(np.argmax(found >= k))
        raise range_error(what, int(found[at]), first_pixel + at, width, k)
    if not padding_is_zero(data, pixels * bits):
        raise KmqError(f"{what}: padding bits are not zero")
    if table is None:
        out[:] = found
    else:
        lookup(table, found, out)

_RUNS_METHODS = (StripMethod.RUNS_ZLIB, StripMethod.RUNS_ZSTD)


def _rows_whole(data: memoryview, pixels: int, first_pixel: int, width: int, k: int, bits: int, what: str, table: np.ndarray | None, out: np.ndarray) -> None:
    """A rows strip (ROWS_METHODS; whole rows, first_pixel at a row's start) held whole in `data`."""
    method = StripMethod(data[0])
    packing, padded_row = packing_width(bits, method), row_bytes(width, bits, method)
    unpredictor = _unpredictor(width, k, bits, what) if method == StripMethod.MED_ROWS_ZSTD else None
    rows = pixels // width
    expected = rows * padded_row
    if len(data) - 1 > stream_bound(expected):
        raise KmqError(f"{what}: rows frame of {len(data) - 1} bytes is over {stream_bound(expected)}, the most {expected} bytes of rows may take")
    packed = inflate_whole(method, bytes(data[1:]), expected, f"{what} rows")
    spare = padded_row * 8 - width * packing  # padding bits each row ends with
    if spare and np.any(np.frombuffer(packed, np.uint8)[padded_row - 1 :: padded_row] & ((1 << spare) - 1)):
        raise KmqError(f"{what}: padding bits of a row are not zero")
    if unpredictor is not None:  # residuals: a byte an index, checked against k as they are undone
        found = _unpredicted(unpredictor, packed, k, what, first_pixel, width).reshape(rows, width)
    elif _byte_rows(packing, width):
        _look_up_rows(packed, packing, padded_row, width, k, table, out, what, first_pixel)
        return
    else:
        found = unpack_rows(packed, packing, rows, padded_row * 8 // packing)[:, :width]
        if k < 1 << packing and int(found.max()) >= k:  # else every value the bits can hold is < k
            row, column = divmod(int(np.argmax(found >= k)), width)
            raise range_error(what, int(found[row, column]), first_pixel + row * width + column, width, k)
    if table is None:
        out.reshape(rows, width)[:] = found
    else:
        lookup(table, np.ascontiguousarray(found, dtype=index_dtype(k)), out)


def _unpredictor(width: int, k: int, bits: int, what: str) -> Unpredictor:
    """A med_rows_zstd strip's, which holds a byte an index: k <= 256 (bits_per_index <= 8), and
    rows of at most MED_MAX_WIDTH pixels, the row above being held."""
    if bits > 8:
        raise KmqError(f"{what}: med_rows_zstd holds indices of at most 8 bits, not {bits}")
    if width > MED_MAX_WIDTH:
        raise KmqError(f"{what}: med_rows_zstd holds rows of at most {MED_MAX_WIDTH:,} pixels, not {width:,}")
    return Unpredictor(width, k)


def _unpredicted(unpredictor: Unpredictor, residuals: bytes, k: int, what: str, first_pixel: int, width: int) -> np.ndarray:
    """The indices of the next residuals of a med_rows_zstd strip (first_pixel: the image's
    pixel they start at, for the error), each checked against k."""
    found = np.empty(len(residuals), dtype=np.uint8)
    bad = unpredictor.indices(np.frombuffer(residuals, np.uint8), found)
    if bad >= 0:
        raise range_error(what, int(found[bad]), first_pixel + bad, width, k)
    return found


def _byte_rows(packing: int, width: int) -> bool:
    """Whether rows of this width are whole bytes of indices packed within bytes (1, 2, 4 bits):
    none in a row's padding byte, so lookup_rows takes them a byte at a time."""
    return packing < 8 and width % (8 // packing) == 0


def _look_up_rows(packed: bytes, packing: int, row_bytes: int, width: int, k: int, table: np.ndarray | None, out: np.ndarray, what: str, first_pixel: int) -> None:
    """out = the table values (or indices, without a table) of these _byte_rows rows, each index
    checked against k; first_pixel: the image's pixel the rows start at, for the error."""
    beyond = lookup_rows(np.frombuffer(packed, np.uint8), packing, row_bytes, width, (identity(out.dtype) if table is None else table)[:k], out)
    if beyond >= 0:
        row, column = divmod(beyond, width)
        bit = column * packing
        value = (packed[row * row_bytes + bit // 8] >> (8 - packing - bit % 8)) & ((1 << packing) - 1)
        raise range_error(what, value, first_pixel + beyond, width, k)


def _runs_whole(data: memoryview, pixels: int, first_pixel: int, width: int, k: int, bits: int, what: str, table: np.ndarray | None, out: np.ndarray) -> None:
    """A runs strip of at most BLOCK_PIXELS pixels whose bytes are all in `data`, into `out`."""
    method = StripMethod(data[0])
    if len(data) < RUNS_HEAD_SIZE:
        raise KmqError(f"{what}: cut short before flags_length")
    (flags_length,) = _U64.unpack_from(data, 1)
    if flags_length > len(data) - RUNS_HEAD_SIZE:
        raise KmqError(f"{what}: flags_length {flags_length} runs past the strip's end")
    flag_bytes = (pixels + 7) // 8
    if flags_length > stream_bound(flag_bytes):
        raise KmqError(f"{what}: flags_length {flags_length} is over {stream_bound(flag_bytes)}, the most {flag_bytes} bytes of flags may take")
    literals_at = RUNS_HEAD_SIZE + flags_length
    packed_flags = inflate_whole(method, bytes(data[RUNS_HEAD_SIZE:literals_at]), flag_bytes, f"{what} flags")
    if packed_flags[0] & 0x80:  # checked on the bytes: a numpy scalar's operators cost more
        raise KmqError(f"{what} flags: the first flag of a strip must be 0")
    if not padding_is_zero(packed_flags, pixels):
        raise KmqError(f"{what} flags: padding bits are not zero")
    flags = np.frombuffer(packed_flags, dtype=np.uint8)
    expected = zero_flags(flags, 0, pixels) * literal_width(bits)
    if len(data) - literals_at > stream_bound(expected):
        raise KmqError(f"{what} literals: {len(data) - literals_at} bytes is over {stream_bound(expected)}, the most {expected} bytes of literals may take")
    inflated = inflate_whole(method, bytes(data[literals_at:]), expected, f"{what} literals")
    literals = np.frombuffer(inflated, dtype=np.uint8) if bits <= 8 else np.frombuffer(inflated, dtype=">u2").astype(np.uint16)
    runs_table = (identity(index_dtype(k)) if table is None else table)[:k]  # the kernel refuses literals >= k
    if not expand_runs(flags, 0, literals, 0, out, runs_table):
        bad = int(np.argmax(literals >= k))
        zero_at = np.flatnonzero(np.unpackbits(flags)[:pixels] == 0)[bad]
        raise range_error(what, int(literals[bad]), first_pixel + int(zero_at), width, k)


def inflate_whole(method: StripMethod, data: bytes, expected: int, what: str) -> bytes:
    """A zlib stream or zstd frame held whole, inflated to exactly `expected` (>= 1) bytes
    under Inflater's rules, in one call: at most expected + 1 bytes are ever made."""
    if method == StripMethod.RUNS_ZSTD or method in ROWS_METHODS:
        head = zstd_header_length(data)
        if len(data) < head:
            raise KmqError(f"{what}: stream is cut short (0 of {expected} bytes)")
        check_zstd_header(data[:head], expected, what)
        inflated = inflate_zstd_whole(data, expected, what)
        if len(inflated) != expected:
            raise KmqError(f"{what}: stream holds {len(inflated)} bytes, {expected} expected")
        return inflated
    engine = zlib.decompressobj()
    try:
        inflated = engine.decompress(data, expected + 1)
    except zlib.error as error:
        raise KmqError(f"{what}: corrupt zlib stream ({error})") from None
    if len(inflated) > expected:
        raise KmqError(f"{what}: stream holds more than {expected} bytes")
    if not engine.eof:
        raise KmqError(f"{what}: stream is cut short ({len(inflated)} of {expected} bytes)")
    if engine.unused_data:
        raise KmqError(f"{what}: bytes follow the end of the zlib stream")
    if len(inflated) != expected:
        raise KmqError(f"{what}: stream holds {len(inflated)} bytes, {expected} expected")
    return inflated
