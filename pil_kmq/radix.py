"""The colour histogram of a strip of pixels, compiled: its uint32 colour keys (channels
packed big-endian, quantize.color_keys) sorted by a least-significant-digit radix sort, then
each distinct key with its count.

numpy's sort of the keys took 11-16 ms of a Kodak image's save (0.55 s on 12 megapixels);
two passes of 12-bit digits take ~2.3 ms. The sort needs a second array of keys, so
callers go strip by strip (a bounded strip, not the image) and merge the strips' counts.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_DIGIT = 12  # bits a pass at most: 4,096 counters, which stay in the L1 cache


@njit(cache=True, nogil=True)
def _radix_sort(keys: np.ndarray, spare: np.ndarray, key_bits: int) -> bool:
    """Sort keys; returns True when the sorted keys ended up in `spare` (an odd number of passes)."""
    passes = (key_bits + _DIGIT - 1) // _DIGIT
    bits = (key_bits + passes - 1) // passes
    mask = np.uint32((1 << bits) - 1)
    counts = np.zeros(1 << bits, dtype=np.int64)
    source, target = keys, spare
    for number in range(passes):
        shift = np.uint32(number * bits)
        counts[:] = 0
        for i in range(source.size):
            counts[(source[i] >> shift) & mask] += 1
        total = 0
        for digit in range(counts.size):
            count = counts[digit]
            counts[digit] = total
            total += count
        for i in range(source.size):
            value = source[i]
            digit = (value >> shift) & mask
            target[counts[digit]] = value
            counts[digit] += 1
        source, target = target, source
    return passes % 2 == 1


@njit(cache=True, nogil=True)
def _distinct(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distinct = 0
    for i in range(keys.size):
        if i == 0 or keys[i] != keys[i - 1]:
            distinct += 1
    unique = np.empty(distinct, dtype=np.uint32)
    counts = np.zeros(distinct, dtype=np.int64)
    at = -1
    for i in range(keys.size):
        if i == 0 or keys[i] != keys[i - 1]:
            at += 1
            unique[at] = keys[i]
        counts[at] += 1
    return unique, counts


@njit(cache=True, nogil=True)
def _union_size(keys_a: np.ndarray, keys_b: np.ndarray) -> int:
    i = j = size = 0
    while i < keys_a.size and j < keys_b.size:
        if keys_a[i] <= keys_b[j]:
            j += keys_a[i] == keys_b[j]
            i += 1
        else:
            j += 1
        size += 1
    return size + (keys_a.size - i) + (keys_b.size - j)


@njit(cache=True, nogil=True)
def _merge(keys_a: np.ndarray, counts_a: np.ndarray, keys_b: np.ndarray, counts_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = _union_size(keys_a, keys_b)  # sized exactly: the merged counts can be most of a save's memory
    keys = np.empty(size, dtype=np.uint32)
    counts = np.empty(size, dtype=np.int64)
    i = j = 0
    for at in range(size):
        if j == keys_b.size or (i < keys_a.size and keys_a[i] < keys_b[j]):
            keys[at], counts[at] = keys_a[i], counts_a[i]
            i += 1
        elif i == keys_a.size or keys_b[j] < keys_a[i]:
            keys[at], counts[at] = keys_b[j], counts_b[j]
            j += 1
        else:
            keys[at], counts[at] = keys_a[i], counts_a[i] + counts_b[j]
            i += 1
            j += 1
    return keys, counts


def strip_counts(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of uint32 keys below 2**key_bits, and how many times each
    occurs. Sorts `keys` in place."""
    if keys.dtype != np.uint32 or keys.ndim != 1 or not 1 <= key_bits <= 32:
        raise ValueError("strip_counts takes 1-D uint32 keys of 1 to 32 bits")
    spare = np.empty_like(keys)
    in_spare = _radix_sort(keys, spare, key_bits)
    return _distinct(spare if in_spare else keys)


def merge_counts(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Two (sorted distinct keys, counts) pairs as one: the union of keys, counts added."""
    return _merge(first[0], first[1], second[0], second[1])
