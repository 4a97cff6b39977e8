"""Compiled inner loops of the run decoder (spec 7.2, "Runs and literals"): counting the
literals a stretch of run flags calls for, expanding flags and literals to indices or
straight to codebook entries (a table of one word an entry), and looking indices up.

Flags are read straight from their packed bytes (MSB first): unpacking them to a byte a
flag, then a running count and a gather, wrote ~7 bytes of temporaries a pixel, and on a
photo that churn of fresh pages cost more than the decoding itself. numba checks no bounds:
the kernels are called only through the wrappers below, which check every size a kernel
relies on (and the kernels check each literal or index against the table they look it up
in), so no file can make them read or write past an array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Number of 0 bits in each byte value.
_ZEROS = np.array([8 - value.bit_count() for value in range(256)], dtype=np.uint8)


@njit(cache=True, nogil=True)
def _zero_bits(flags: np.ndarray, bit: int, count: int) -> int:
    zeros = 0
    position, end = bit, bit + count
    while position < end and position & 7:
        zeros += 1 - ((flags[position >> 3] >> (7 - (position & 7))) & 1)
        position += 1
    while position + 8 <= end:
        zeros += _ZEROS[flags[position >> 3]]
        position += 8
    while position < end:
        zeros += 1 - ((flags[position >> 3] >> (7 - (position & 7))) & 1)
        position += 1
    return zeros


def zero_flags(flags: np.ndarray, bit: int, count: int) -> int:
    """How many of the `count` flags from bit `bit` of `flags` are 0: the literals they use."""
    if (bit + count + 7) // 8 > flags.size:
        raise ValueError("fewer flag bytes than flags")
    return int(_zero_bits(flags, bit, count))


# _RANKS[b, i]: the 0 bits among bits 0 … i (MSB first) of byte b, i.e. the literals its
# first i + 1 flags use.
_RANKS = np.array([[sum(1 - (value >> (7 - j) & 1) for j in range(i + 1)) for i in range(8)] for value in range(256)], dtype=np.uint8)


@njit(cache=True, nogil=True)
def _expand(flags: np.ndarray, bit: int, literals: np.ndarray, previous: int, out: np.ndarray, table: np.ndarray) -> int:
    count, available, size = out.size, literals.size, table.size
    used = 0
    word = table[previous]
    j, position = 0, bit
    while j < count:
        byte = flags[position >> 3]
        if position & 7 == 0 and j + 8 <= count and byte == 0xFF:
            # A run: filled to the end of its whole bytes of 1 flags at once.
            end = j + 8
            while end + 8 <= count and flags[(position + end - j) >> 3] == 0xFF:
                end += 8
            out[j:end] = word
            position += end - j
            j = end
            continue
        if position & 7 == 0 and j + 8 <= count and used:
            # A whole byte of flags without a branch a flag: pixel i takes the literal
            # before the first one this byte uses, plus the zeros up to i. The literal before
            # is the current one (used > 0), so no table of `previous` plus literals is built.
            if used + _RANKS[byte, 7] > available:
                return _TOO_FEW
            before = used - 1
            for i in range(8):
                value = literals[before + _RANKS[byte, i]]
                if value >= size:
                    return _BEYOND_TABLE
                out[j + i] = table[value]
            used += _RANKS[byte, 7]
            word = table[literals[used - 1]]
            j += 8
            position += 8
            continue
        if (byte >> (7 - (position & 7))) & 1 == 0:
            if used == available:
                return _TOO_FEW
            if literals[used] >= size:
                return _BEYOND_TABLE
            word = table[literals[used]]
            used += 1
        out[j] = word
        j += 1
        position += 1
    return used


_TOO_FEW, _BEYOND_TABLE = -1, -2


def expand_runs(flags: np.ndarray, bit: int, literals: np.ndarray, previous: int, out: np.ndarray, table: np.ndarray | None = None) -> bool:
    """Fill `out` with the indices of out.size pixels whose flags start at bit `bit` of
    `flags`: each pixel takes the most recent literal at or before it, `previous` before the
    first. `literals` must hold exactly as many values as those flags have zeros. With a
    `table`, each pixel takes table[its index] instead (a codebook entry as one word), in
    the same pass. False, with `out` partly filled, when a literal is beyond the table."""
    if table is None:
        table = identity(out.dtype)
    if literals.dtype.kind != "u" or table.dtype != out.dtype:
        raise ValueError("signed literals, or a table of another type than the output")
    if (bit + out.size + 7) // 8 > flags.size:
        raise ValueError("fewer flag bytes than flags")
    if previous >= table.size or previous < 0:
        raise ValueError("previous index beyond the table")
    used = _expand(flags, bit, literals, previous, out, table)
    if used == _BEYOND_TABLE:
        return False
    if used != literals.size:
        raise ValueError("flags and literals do not match")
    return True


_IDENTITIES: dict[np.dtype, np.ndarray] = {}


def identity(dtype: np.dtype) -> np.ndarray:
    """The table that maps each index to itself, for indices of this dtype (uint8 or uint16)."""
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.uint8), np.dtype(np.uint16)):
        raise ValueError(f"indices are uint8 or uint16, not {dtype}")
    if dtype not in _IDENTITIES:
        _IDENTITIES[dtype] = np.arange(np.iinfo(dtype).max + 1, dtype=dtype)
    return _IDENTITIES[dtype]


@njit(cache=True, nogil=True)
def _lookup(table: np.ndarray, indices: np.ndarray, out: np.ndarray) -> bool:
    size = table.size
    for j in range(indices.size):
        if indices[j] >= size:
            return False
        out[j] = table[indices[j]]
    return True


def lookup(table: np.ndarray, indices: np.ndarray, out: np.ndarray) -> None:
    """out[j] = table[indices[j]]: a pixel's whole codebook entry as one word. Every index
    must be below table.size."""
    if indices.dtype.kind != "u" or out.size < indices.size:
        raise ValueError("signed indices, or too small an output")
    if not _lookup(table, indices.reshape(-1), out):
        raise ValueError("an index beyond the table")


@njit(cache=True, nogil=True)
def _lookup_units(packed: np.ndarray, row_bytes: int, per_row: int, units: np.ndarray, size: int, beyond: np.ndarray, out: np.ndarray) -> int:
    # size (1, 2 or 4 words a packed byte) by branches, not a loop: a loop took 1.6 x the time
    j = 0
    for row in range(out.size // (per_row * size)):
        start = row * row_bytes
        for column in range(per_row):
            byte = packed[start + column]
            if beyond[byte]:
                return row * per_row + column
            at = byte * size
            out[j] = units[at]
            if size > 1:
                out[j + 1] = units[at + 1]
                if size > 2:
                    out[j + 2] = units[at + 2]
                    out[j + 3] = units[at + 3]
            j += size
    return -1


_UNIT_DTYPES = {1: np.uint8, 2: np.uint16, 4: np.uint32}
# Each byte's values at 1, 2 and 4 bits (MSB first), and for each (packing, k) whether a byte
# holds one >= k: made once, not per strip (a thumbnail's strip took twice as long rebuilding them).
_BYTE_VALUES = {packing: (np.arange(256)[:, None] >> (8 - packing * np.arange(1, 8 // packing + 1))) & ((1 << packing) - 1) for packing in (1, 2, 4)}
_BEYOND: dict[tuple[int, int], np.ndarray] = {}


def _beyond(packing: int, size: int) -> np.ndarray:
    key = (packing, min(size, 1 << packing))  # a larger table holds every value the bits can
    if key not in _BEYOND:
        _BEYOND[key] = (_BYTE_VALUES[packing] >= size).any(axis=1)
    return _BEYOND[key]


def lookup_rows(packed: np.ndarray, packing: int, row_bytes: int, width: int, table: np.ndarray, out: np.ndarray) -> int:
    """out[j] = table[index j] for the rows in `packed` (uint8), each `row_bytes` bytes of
    indices packed MSB first at `packing` (1, 2 or 4) bits, as many rows as `out` (C-contiguous,
    values of 1, 2 or 4 bytes, the table's dtype) holds `width` values; `width` a multiple of
    the indices a byte holds. Each byte's values are looked up at once, as one unit of memory:
    unpacking first (a temporary of a byte a pixel) took 1.5 x as long, and faulted in fresh
    pages for every large image. -1, or the first pixel whose index is beyond the table (pixels
    from its byte on are not written)."""
    per_byte = 8 // packing if packing in (1, 2, 4) else 0
    if not per_byte or width % per_byte or out.size % width or width // per_byte > row_bytes:
        raise ValueError("rows do not match the output")
    if packed.dtype != np.uint8 or packed.ndim != 1 or packed.size < out.size // width * row_bytes:
        raise ValueError("packed rows are bytes, as many as the output's rows take")
    if out.itemsize not in _UNIT_DTYPES or not out.flags.c_contiguous or table.dtype != out.dtype or table.ndim != 1 or not table.size:
        raise ValueError("a table and a C-contiguous output of the same values, of 1, 2 or 4 bytes")
    values = _BYTE_VALUES[packing]
    beyond = _beyond(packing, table.size)
    unit = per_byte * out.itemsize  # bytes of one packed byte's values: 2 to 32
    kind = np.uint64 if unit >= 8 else _UNIT_DTYPES[unit]
    units = np.ascontiguousarray(table[np.minimum(values, table.size - 1)]).view(kind).reshape(256, -1)
    per_row = width // per_byte
    found = int(_lookup_units(packed, row_bytes, per_row, units.reshape(-1), units.shape[1], beyond, out.reshape(-1).view(kind)))
    if found < 0:
        return -1
    return found * per_byte + int(np.argmax(values[packed[found // per_row * row_bytes + found % per_row]] >= table.size))
