"""Bit packing of indices with bitarray: MSB first, fixed width, no padding between values."""

from __future__ import annotations

import numpy as np
from bitarray import bitarray

# Values packed per bitarray call: bounds the temporary one-byte-per-bit buffer to ~16 MiB.
_BATCH = 1 << 20
# Widths whose MSB-first packing is plain big-endian bytes: numpy does them without bit work.
_BYTE_DTYPES: dict[int, np.dtype] = {8: np.dtype(">u1"), 16: np.dtype(">u2")}
# Widths that divide a byte: numpy shifts do them too (same bytes as the bitarray path).
_SUB_BYTE = (1, 2, 4)


def _bit_shifts(bits_per_index: int) -> np.ndarray:
    return np.arange(bits_per_index - 1, -1, -1, dtype=np.uint32)


def pack_indices(indices: np.ndarray, bits_per_index: int) -> bytes:
    """Pack indices at `bits_per_index` bits each, MSB first; the last byte is zero-padded."""
    if bits_per_index == 0:
        return b""
    if bits_per_index in _BYTE_DTYPES:
        return np.asarray(indices).astype(_BYTE_DTYPES[bits_per_index]).tobytes()
    if bits_per_index in _SUB_BYTE:
        return _pack_sub_byte(np.asarray(indices).ravel(), bits_per_index)
    flat = np.ascontiguousarray(indices, dtype=np.uint32).ravel()
    shifts = _bit_shifts(bits_per_index)
    packed = bitarray(endian="big")
    for start in range(0, flat.size, _BATCH):
        chunk = flat[start : start + _BATCH]
        bit_bytes = ((chunk[:, None] >> shifts) & 1).astype(np.uint8)
        packed.pack(bit_bytes.tobytes())
    return packed.tobytes()


def unpack_indices(data: bytes | bytearray | memoryview, bits_per_index: int, count: int, bit_offset: int = 0) -> np.ndarray:
    """Read `count` indices of `bits_per_index` bits starting `bit_offset` bits into data."""
    if bits_per_index == 0:
        return np.zeros(count, dtype=np.uint16)
    end = bit_offset + count * bits_per_index
    if end > len(data) * 8:
        raise ValueError(f"{count} indices of {bits_per_index} bits need {end} bits, data holds {len(data) * 8}")
    if bit_offset % 8 == 0 and bits_per_index in _BYTE_DTYPES:
        values = np.frombuffer(data, _BYTE_DTYPES[bits_per_index], count, bit_offset // 8)
        return values.astype(np.uint16)
    if bit_offset % 8 == 0 and bits_per_index in _SUB_BYTE:  # as one row: each byte's values looked up
        size = (end - bit_offset + 7) // 8
        return unpack_rows(memoryview(data)[bit_offset // 8 : bit_offset // 8 + size], bits_per_index, 1, size * 8 // bits_per_index).reshape(-1)[:count]
    bits = bitarray(endian="big")
    bits.frombytes(bytes(data[: (end + 7) // 8]))
    bit_bytes = np.frombuffer(bits[bit_offset:end].unpack(), dtype=np.uint8).reshape(count, bits_per_index)
    indices = np.zeros(count, dtype=np.uint32)
    for column in range(bits_per_index):  # a loop over bit planes (<= 16), not over pixels
        indices <<= 1
        indices |= bit_bytes[:, column]
    return indices.astype(np.uint16)


def _pack_sub_byte(flat: np.ndarray, bits_per_index: int) -> bytes:
    per_byte = 8 // bits_per_index
    padded = np.zeros(-(-flat.size // per_byte) * per_byte, dtype=np.uint8)
    padded[: flat.size] = flat
    grouped = padded.reshape(-1, per_byte)
    packed = np.zeros(len(grouped), dtype=np.uint8)
    for slot in range(per_byte):  # a loop over the slots of a byte (<= 8), not over pixels
        packed |= grouped[:, slot] << (8 - bits_per_index * (slot + 1))
    return packed.tobytes()


def _unpack_sub_byte(packed: np.ndarray, bits_per_index: int, count: int) -> np.ndarray:
    per_byte = 8 // bits_per_index
    mask = (1 << bits_per_index) - 1
    values = np.empty((len(packed), per_byte), dtype=np.uint16)
    for slot in range(per_byte):
        values[:, slot] = (packed >> (8 - bits_per_index * (slot + 1))) & mask
    return values.ravel()[:count]


def padding_is_zero(data: bytes | bytearray | memoryview, used_bits: int) -> bool:
    """True when every bit after the first `used_bits` bits of data is zero."""
    whole, rest = divmod(used_bits, 8)
    if rest and data[whole] & (0xFF >> rest):
        return False
    tail = bytes(data[whole + (1 if rest else 0) :])
    return not any(tail)


def pack_rows(indices: np.ndarray, width_bits: int) -> bytes:
    """(rows, width) indices at width_bits (1, 2, 4, 8 or 16) bits each, MSB first, every row
    completed with zero bits to a whole byte (the rows_zstd layout, spec 7.2)."""
    rows, width = indices.shape
    if width_bits in _BYTE_DTYPES:
        return np.asarray(indices).astype(_BYTE_DTYPES[width_bits]).tobytes()
    per_byte = 8 // width_bits
    padded = np.zeros((rows, -(-width // per_byte) * per_byte), dtype=np.uint8)
    padded[:, :width] = indices
    return _pack_sub_byte(padded.ravel(), width_bits)


_ROW_TABLES: dict[int, np.ndarray] = {}


def unpack_rows(data: bytes | bytearray | memoryview, width_bits: int, rows: int, row_values: int) -> np.ndarray:
    """The (rows, row_values) values of `rows` byte-aligned rows packed at width_bits, padding
    values included (row_values = a row's bytes * 8 / width_bits)."""
    if width_bits in _BYTE_DTYPES:
        return np.frombuffer(data, _BYTE_DTYPES[width_bits], rows * row_values).reshape(rows, row_values)
    table = _ROW_TABLES.get(width_bits)
    if table is None:  # every byte's values, looked up rather than shifted out slot by slot
        every = np.arange(256, dtype=np.uint8)
        table = _ROW_TABLES[width_bits] = _unpack_sub_byte(every, width_bits, 256 * 8 // width_bits).astype(np.uint8).reshape(256, -1)
    packed = np.frombuffer(data, np.uint8, rows * row_values * width_bits // 8)
    return np.take(table, packed, axis=0).reshape(rows, row_values)  # measured 13x faster than table[packed]
