"""Rate-optimized indices: trade a bounded amount of error for a smaller index stream.

The strip coder stores a pixel whose index equals the one before it (in pixel order) as a
run flag, almost free, and any other index as a literal, the bulk of a file. So a pixel
whose left neighbour's index is nearly as close as its own nearest entry is better stored
with the neighbour's index: a run. The scan below takes the neighbour's index wherever that
adds at most `threshold` squared error (summed over channels); thresholds are searched for a
PSNR budget, and psnr= compares real encoded sizes across k. Knows nothing of Pillow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
from numba import njit

from .quantize import Quantized, RowSource, mse_for_psnr

# Pixels scanned as one segment, in pixel order; the segments of a band are scanned side by
# side, so a scan takes SEGMENT numpy steps whatever the image's shape.
SEGMENT = 128
BAND_PIXELS = 1 << 18  # pixels per band of rows: bounds the int32 temporaries (~5 MiB)
MAX_THRESHOLD = 4 * 255**2  # every run allowed: the most squared error a pixel can have
CACHED_PIXELS = 1 << 21  # images up to this size keep their segments (~17 bytes a pixel) between scans
SAMPLE_EVERY = 8  # threshold searches run on every 8th segment; segments are independent
SEARCH_STEPS = 8  # bisection steps on log2(threshold), which spans 0 to 17.6
MAX_CHECKS = 4  # full scans allowed to confirm a threshold found on the sample


class Segments(NamedTuple):
    """Pixels, nearest indices and their squared errors as (SEGMENT, segments) arrays, so that
    step j of a scan touches position j of every segment."""

    pixels: np.ndarray  # (SEGMENT, m, C) int32
    nearest: np.ndarray  # (SEGMENT, m)
    error: np.ndarray  # (SEGMENT, m) int32
    real: int  # real pixels (the last segment is padded by repeating the last pixel)


def _visible(colors: np.ndarray) -> np.ndarray:
    """Colours as psnr= measures them: with alpha, a fully transparent colour is not seen, so
    its colour channels count as 0 (the error of the transparent entry is then 0)."""
    if colors.shape[1] not in (2, 4):
        return colors
    return np.where(colors[:, -1:] == 0, 0, colors).astype(colors.dtype)


def _segments(pixels: np.ndarray, nearest: np.ndarray, codebook: np.ndarray) -> Segments:
    """Cut a band's (n, C) pixels and (n,) nearest indices into SEGMENT-long pieces (codebook:
    the visible one), in one compiled pass."""
    count, channels = pixels.shape
    if nearest.dtype.kind != "u" or nearest.shape != (count,) or codebook.shape[1:] != (channels,):
        raise ValueError("nearest must be unsigned, one a pixel, into a codebook of the pixels' channels")
    if count and (not len(codebook) or int(nearest.max()) >= len(codebook)):
        raise ValueError("nearest indices beyond the codebook")
    columns = -(-count // SEGMENT)
    cut = Segments(
        np.empty((SEGMENT, columns, channels), dtype=np.int32), np.empty((SEGMENT, columns), dtype=nearest.dtype), np.empty((SEGMENT, columns), dtype=np.int32), count
    )
    _cut(np.ascontiguousarray(pixels), np.ascontiguousarray(nearest), codebook.astype(np.int32), channels in (2, 4), cut.pixels, cut.nearest, cut.error)
    return cut


@njit(cache=True, nogil=True)
def _cut(pixels, nearest, colors, alpha, out_pixels, out_nearest, out_error):
    # Position j of segment s is pixel s * SEGMENT + j; the last segment repeats the last pixel.
    length, columns, channels = out_pixels.shape
    count = pixels.shape[0]
    for s in range(columns):
        for j in range(length):
            i = min(s * length + j, count - 1)
            own = nearest[i]
            out_nearest[j, s] = own
            hidden = alpha and pixels[i, channels - 1] == 0  # a fully transparent colour is not seen
            total = 0
            for c in range(channels):
                value = 0 if hidden and c < channels - 1 else np.int32(pixels[i, c])
                out_pixels[j, s, c] = value
                difference = value - colors[own, c]
                total += difference * difference
            out_error[j, s] = total


def scan(segments: Segments, codebook: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """(indices (SEGMENT, m), added squared error): left to right, a pixel takes the index just
    chosen for the pixel before it when that adds at most threshold to its squared error; with
    alpha, only an entry of its own entry's alpha (transparent and opaque pixels stay exact)."""
    pixels, nearest, error = segments.pixels, segments.nearest, segments.error
    alpha = codebook[:, -1].astype(np.int32) if codebook.shape[1] in (2, 4) else np.zeros(0, dtype=np.int32)
    chosen = np.empty_like(nearest)
    added = _scan(pixels, nearest, error, codebook.astype(np.int32), alpha, int(min(threshold, MAX_THRESHOLD)), chosen)
    return chosen, int(added)


