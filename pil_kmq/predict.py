"""Index prediction of `med_rows_zstd` strips (spec 7.2, "Predicted rows"). Knows nothing of Pillow.

Where the codebook runs from dark to light (a grayscale image's always does: the writer
sorts one channel's entries by value), an index is a grey level, and a photo's next level is
close to what its neighbours predict. Each index is stored as its difference from the
median edge detector's prediction (MED, as in LOCO-I and JPEG-LS) of its left, above and
above-left neighbours, modulo 256: a photo's residuals cluster around 0, which zstd's
entropy coder packs in fewer bits than the indices themselves, and flat areas become runs
of zeros. Neighbours outside the strip count as 0, so strips decode on their own.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _med(left: int, above: int, above_left: int) -> int:
    """The median of left, above and left + above - above_left: the smaller of left and above
    below an edge above-left, the larger above one, else the plane through the three. Written
    as min and max, no branch: a photo's edges are noise to a branch predictor."""
    return max(min(left, above), min(max(left, above), left + above - above_left))


@njit(cache=True, nogil=True)
def _residuals(indices: np.ndarray, out: np.ndarray) -> None:
    height, width = indices.shape
    for y in range(height):
        left = above_left = 0
        for x in range(width):
            above = int(indices[y - 1, x]) if y else 0
            value = int(indices[y, x])
            out[y, x] = (value - _med(left, above, above_left)) & 0xFF
            left, above_left = value, above


def residuals(indices: np.ndarray) -> np.ndarray:
    """A strip's (rows, width) indices, each < 256, as med_rows_zstd stores them, a byte each."""
    if indices.ndim != 2 or indices.dtype.kind not in "ui":
        raise ValueError("med_rows_zstd predicts 2-D integer indices")
    out = np.empty(indices.shape, dtype=np.uint8)
    _residuals(np.ascontiguousarray(indices, dtype=np.uint8), out)  # k <= 256: every index fits
    return out


@njit(cache=True, nogil=True)
def _unpredict(residuals: np.ndarray, column: int, rows: np.ndarray, now: int, out: np.ndarray) -> tuple[int, int]:
    """From `column` of row rows[now] (the row above: rows[1 - now]), returns (column, now)
    after the residuals. Each pixel waits for its left neighbour, so whole rows are decoded
    two at a time, the lower one a pixel behind (it needs the upper one's pixel above it and
    above-left, never above-right): two chains of work side by side, not one."""
    width = rows.shape[1]
    j = 0
    while j < residuals.size:
        if column == 0 and residuals.size - j >= 2 * width:
            _two_rows(residuals, j, rows[1 - now], out, width)
            rows[1 - now] = out[j + width : j + 2 * width]  # the row above the next pair
            j += 2 * width
            continue
        row, above = rows[now], rows[1 - now]
        end = min(width, column + residuals.size - j)
        left = int(row[column - 1]) if column else 0
        above_left = int(above[column - 1]) if column else 0
        for x in range(column, end):
            up = int(above[x])
            left = (int(residuals[j]) + _med(left, up, above_left)) & 0xFF
            row[x] = left
            out[j] = left
            above_left = up
            j += 1
        column = end
        if column == width:
            column, now = 0, 1 - now
    return column, now


@njit(cache=True, nogil=True, inline="always")
def _two_rows(residuals: np.ndarray, j: int, above: np.ndarray, out: np.ndarray, width: int) -> None:
    """out[j : j + 2 * width] = two whole rows below `above`, from their residuals."""
    upper_left = upper_above_left = lower_left = 0
    for x in range(width):
        up = int(above[x])
        upper = (int(residuals[j + x]) + _med(upper_left, up, upper_above_left)) & 0xFF
        out[j + x] = upper
        lower_left = (int(residuals[j + width + x]) + _med(lower_left, upper, upper_left)) & 0xFF
        out[j + width + x] = lower_left
        upper_left, upper_above_left = upper, up


class Unpredictor:
    """Turns a strip's residuals back into indices, in pieces of any size in pixel order: it
    keeps the row above and the row so far from one piece to the next."""

    def __init__(self, width: int, k: int) -> None:
        if not 1 <= k <= 256:
            raise ValueError("med_rows_zstd holds k <= 256 entries")
        self._rows = np.zeros((2, width), dtype=np.uint8)  # the strip's first row has none above: 0
        self._column = self._now = 0
        self._k = k

    def indices(self, residuals: np.ndarray, out: np.ndarray) -> int:
        """out[:residuals.size] = the next indices: -1, or where the first index >= k is (out
        holds it there, and no piece may follow)."""
        if residuals.dtype != np.uint8 or out.dtype != np.uint8 or out.size < residuals.size:
            raise ValueError("residuals and output are uint8, the output as large")
        flat, found = residuals.reshape(-1), out.reshape(-1)[: residuals.size]
        self._column, self._now = _unpredict(flat, self._column, self._rows, self._now, found)
        if self._k < 256 and flat.size and int(found.max()) >= self._k:  # checked after: a branch a pixel costs more
            return int(np.argmax(found >= self._k))
        return -1
