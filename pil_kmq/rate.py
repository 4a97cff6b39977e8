"""Rate-optimized indices: trade a bounded amount of error for a smaller index stream.

The strip coder stores a pixel whose index equals the one before it (in pixel order) as a run
flag, almost free, and any other index as a literal, the bulk of a file. So pixels whose
nearest entries differ a little are better stored as one run of one entry. The scan below cuts
the pixels into runs in which each pixel adds at most `threshold` squared error (summed over
channels), each run on the entry, of those nearest its first few pixels, that reaches furthest;
thresholds are searched for a PSNR budget, and psnr= compares real encoded sizes across k.
near_rans strips code any of four neighbours' indices, and the colours nearest their
prediction, cheaply: for them NearTrader weighs each pixel's choices by the bits the coder's
model gives them. Either way the codebook then follows the choices (recentred). Knows nothing
of Pillow.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import NamedTuple

import numpy as np
from numba import njit

from . import jobs, near
from .format import StripMethod
from .quantize import Quantized, RowSource, mse_for_psnr

# Pixels scanned as one segment, in pixel order: a run never crosses a segment's start, so
# segments are independent (and every SAMPLE_EVERY-th of them a fair sample).
SEGMENT = 128
# A run's entry is chosen among the nearest entries of its first LOOKAHEAD pixels (read as
# scan runs: 1 is the first pixel's own entry; benchmarks/run_entry.py).
LOOKAHEAD = 4
BAND_PIXELS = 1 << 18  # pixels per band of rows: bounds the int32 temporaries (~5 MiB)
MAX_THRESHOLD = 4 * 255**2  # every run allowed: the most squared error a pixel can have
CACHED_PIXELS = 1 << 21  # images up to this size keep their segments or bands (up to ~17 bytes a pixel) between scans
SAMPLE_EVERY = 8  # threshold searches run on every 8th segment; segments are independent
SEARCH_STEPS = 8  # bisection steps on log2(threshold), which spans 0 to 17.6
MAX_CHECKS = 4  # full scans allowed to confirm a threshold found on the sample
# near_rans: the weight of a bit (in squared error) is searched on tiles of NEAR_TILE rows and
# columns, every SAMPLE_EVERY-th in raster order, or all of an image of at most
# NEAR_WHOLE_SAMPLE pixels; each tile is chosen below the row above it (its nearest entries),
# as the image's rows will be, and is wide, so that few pixels sit at its left edge, whose
# neighbours are not the image's; over log2(weight) from NEAR_WEIGHT_LOG[0] to [1]: at 2**12
# a pixel takes a neighbour's entry whatever its colour, at 2**-4 only an equally near one.
NEAR_TILE = (16, 1024)
NEAR_WHOLE_SAMPLE = 1 << 16
NEAR_WEIGHT_LOG = (-4.0, 12.0)
# The search runs on the sample, in log error against log weight: with the nearest indices'
# token costs it narrows the range's bracket until its low end adds NEAR_ROUGH of the target;
# with the costs of the indices chosen there (cheaper tokens trade more at the same weight) it
# steps from that weight by the slope seen (NEAR_MIN_STEP to NEAR_MAX_STEP octaves, slopes
# kept to NEAR_SLOPES) until it brackets the target again, then narrows to NEAR_CLOSE of it.
# Narrowing interpolates, kept NEAR_SAFE of the bracket away from its ends, for at most
# NEAR_STEPS sampled passes.
NEAR_ROUGH = 0.5
NEAR_CLOSE = 0.9
NEAR_STEPS = 6
NEAR_SAFE = 0.1
NEAR_MIN_STEP = 1 / 16
NEAR_MAX_STEP = 4.0
NEAR_SLOPES = (0.25, 8.0)
# The target is NEAR_GOAL of the budget, over the expected ratio of a full pass's net added
# error (once recentred) to the sample's added error at one weight: the sample's tiles start
# below rows of nearest indices, so choices cascade less far down them (more than 1), and
# recentring takes some error off (less than 1): 0.97 to 1.46 (10th to 90th percentile) on
# half the Kodak photos, median about NEAR_SAMPLE_SCALE, the first guess (a psnr= search's
# next k takes the last ratio seen, kept to NEAR_SCALES; a pass or sample that adds nothing
# shows no ratio). Half the first full passes then land within the window below; 1.7 full
# passes a k on those photos.
# A full pass that adds NEAR_ENOUGH of the budget or more (and no more than it) is kept; else
# the next weight is interpolated between passes that add too little and too much, or stepped
# by the slope seen, up to MAX_CHECKS full passes, of which the one adding most within the
# budget is kept.
NEAR_GOAL = 0.95
NEAR_SAMPLE_SCALE = 1.1
NEAR_SCALES = (0.25, 8.0)
NEAR_ENOUGH = 0.85
# A psnr= search's first k starts the weight search from a guess, NEAR_PRIOR[0] octaves from
# log2(channels x the target's MSE), with the slope NEAR_PRIOR[1]: where searches from the
# range's ends ended on half the Kodak photos at 26-41 dB (10th to 90th percentile -1.7 to
# -0.65 octaves; slopes 1.3 to 2.6). Each next k starts where the last ended (within an octave
# there). Both skip the rough first step: about 3 sampled passes a k instead of 9.
NEAR_PRIOR = (-1.25, 1.7)


class Segments(NamedTuple):
    """Pixels, nearest indices and their squared errors as (segments, SEGMENT) arrays: pixel
    order, padded to whole segments, so that a segment's pixels lie together."""

    pixels: np.ndarray  # (m, SEGMENT, C) int32
    nearest: np.ndarray  # (m, SEGMENT)
    error: np.ndarray  # (m, SEGMENT) int32
    real: int  # real pixels, the first ones (the last segment is padded by repeating the last pixel)


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
        np.empty((columns, SEGMENT, channels), dtype=np.int32), np.empty((columns, SEGMENT), dtype=nearest.dtype), np.empty((columns, SEGMENT), dtype=np.int32), count
    )
    _cut(np.ascontiguousarray(pixels), np.ascontiguousarray(nearest), codebook.astype(np.int32), channels in (2, 4), cut.pixels, cut.nearest, cut.error)
    return cut