@njit(cache=True, nogil=True)
def _scan(pixels: np.ndarray, nearest: np.ndarray, error: np.ndarray, colors: np.ndarray, alpha: np.ndarray, threshold: int, chosen: np.ndarray) -> int:
    # Step j of every segment before step j + 1, as the segments lie in memory.
    length, segments, channels = pixels.shape
    added = 0
    chosen[0] = nearest[0]
    for j in range(1, length):
        for s in range(segments):
            previous, own = chosen[j - 1, s], nearest[j, s]
            chosen[j, s] = own
            if alpha.size and alpha[own] != alpha[previous]:
                continue
            distance = 0
            for c in range(channels):
                difference = pixels[j, s, c] - colors[previous, c]
                distance += difference * difference
            if distance <= error[j, s] + threshold:
                chosen[j, s] = previous
                added += distance - error[j, s]
    return added


def _bands(image: RowSource, indices: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pixels (n, C), nearest indices (n,)) for each band of whole rows."""
    height, width, channels = image.shape
    rows = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows):
        pixels = np.asarray(image[top : top + rows]).reshape(-1, channels)
        yield pixels, indices[top : top + rows].reshape(-1)


class Trader:
    """An image's pixels and nearest-entry indices, cut into segments once, ready to trade
    error for runs at any budget."""

    def __init__(self, image: RowSource, quantized: Quantized) -> None:
        self.image, self.quantized = image, quantized
        indices, codebook = quantized
        self.visible = _visible(codebook)  # errors are measured between visible colours
        self.pixels_channels = indices.size * codebook.shape[1]
        self.error = 0
        # The threshold search scans only every SAMPLE_EVERY-th segment: keep just those (and
        # all of them for a small image, rather than cutting them again for each full scan).
        self.sample: list[Segments] = []
        self.cached: list[Segments] | None = [] if indices.size <= CACHED_PIXELS else None
        for segments in self._cut():
            self.error += int(_real(segments, segments.error).sum())
            pixels, nearest, error = (np.ascontiguousarray(part[:, ::SAMPLE_EVERY]) for part in segments[:3])
            self.sample.append(Segments(pixels, nearest, error, 0))
            if self.cached is not None:
                self.cached.append(segments)
        self.sample_share = sum(part.nearest.size for part in self.sample) / max(1, indices.size)

    def _cut(self) -> Iterator[Segments]:
        for pixels, nearest in _bands(self.image, self.quantized.indices):
            yield _segments(pixels, nearest, self.visible)

    def _segments(self) -> Iterable[Segments]:
        return self._cut() if self.cached is None else self.cached

    def within(self, budget: float) -> Quantized:
        """Indices that add at most `budget` squared error (summed over pixels and channels) to
        the nearest-entry ones, chosen to make runs; the codebook is unchanged."""
        codebook = self.quantized.codebook
        if len(codebook) < 2 or budget <= 0:
            return self.quantized
        threshold = self._threshold_for(budget)
        for _ in range(MAX_CHECKS):
            if threshold <= 0:
                break
            traded, added = self._apply(threshold)
            if added <= budget:
                return Quantized(traded, codebook)
            threshold *= budget / added * 0.9  # the sample was optimistic: step down in proportion
        return Quantized(self._apply(0.0)[0], codebook)  # runs between equally near entries only

    def _apply(self, threshold: float) -> tuple[np.ndarray, int]:
        """The whole image scanned at threshold: (indices (H, W), added squared error)."""
        indices = self.quantized.indices
        out = np.empty(indices.size, dtype=indices.dtype)
        first = added = 0
        for segments in self._segments():
            chosen, extra = scan(segments, self.visible, threshold)
            out[first : first + segments.real] = _real(segments, chosen)
            first += segments.real
            added += extra
        return out.reshape(indices.shape), added

    def _sampled_error(self, threshold: float) -> float:
        """The added squared error at threshold, estimated from the sampled segments."""
        total = sum(scan(segments, self.visible, threshold)[1] for segments in self.sample)
        return total / self.sample_share

    def _threshold_for(self, budget: float) -> float:
        """The largest threshold (to within SEARCH_STEPS bisections of its log) whose sampled
        added error stays within budget; 0 when none does."""
        high = float(MAX_THRESHOLD)
        if self._sampled_error(high) <= budget:
            return high
        low, log_low, log_high = 0.0, 0.0, float(np.log2(high))
        for _ in range(SEARCH_STEPS):
            middle = (log_low + log_high) / 2
            if self._sampled_error(2.0**middle) <= budget:
                log_low, low = middle, 2.0**middle
            else:
                log_high = middle
        return low


def _real(segments: Segments, values: np.ndarray) -> np.ndarray:
    """(SEGMENT, m) values back in pixel order, without the padding."""
    return values.T.reshape(-1)[: segments.real]


def loss_budget(squared_error: float, pixels_channels: int, loss_db: float) -> float:
    """The squared error (summed) that may be added to squared_error so that PSNR drops by at
    most loss_db; 0 for an exact image (its PSNR is infinite, and it stays exact)."""
    if squared_error <= 0:
        return 0.0
    mse = squared_error / pixels_channels
    return max(0.0, mse * 10.0 ** (loss_db / 10.0) - mse) * pixels_channels


# k grows by this factor while a larger codebook with traded indices makes a smaller file: at
# equal PSNR a ~1.4x codebook whose extra precision is spent on runs was smallest on the Kodak set.
K_GROWTH = 1.4
MAX_GROWTH_STEPS = 3
# ... except from k in this range, where each try costs a full clustering for almost nothing:
# on the Kodak set (7 targets, 26-44 dB) a larger k made a smaller file in none of 17 searches
# from 128 to 255 entries (the indices outgrow a byte) and in 2 of 17 from 256 to 511, by at
# most 1.1 %; below 128, in 52 of 104 (up to 23 %); from 512, in 7 of 30 (up to 11 %).
NO_GROWTH = range(128, 512)


def smallest_for_psnr(
    image: RowSource, first: Quantized, psnr: float, quantize_k: Callable[[int], Quantized], size: Callable[[Quantized], tuple[int, Quantized]], limit: int
) -> Quantized | None:
    """Of traded results that reach psnr dB, the smallest file: `first` spends its margin on
    runs, then larger k (up to limit) while each makes a smaller file. size(quantized) is the
    coder's real byte count and the result to keep (which may carry the coded bytes). None if
    `first` itself falls short of psnr."""

    def traded(quantized: Quantized) -> tuple[int, Quantized] | None:
        trader = Trader(image, quantized)
        budget = mse_for_psnr(psnr) * trader.pixels_channels - trader.error
        if budget < 0:
            return None
        return size(trader.within(budget))

    start = traded(first)
    if start is None:
        return None
    best_size, best = start
    k = len(first.codebook)
    for _ in range(MAX_GROWTH_STEPS):
        larger = min(limit, round(k * K_GROWTH))
        if larger <= k or k in NO_GROWTH:
            break
        candidate = traded(quantize_k(larger))
        if candidate is None or candidate[0] >= best_size:
            break
        (best_size, best), k = candidate, larger
    return best
