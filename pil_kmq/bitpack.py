"""Bit packing of indices with bitarray: MSB first, fixed width, no padding between values."""

from __future__ import annotations

import numpy as np
from bitarray import bitarray

# Values packed per bitarray call: bounds the temporary one-byte-per-bit buffer to ~16 MiB.
_BATCH = 1 << 20
# Widths whose MSB-first packing is plain big-endian bytes: numpy does them without bit work.
_BYTE_DTYPES = {8: np.dtype(">u1"), 16: np.dtype(">u2")}


def _bit_shifts(bits_per_index: int) -> np.ndarray:
    return np.arange(bits_per_index - 1, -1, -1, dtype=np.uint32)


def pack_indices(indices: np.ndarray, bits_per_index: int) -> bytes:
    """Pack indices at `bits_per_index` bits each, MSB first; the last byte is zero-padded."""
    if bits_per_index == 0:
        return b""
    if bits_per_index in _BYTE_DTYPES:
        return np.asarray(indices).astype(_BYTE_DTYPES[bits_per_index]).tobytes()
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
    if bits_per_index in _BYTE_DTYPES and bit_offset % 8 == 0:
        values = np.frombuffer(data, _BYTE_DTYPES[bits_per_index], count, bit_offset // 8)
        return values.astype(np.uint16)
    bits = bitarray(endian="big")
    bits.frombytes(bytes(data[: (end + 7) // 8]))
    bit_bytes = np.frombuffer(bits[bit_offset:end].unpack(), dtype=np.uint8).reshape(count, bits_per_index)
    indices = np.zeros(count, dtype=np.uint32)
    for column in range(bits_per_index):  # a loop over bit planes (<= 16), not over pixels
        indices <<= 1
        indices |= bit_bytes[:, column]
    return indices.astype(np.uint16)


def padding_is_zero(data: bytes | bytearray | memoryview, used_bits: int) -> bool:
    """True when every bit after the first `used_bits` bits of data is zero."""
    whole, rest = divmod(used_bits, 8)
    if rest and data[whole] & (0xFF >> rest):
        return False
    tail = bytes(data[whole + (1 if rest else 0) :])
    return not any(tail)
