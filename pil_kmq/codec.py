"""KMQ files <-> (indices, codebook): writing the parts of a file and decoding it incrementally.

Knows the byte layout and the bit packing; knows nothing of Pillow or of k-means.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .bitpack import pack_indices, padding_is_zero, unpack_indices
from .coding import STRIP_HEAD_SIZE, WORKERS, StripTable, check_range, check_strip_crc, decode_strip, encode_strips, parallel_map, parse_strip_height, parse_table, table_size
from .format import (
    CRC_SIZE,
    HEADER_SIZE,
    Header,
    KNOWN_CHUNKS,
    IndexCoding,
    KmqError,
    StripMethod,
    bits_for_k,
    crc32,
    new_header,
    pack_crc,
    parse_extensions,
    parse_header,
    unpack_crc,
)
from .quantize import Quantized

# Pixels decoded per step: bounds the decoder's temporaries whatever the chunking of its input.
_ROW_BATCH_PIXELS = 1 << 20


def encode_parts(indices: np.ndarray, codebook: np.ndarray, method: StripMethod | None = None, extension: bytes = b"") -> Iterator[bytes]:
    """The bytes of a KMQ file in order: header, extension area, codebook, index stream, file_crc.

    indices is (height, width) with values < len(codebook); codebook is (k, channels) uint8.
    method None writes index_coding 0 (bit-packed); a StripMethod writes index_coding 1 with
    strips stored that way (or RAW where that is smaller). k = 1 has no indices to code.
    """
    height, width = indices.shape
    k, channels = codebook.shape
    bits_per_index = bits_for_k(k)
    if method is None or k == 1:
        coding, stream = IndexCoding.NONE, [pack_indices(indices, bits_per_index)]
    else:
        coding, stream = IndexCoding.STRIPS, list(encode_strips(indices, bits_per_index, method))
    header = new_header(width, height, channels, k, coding, sum(len(part) for part in stream), len(extension))
    crc = 0
    for part in (header.pack(), extension, np.ascontiguousarray(codebook, dtype=np.uint8).tobytes(), *stream):
        crc = crc32(part, crc)
        yield part
    yield pack_crc(crc)


class IndexStreamDecoder:
    """Decodes the bytes that follow the extension area, fed in chunks of any size.

    `feed` yields (first_row, indices) for every run of rows it completes, so a caller can
    show a partial image; `done` turns True once the file_crc has been checked.
    """

    def __init__(self, header: Header, prefix_crc: int) -> None:
        self.header = header
        self.codebook: np.ndarray | None = None
        self.next_row = 0
        self.done = False
        self._crc = prefix_crc
        self._pending = bytearray()
        self._bit_offset = 0  # bits of _pending[0] already consumed by decoded rows (index_coding 0)
        self._row_bits = header.width * header.bits_per_index
        self._table: StripTable | None = None
        self._next_strip = 0

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[tuple[int, np.ndarray]]:
        """Take the next bytes of the file; yield the rows they complete."""
        if self.done:
            return
        self._pending += data
        if self.codebook is None and not self._take_codebook():
            return
        if self.header.index_coding == IndexCoding.STRIPS:
            yield from self._take_strips()
        else:
            yield from self._take_rows()
        if self.next_row == self.header.height:
            self._take_trailer()

    def _consume(self, length: int) -> bytes:
        """Remove the next `length` pending bytes, adding them to the running CRC."""
        taken = bytes(self._pending[:length])
        del self._pending[:length]
        self._crc = crc32(taken, self._crc)
        return taken

    def _take_codebook(self) -> bool:
        length = self.header.codebook_length
        if len(self._pending) < length:
            return False
        raw = self._consume(length)
        self.codebook = np.frombuffer(raw, dtype=np.uint8).reshape(self.header.k, self.header.channels)
        return True

    def _take_strips(self) -> Iterator[tuple[int, np.ndarray]]:
        header = self.header
        if self._table is None:
            if len(self._pending) < STRIP_HEAD_SIZE:
                return
            strip_height = parse_strip_height(bytes(self._pending[:STRIP_HEAD_SIZE]), header.height, header.index_stream_length)
            size = table_size(header.height, strip_height)
            if len(self._pending) < size:
                return
            self._table = parse_table(self._consume(size), header.height, header.index_stream_length)
        table = self._table
        # Decode at most one strip per worker at a time: bounds the memory whatever arrives at once.
        while self._next_strip < len(table.lengths):
            group = []
            available = len(self._pending)
            for number in range(self._next_strip, min(self._next_strip + WORKERS, len(table.lengths))):
                if table.lengths[number] > available:
                    break
                available -= table.lengths[number]
                group.append(number)
            if not group:
                return
            jobs = []
            for number in group:
                rows = min(table.strip_height, header.height - number * table.strip_height)
                data = self._consume(table.lengths[number])
                check_strip_crc(data, table, number)
                jobs.append((data, rows, header.width, header.k, header.bits_per_index, number))
            for number, indices in zip(group, parallel_map(decode_strip, jobs)):
                self._next_strip = number + 1
                self.next_row = number * table.strip_height + len(indices)
                yield number * table.strip_height, indices

    def _take_rows(self) -> Iterator[tuple[int, np.ndarray]]:
        header = self.header
        batch_rows = max(1, _ROW_BATCH_PIXELS // header.width)
        position = 0  # bytes of _pending consumed in this call; compacted once at the end
        try:
            while rows := min(self._rows_available_from(position), batch_rows):
                count = rows * header.width
                end_bit = self._bit_offset + count * header.bits_per_index
                chunk = self._pending[position : position + (end_bit + 7) // 8]
                indices = unpack_indices(chunk, header.bits_per_index, count, self._bit_offset)
                self._check_range(indices)
                whole = end_bit // 8
                self._crc = crc32(chunk[:whole], self._crc)
                position += whole
                self._bit_offset = end_bit % 8
                first = self.next_row
                self.next_row += rows
                yield first, indices.reshape(rows, header.width)
        finally:
            del self._pending[:position]

    def _rows_available_from(self, position: int) -> int:
        left = self.header.height - self.next_row
        if self._row_bits == 0:
            return left
        bits = (len(self._pending) - position) * 8 - self._bit_offset
        return min(left, bits // self._row_bits)

    def _check_range(self, indices: np.ndarray) -> None:
        if self.header.k >= 1 << self.header.bits_per_index:  # every value the bits can hold is < k
            return
        first_pixel, width = self.next_row * self.header.width, self.header.width

        def place(found: int) -> str:
            row, column = divmod(first_pixel + found, width)
            return f"row {row}, column {column}"

        check_range(indices, self.header.k, "KMQ ", place)

    def _take_trailer(self) -> None:
        partial = 1 if self._bit_offset else 0  # the last, zero-padded byte of the stream
        if len(self._pending) < partial + CRC_SIZE:
            return
        if partial:
            if not padding_is_zero(self._pending[:1], self._bit_offset):
                raise KmqError("KMQ index stream padding bits are not zero")
            self._crc = crc32(self._pending[:1], self._crc)
        stored = unpack_crc(bytes(self._pending[partial : partial + CRC_SIZE]))
        if stored != self._crc:
            raise KmqError(f"KMQ file checksum mismatch (stored {stored:#010x}, computed {self._crc:#010x}): the data is corrupt")
        self._pending.clear()
        self.done = True


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
    indices = np.empty((header.height, header.width), dtype=np.uint16)
    for first, rows in decoder.feed(memoryview(data)[header.codebook_offset :]):
        indices[first : first + len(rows)] = rows
    if not decoder.done:
        raise KmqError(f"truncated KMQ file: {len(data)} bytes of {header.file_length}")
    assert decoder.codebook is not None
    return header, Quantized(indices, decoder.codebook)