@njit(cache=True, nogil=True)
def _cut(pixels, nearest, colors, alpha, out_pixels, out_nearest, out_error):
    # Position j of segment s is pixel s * SEGMENT + j; the last segment repeats the last pixel.
    columns, length, channels = out_pixels.shape
    count = pixels.shape[0]
    for s in range(columns):
        for j in range(length):
            i = min(s * length + j, count - 1)
            own = nearest[i]
            out_nearest[s, j] = own
            hidden = alpha and pixels[i, channels - 1] == 0  # a fully transparent colour is not seen
            total = 0
            for c in range(channels):
                value = 0 if hidden and c < channels - 1 else np.int32(pixels[i, c])
                out_pixels[s, j, c] = value
                difference = value - colors[own, c]
                total += difference * difference
            out_error[s, j] = total


def scan(segments: Segments, codebook: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """(indices (m, SEGMENT), added squared error): each segment cut into runs, left to right.
    A run takes, of the nearest entries of its first pixel and the next LOOKAHEAD - 1, the one
    that the most pixels from its first on take, each adding at most threshold to its squared
    error (ties: the least added error, then the earlier candidate). With alpha, a pixel takes
    only an entry of its own entry's alpha (transparent and opaque pixels stay exact)."""
    pixels, nearest, error = segments.pixels, segments.nearest, segments.error
    alpha = codebook[:, -1].astype(np.int32) if codebook.shape[1] in (2, 4) else np.zeros(0, dtype=np.int32)
    chosen = np.empty_like(nearest)
    added = _scan(pixels, nearest, error, codebook.astype(np.int32), alpha, int(min(threshold, MAX_THRESHOLD)), LOOKAHEAD, segments.real, chosen)
    return chosen, int(added)


@njit(cache=True, nogil=True)
def _scan(pixels: np.ndarray, nearest: np.ndarray, error: np.ndarray, colors: np.ndarray, alpha: np.ndarray, threshold: int, lookahead: int, real: int, chosen: np.ndarray) -> int:
    segments, segment = nearest.shape
    threshold = max(threshold, 0)  # a pixel's own entry always covers it: every run >= 1 pixel
    with_alpha = alpha.size > 0  # tested once: `alpha.size and ...` a pixel took most of the scan's time
    added = 0
    for s in range(segments):
        length = min(segment, real - s * segment)
        for j in range(max(0, length), segment):  # the padding keeps its own entry and adds nothing
            chosen[s, j] = nearest[s, j]
        first = 0
        while first < length:
            best, best_run, best_added = nearest[s, first], 0, 0
            for ahead in range(min(lookahead, length - first)):
                candidate = nearest[s, first + ahead]
                seen = False
                for before in range(ahead):
                    if nearest[s, first + before] == candidate:
                        seen = True
                if seen:
                    continue
                end, extra = first, 0
                while end < length:
                    if with_alpha and alpha[candidate] != alpha[nearest[s, end]]:
                        break
                    more = _added(pixels, error, colors, s, end, candidate)
                    if more > threshold:
                        break
                    extra += more
                    end += 1
                if end - first > best_run or (end - first == best_run and extra < best_added):
                    best, best_run, best_added = candidate, end - first, extra
            for j in range(first, first + best_run):  # a loop: a slice a run cost more than the scan
                chosen[s, j] = best
            added += best_added
            first += best_run
    return added


@njit(cache=True, nogil=True, inline="always")
def _added(pixels: np.ndarray, error: np.ndarray, colors: np.ndarray, s: int, j: int, entry: int) -> int:
    """The squared error pixel j of segment s adds by taking entry instead of its nearest."""
    distance = 0
    for c in range(pixels.shape[2]):
        difference = pixels[s, j, c] - colors[entry, c]
        distance += difference * difference
    return distance - error[s, j]


def _bands(image: RowSource, indices: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pixels (n, C), nearest indices (n,)) for each band of whole rows."""
    height, width, channels = image.shape
    rows = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows):
        pixels = np.asarray(image[top : top + rows]).reshape(-1, channels)
        yield pixels, indices[top : top + rows].reshape(-1)


@njit(cache=True, nogil=True)
def _add_sums(pixels: np.ndarray, chosen: np.ndarray, counts: np.ndarray, sums: np.ndarray) -> None:
    """Each entry's pixel count and channel sums: one pass (bincount's weights took 5x as long)."""
    for j in range(chosen.size):
        entry = chosen[j]
        counts[entry] += 1
        for channel in range(pixels.shape[1]):
            sums[entry, channel] += pixels[j, channel]


def recentred(image: RowSource, quantized: Quantized) -> tuple[Quantized, float]:
    """The codebook moved to the mean colour (rounded) of the pixels each entry stands for once
    indices were traded, and the squared error that takes off: the rounded mean is the integer
    colour with the least squared error over a fixed set of pixels, so the error only falls,
    for no bytes in runs (the Lloyd step of entropy-constrained k-means). Not with alpha, whose
    classes stay exact."""
    indices, codebook = quantized
    k, channels = codebook.shape
    if channels in (2, 4):
        return quantized, 0.0
    counts, sums = np.zeros(k, dtype=np.int64), np.zeros((k, channels), dtype=np.int64)
    for pixels, chosen in _bands(image, indices):
        _add_sums(pixels, chosen, counts, sums)
    return _moved(quantized, counts, sums)


def _moved(quantized: Quantized, counts: np.ndarray, sums: np.ndarray) -> tuple[Quantized, float]:
    """recentred's result from each entry's pixel count and channel sums (k, C)."""
    indices, codebook = quantized
    old = codebook.astype(np.float64)
    new = np.where(counts[:, None] > 0, np.rint(sums / np.maximum(counts, 1)[:, None]), old)
    # sum over an entry's pixels p of |p - c|^2 is |p|^2 - 2 c.S + n |c|^2: the |p|^2 cancel
    gain = float(np.sum(2 * (new - old) * sums) - np.sum(counts[:, None] * (new * new - old * old)))
    return Quantized(indices, new.astype(np.uint8)), gain


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
            pixels, nearest, error = (np.ascontiguousarray(part[::SAMPLE_EVERY]) for part in segments[:3])
            last = len(segments.nearest) - 1  # its padding is no pixel of the image, sampled or not
            padding = (last + 1) * SEGMENT - segments.real if last % SAMPLE_EVERY == 0 else 0
            self.sample.append(Segments(pixels, nearest, error, nearest.size - padding))
            if self.cached is not None:
                self.cached.append(segments)
        self.sample_share = sum(part.nearest.size for part in self.sample) / max(1, indices.size)

    def _cut(self) -> Iterator[Segments]:
        for pixels, nearest in _bands(self.image, self.quantized.indices):
            yield _segments(pixels, nearest, self.visible)

    def _segments(self) -> Iterable[Segments]:
        return self._cut() if self.cached is None else self.cached

    def within(self, budget: float) -> Quantized:
        """Indices chosen to make runs, with the codebook recentred on them (recentred), that add
        at most `budget` squared error (summed over pixels and channels) to the nearest-entry
        ones."""
        codebook = self.quantized.codebook
        if len(codebook) < 2 or budget <= 0:
            return self.quantized
        threshold = self._threshold_for(budget)
        for _ in range(MAX_CHECKS):
            if threshold <= 0:
                break
            traded, added = self._apply(threshold)
            moved, gain = recentred(self.image, Quantized(traded, codebook))
            if added - gain <= budget:  # the error the file will have
                return moved
            threshold *= budget / added * 0.9  # the sample was optimistic: step down in proportion
        return recentred(self.image, Quantized(self._apply(0.0)[0], codebook))[0]  # runs between equally near entries only

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


class NearTrader:
    """An image's pixels and nearest-entry indices, ready to trade error for the bits of
    near_rans strips at any budget: where runs see only the left neighbour, near_rans codes any
    of four neighbours' entries in few bits, so each pixel takes the cheapest of its nearest
    entry, its neighbours' entries and the first entries of their colour order (near.choose),
    counting squared error plus a weight times the bits its symbol costs in its context (Chou,
    Lookabaugh and Gray's entropy-constrained choice, with the coder's own model). Tiles and
    bands are each chosen as a strip of their own, so the result does not depend on how many
    workers choose them. Same interface as Trader."""

    def __init__(self, image: RowSource, quantized: Quantized) -> None:
        self.image, self.quantized = image, quantized
        indices, codebook = quantized
        self.visible = _visible(codebook)
        self.palette = near.Palette(codebook)
        self.pixels_channels = indices.size * codebook.shape[1]
        self.sample: list[tuple[np.ndarray, np.ndarray, int]] = list(self._tiles())
        self.sample_share = sum(nearest[kept:].size for _, nearest, kept in self.sample) / indices.size
        self.points: dict[float, float] = {}  # the sample's added error by log weight, for the costs in use
        self.cached: list[list[tuple[int, np.ndarray, np.ndarray]]] | None = None
        self.scale = NEAR_SAMPLE_SCALE
        self.start: tuple[float, float] | None = None
        self.error = 0
        for batch in self._batches():
            self.error += sum(jobs.run_jobs(_squared_error, [(pixels, self.visible, nearest) for _, pixels, nearest in batch]))

    def _tiles(self) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
        """The sample: every SAMPLE_EVERY-th tile of NEAR_TILE, in raster order of tiles (every
        tile of a small image), as (visible pixels int32, nearest, rows kept), from the row
        above it if there is one (kept: 1, its neighbours only)."""
        indices, codebook = self.quantized
        height, width = indices.shape
        tile_rows, tile_columns = NEAR_TILE
        across = -(-width // tile_columns)
        every = 1 if indices.size <= NEAR_WHOLE_SAMPLE else SAMPLE_EVERY
        for number, top in enumerate(range(0, height, tile_rows)):
            lefts = [left for left in range(0, width, tile_columns) if (number * across + left // tile_columns) % every == 0]
            if lefts:
                above = max(0, top - 1)
                band = _seen(np.asarray(self.image[above : top + tile_rows]), codebook)
                for left in lefts:
                    yield band[:, left : left + tile_columns].copy(), indices[above : top + tile_rows, left : left + tile_columns], top - above

    def _batches(self) -> Iterator[list[tuple[int, np.ndarray, np.ndarray]]]:
        """Bands of even heights (about BAND_PIXELS each, however many workers), a batch of a
        worker's each at a time (bounding the int32 pixels held), as (top, visible pixels
        (rows, width, C) int32, nearest (rows, width)). An image of at most CACHED_PIXELS keeps
        them from one pass to the next: making them took a quarter of a pass's time."""
        if self.cached is not None:
            yield from self.cached
            return
        indices, codebook = self.quantized
        height, width = indices.shape
        rows = -(-height // -(-height * width // BAND_PIXELS))
        tops = iter(range(0, height, rows))
        keep = [] if indices.size <= CACHED_PIXELS else None
        while batch := list(islice(tops, jobs.WORKERS)):
            made = [(top, _seen(np.asarray(self.image[top : top + rows]), codebook), indices[top : top + rows]) for top in batch]
            if keep is not None:
                keep.append(made)
            yield made
        self.cached = keep

    def within(self, budget: float, scale: float = NEAR_SAMPLE_SCALE, start: tuple[float, float] | None = None) -> Quantized:
        """Indices chosen for fewer near_rans bits, with the codebook recentred on them
        (recentred), that add at most `budget` squared error (summed over pixels and channels)
        to the nearest-entry ones.
        `scale`: the expected ratio of a full pass's net added error (once recentred) to the
        sample's added error at one weight (NEAR_SAMPLE_SCALE); afterwards self.scale holds
        the ratio this image's first full pass showed, or `scale` if it showed none.
        `start`: (log weight, slope) to begin the weight search from (_search); afterwards
        self.start holds those of the full pass kept, for the next k (None if none was)."""
        codebook = self.quantized.codebook
        self.scale, self.start = scale, None
        if len(codebook) < 2 or budget <= 0:
            return self.quantized
        goal = budget * NEAR_GOAL
        found = self._search(goal / scale, start)
        if found is None:
            return self.quantized
        costs, (log_weight, sampled), slope = found
        best, best_net = self.quantized, None
        passes: list[tuple[float, float]] = []  # (log weight, log net added) of the full passes
        for _ in range(MAX_CHECKS):
            traded, added, counts, sums = self._apply(costs, log_weight)
            moved, gain = (Quantized(traded, codebook), 0.0) if counts is None else _moved(Quantized(traded, codebook), counts, sums)
            net = added - gain  # the error added once the codebook follows the choices
            if not passes and net > 0 and sampled > 0:
                self.scale = float(np.clip(net / max(1.0, sampled), *NEAR_SCALES))
            if net <= budget and (best_net is None or net > best_net):
                best, best_net, self.start = moved, net, (log_weight, slope)
            if NEAR_ENOUGH * budget <= net <= budget:
                break
            passes.append((log_weight, float(np.log2(max(1.0, net)))))
            log_weight = _next_log_weight(passes, float(np.log2(goal)), float(np.log2(budget)), slope)
        return best

    def _search(self, target: float, start: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[float, float], float] | None:
        """On the sample: (costs, (log weight, its added error) close below target, the local
        slope of log error against log weight), or None when even the least weight adds too
        much. First with the nearest indices' token costs over the whole range, then with the
        costs of the indices chosen there (cheaper tokens trade more at the same weight).
        `start`: (log weight, slope) to begin from instead (NEAR_PRIOR): the costs are taken
        from the choices there, and the first step is skipped."""
        costs = near.token_costs([nearest for _, nearest, _ in self.sample], self.palette)
        self.points.clear()
        started = start is not None
        if start is None:
            low, high = ((log, self._sampled_error(costs, log)) for log in NEAR_WEIGHT_LOG)
            if high[1] <= target:
                return costs, high, 1.0
            if low[1] > target:
                return None
            low, high = self._close_in(target, costs, low, high, NEAR_ROUGH)
            start = low[0], _slope(low, high)
        log_weight, slope = float(np.clip(start[0], *NEAR_WEIGHT_LOG)), start[1]
        costs = near.token_costs(self._choose_tiles(self.sample, self._prices(costs, log_weight))[0], self.palette)
        self.points.clear()
        bracket = self._bracket(target, costs, log_weight, slope)
        if bracket[1] is None:
            return costs, bracket[0], 1.0
        if started and bracket[0][1] > target:  # even the range's least weight adds too much
            return None
        low, high = self._close_in(target, costs, *bracket, NEAR_CLOSE)
        return costs, low, _slope(low, high)

    def _bracket(self, target: float, costs: np.ndarray, log_weight: float, slope: float) -> tuple[tuple[float, float], tuple[float, float] | None]:
        """Sampled points (low, high) around target from log_weight, stepping by the slope's
        guess (doubled each time it falls short); high None when the range's top still fits,
        and low the range's bottom if even that does not."""
        point = (log_weight, self._sampled_error(costs, log_weight))
        while True:
            step = (np.log2(target) - np.log2(max(1.0, point[1]))) / slope
            step = float(np.clip(step, -NEAR_MAX_STEP, NEAR_MAX_STEP))
            step = step if abs(step) >= NEAR_MIN_STEP else np.copysign(NEAR_MIN_STEP, step)
            log_next = float(np.clip(point[0] + step, *NEAR_WEIGHT_LOG))
            if log_next == point[0]:  # at an end of the range
                return (point, None) if point[1] <= target else (point, point)
            following = (log_next, self._sampled_error(costs, log_next))
            if (point[1] <= target) != (following[1] <= target):
                return (point, following) if point[1] <= target else (following, point)
            point, slope = following, slope / 2

    def _close_in(self, target: float, costs: np.ndarray, low: tuple[float, float], high: tuple[float, float], close: float) -> tuple[tuple[float, float], tuple[float, float]]:
        """Narrow a bracket (low adds at most target, high more) by interpolating log error on
        log weight, until low adds at least close * target or NEAR_STEPS sampled passes."""
        for _ in range(NEAR_STEPS):
            if low[1] >= close * target or high[0] - low[0] <= NEAR_MIN_STEP:
                break
            log_low = np.log2(max(1.0, low[1]))
            rise = np.log2(max(1.0, high[1])) - log_low
            share = (np.log2(max(1.0, target)) - log_low) / rise if rise > 0 else 0.5  # flat below 1: halve
            share = float(np.clip(share, NEAR_SAFE, 1 - NEAR_SAFE))  # keeps shrinking the bracket where the curve bends
            log_weight = low[0] + share * (high[0] - low[0])
            point = (log_weight, self._sampled_error(costs, log_weight))
            low, high = (point, high) if point[1] <= target else (low, point)
        return low, high

    def _prices(self, costs: np.ndarray, log_weight: float) -> np.ndarray:
        return near.prices(costs, 2.0**log_weight, len(self.quantized.codebook))

    def _choose_tiles(self, tiles: list[tuple[np.ndarray, np.ndarray, int]], price: np.ndarray) -> tuple[list[np.ndarray], int]:
        """Each sampled tile chosen as a strip of its own: (the choices, added squared error)."""
        chosen = [np.empty_like(nearest) for _, nearest, _ in tiles]
        added = sum(near.choose(pixels, self.visible, nearest, self.palette, price, out, kept) for (pixels, nearest, kept), out in zip(tiles, chosen, strict=True))
        return chosen, added

    def _apply(self, costs: np.ndarray, log_weight: float) -> tuple[np.ndarray, int, np.ndarray | None, np.ndarray | None]:
        """The whole image chosen at weight 2**log_weight: (indices (H, W), added squared error,
        and without alpha each entry's pixel count and channel sums, for recentring: counted as
        the pixels are chosen, they cost no pass of their own)."""
        out = np.empty_like(self.quantized.indices)
        k, channels = self.visible.shape
        price = self._prices(costs, log_weight)
        alpha = channels in (2, 4)  # not recentred, so nothing to tally (recentred)
        added, tallies = 0, []
        for batch in self._batches():
            jobs_list = []
            for top, pixels, nearest in batch:
                tally = None if alpha else (np.zeros(k, dtype=np.int64), np.zeros((k, 4), dtype=np.int64))
                tallies.append(tally)
                jobs_list.append((pixels, self.visible, nearest, self.palette, price, out[top : top + len(nearest)], 0, tally))
            added += sum(jobs.run_jobs(near.choose, jobs_list))
        if alpha:
            return out, added, None, None
        counts = sum(tally[0] for tally in tallies)
        sums = sum(tally[1] for tally in tallies)[:, :channels]
        return out, added, counts, sums

    def _sampled_error(self, costs: np.ndarray, log_weight: float) -> float:
        """The added squared error at weight 2**log_weight, estimated from the sample (split
        among the workers: the sum is the same however it is split); kept in self.points while
        the costs stay the same."""
        if log_weight not in self.points:
            parts = [self.sample[part :: jobs.WORKERS] for part in range(jobs.WORKERS)]
            price = self._prices(costs, log_weight)
            done = jobs.run_jobs(self._choose_tiles, [(part, price) for part in parts if part])
            self.points[log_weight] = sum(added for _, added in done) / self.sample_share
        return self.points[log_weight]


def _slope(low: tuple[float, float], high: tuple[float, float]) -> float:
    """d log error / d log weight between two sampled points, kept to NEAR_SLOPES."""
    rise = np.log2(max(1.0, high[1])) - np.log2(max(1.0, low[1]))
    return float(np.clip(rise / max(high[0] - low[0], 1e-9), *NEAR_SLOPES))


def _next_log_weight(passes: list[tuple[float, float]], log_goal: float, log_budget: float, slope: float) -> float:
    """The next full pass's log weight, from the full passes so far ((log weight, log added)):
    between the nearest that added too little and too much, interpolated; else stepped from
    the last by the slope of the last two on its side (the sample's slope if there is one)."""
    under = [point for point in passes if point[1] < log_budget]
    over = [point for point in passes if point[1] > log_budget]
    if under and over:
        low, high = max(under), min(over)
        if high[1] > low[1] and high[0] > low[0]:
            return low[0] + (log_goal - low[1]) / (high[1] - low[1]) * (high[0] - low[0])
    side = under or over
    if len(side) >= 2:
        (w0, e0), (w1, e1) = side[-2], side[-1]
        if w1 != w0 and (e1 - e0) / (w1 - w0) > 0:
            slope = float(np.clip((e1 - e0) / (w1 - w0), *NEAR_SLOPES))
    log_weight, log_added = passes[-1]
    return log_weight + float(np.clip((log_goal - log_added) / slope, -NEAR_MAX_STEP, NEAR_MAX_STEP))


def _seen(pixels: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """(rows, width, C) pixels as int32, as psnr= sees them: with alpha, a fully transparent
    pixel's colour channels are 0 (see _visible)."""
    seen = pixels.reshape(pixels.shape[0], pixels.shape[1], codebook.shape[1]).astype(np.int32)
    if codebook.shape[1] in (2, 4):
        seen[..., :-1][seen[..., -1] == 0] = 0
    return seen


def _squared_error(pixels: np.ndarray, visible: np.ndarray, indices: np.ndarray) -> int:
    return int(_sum_squares(pixels, visible.astype(np.int32), indices))


@njit(cache=True, nogil=True)
def _sum_squares(pixels: np.ndarray, visible: np.ndarray, indices: np.ndarray) -> int:
    """Sum over pixels (rows, width, C) and channels of (pixel - visible[index])^2: one pass
    with no temporaries (numpy's gather and einsum took ~3x as long)."""
    total = 0
    for y in range(indices.shape[0]):
        for x in range(indices.shape[1]):
            entry = indices[y, x]
            for c in range(pixels.shape[2]):
                step = pixels[y, x, c] - visible[entry, c]
                total += step * step
    return total


def trader_for(image: RowSource, quantized: Quantized, method: StripMethod | None) -> Trader | NearTrader:
    """The trade that suits the strips the indices go to: near coding's (while it orders colours
    by colour, up to COLOUR_ORDER_K entries; priced by near_rans's tokens, which near_flat's
    are but for its flat stretches, where a choice costs little either way) or runs'."""
    if method == StripMethod.NEAR_FLAT and len(quantized.codebook) <= near.COLOUR_ORDER_K:
        return NearTrader(image, quantized)
    return Trader(image, quantized)


def _real(segments: Segments, values: np.ndarray) -> np.ndarray:
    """(m, SEGMENT) values back in pixel order, without the padding."""
    return values.reshape(-1)[: segments.real]


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
# most 1.1 %; below 128, in 52 of 104 (up to 23 %); from 512, in 7 of 30 (up to 11 %). With
# near_rans above 256 entries (KMQ 1.6) the byte boundary no longer matters, but growing from
# these k still made no near file smaller (four Kodak photos at 38 and 41 dB, k of 164-672).
NO_GROWTH = range(128, 512)


def smallest_for_psnr(
    image: RowSource,
    first: Quantized,
    psnr: float,
    quantize_k: Callable[[int], Quantized],
    size: Callable[[Quantized], tuple[int, Quantized]],
    limit: int,
    method: StripMethod | None = StripMethod.RUNS_ZSTD,
    ahead: Callable[[int], None] | None = None,
    untraded: Callable[[Quantized], tuple[int, Quantized] | None] | None = None,
) -> Quantized | None:
    """Of traded results that reach psnr dB, the smallest file: `first` spends its margin on
    what `method`'s strips store cheaply (trader_for), then larger k (up to limit) while each
    makes a smaller file. size(quantized) is the coder's real byte count and the result to keep
    (which may carry the coded bytes). None if `first` itself falls short of psnr. ahead(k),
    if given, is told the first larger k before `first` is traded: it is always tried, and
    quantize_k(k) may be started early. untraded(quantized), if given, is a k's nearest indices
    as a k= save writes them (real bytes and result), or None where not worth trying; with runs
    it stands in for the trade where it makes no larger file."""

    # near_rans: the full passes' ratio to the sample, and where the weight search starts: the
    # guess from the target (NEAR_PRIOR), then where the last k's ended
    scale = NEAR_SAMPLE_SCALE
    channels = first.codebook.shape[1]
    resume = (float(np.log2(max(1.0, channels * mse_for_psnr(psnr)))) + NEAR_PRIOR[0], NEAR_PRIOR[1])

    def traded(quantized: Quantized) -> tuple[int, Quantized] | None:
        nonlocal scale, resume
        trader = trader_for(image, quantized, method)
        budget = mse_for_psnr(psnr) * trader.pixels_channels - trader.error
        if budget < 0:
            return None
        if isinstance(trader, Trader):
            found = size(trader.within(budget))
            plain = None if untraded is None else untraded(quantized)
            return plain if plain is not None and plain[0] <= found[0] else found
        result = trader.within(budget, scale, resume)
        scale, resume = trader.scale, trader.start or resume
        return size(result)

    def grown(k: int) -> int | None:
        larger = min(limit, round(k * K_GROWTH))
        return None if larger <= k or k in NO_GROWTH else larger

    k = len(first.codebook)
    if ahead is not None and MAX_GROWTH_STEPS and (larger := grown(k)) is not None:
        ahead(larger)
    start = traded(first)
    if start is None:
        return None
    best_size, best = start
    for _ in range(MAX_GROWTH_STEPS):
        larger = grown(k)
        if larger is None:
            break
        candidate = traded(quantize_k(larger))
        if candidate is None or candidate[0] >= best_size:
            break
        (best_size, best), k = candidate, larger
    return best
