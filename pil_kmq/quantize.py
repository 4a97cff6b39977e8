"""Colour clustering: pixels in, a uint8 codebook and one index per pixel out. Knows nothing of files.

k-means over all pixels is the same objective as weighted k-means over the colour histogram,
which a photo keeps ~10-40x smaller. So: the histogram; coarser histograms of its colours
merged into cubes (weighted means); k-means++ seeds on the coarsest (the best of a few for
small k) and weighted Lloyd iterations level by level down to the exact histogram, each
warm-started from the last and accelerated with Hamerly-style bounds; round to uint8; give
every colour its exact nearest rounded entry; gather per pixel through a lookup table.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, Protocol

import numpy as np

from . import kmeans, radix
from .format import index_dtype
from .jobs import in_pool, run_jobs

# Pixels per strip when computing colour keys: bounds temporaries at any image size.
_STRIP_PIXELS = 1 << 20
# The coarsest level has at most max(MIN, FACTOR * k) points: finer seeds k-means++ better,
# coarser is cheaper. These and the iteration caps below were chosen on the Kodak set
# (benchmarks/README.md).
_COARSE_MIN, _COARSE_FACTOR = 8192, 32
_N_INIT, _N_INIT_MAX_K = 5, 64  # three for k <= 16 left a Kodak photo 0.85 % worse at k = 2
_LEVEL_STEP = 2  # a level must be at least this many times smaller than the next finer one
_FIRST_SHIFT = 2  # cubes of 2 x 2 x 2 rarely halve a photo's colours: not worth a level
_HEAVY_FACTOR = 4  # cubes holding more pixels than this many average clusters are cut (_Made)
_KPP_MAX_K = 1024  # above this k, k-means++'s k x n cost is too high: weighted random seeds
_TOL = 1e-4  # scikit-learn's default tol, as the seed article ran it
_COARSE_MAX_ITER = 100
_LEVEL_MAX_ITER = 300  # the seed article's max_iter
# The exact level starts near convergence; its long tail gains ~0.1 %: up to 40 steps, fewer
# (down to 20) where many colours make each step dear (a JPEG photo has ~100,000).
_EXACT_MIN_ITER, _EXACT_MAX_ITER = 20, 40
_EXACT_POINT_STEPS = 1 << 21
_DENSE_CUBES = 1 << 22  # cube key spaces up to this size are counted in a dense table
# Up to this k a k-means codebook is put in path order (_along_path). Above, near_rans ranks
# entries by index distance, and the path made Kodak photos at K = 2,048 2 % larger near, the
# seeds' order being drawn from coarse cubes to fine (held out, the path made photos 2 %
# smaller: mixed, and the tuning set decides).
PATH_MAX_K = 1024
_ESTIMATE_MAX_ITER = 20  # Lloyd steps of a psnr= estimate: it only has to bound the error
_PSNR_K_PRECISION = 32  # psnr= searches k to within 1/32 of itself
_ESTIMATE_K_PRECISION = 16  # ... the estimates to within 1/16 (full clusterings refine it)
_ROUGH_K_PRECISION = 4  # ... or to within 1/4 when a caller goes on to try larger k anyway
_PSNR_GROWTH = 1.05  # k grows by this factor when a checked result falls short
_PSNR_MAX_STEPS = 8  # full clusterings spent closing in on the smallest k
_NO_ENTRY_PENALTY = 2.0  # partial colours without entries of their own: ~ twice one entry's error


class Quantized(NamedTuple):
    """The article's pair: `indices` (one per pixel) and the `codebook` they point into."""

    indices: np.ndarray
    codebook: np.ndarray


class Histogram(NamedTuple):
    """Distinct colours of an image, sorted by key, with their pixel counts."""

    keys: np.ndarray  # (n,) uint32: channels packed big-endian, 8 bits each
    colors: np.ndarray  # (n, C) uint8
    counts: np.ndarray  # (n,) int64


def color_keys(pixels: np.ndarray) -> np.ndarray:
    """Pack (N, C) uint8 pixels, C <= 4, into one uint32 per pixel (first channel highest)."""
    keys = np.zeros(len(pixels), dtype=np.uint32)
    for channel in range(pixels.shape[1]):
        keys <<= 8
        keys |= pixels[:, channel]
    return keys


def _unpack_keys(keys: np.ndarray, channels: int) -> np.ndarray:
    shifts = np.arange(channels - 1, -1, -1, dtype=np.uint32) * 8
    return ((keys[:, None] >> shifts) & 0xFF).astype(np.uint8)


class RowSource(Protocol):
    """An (height, width, channels) uint8 image that can be read by row strips: a numpy array,
    a memmap, or an adapter over another store (the Pillow plugin reads an Image this way)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, rows: slice) -> Any: ...


def _strips(image: RowSource) -> Iterator[tuple[int, np.ndarray]]:
    """(first pixel, pixels (n, C)) for each strip of rows: bounds temporaries at any image size."""
    height, width, channels = image.shape
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        strip = np.asarray(image[top : top + rows])
        if strip.dtype != np.uint8:
            raise ValueError(f"image must hold uint8 values, not {strip.dtype}")
        yield top * width, strip.reshape(-1, channels)


def histogram(image: RowSource) -> Histogram:
    """The colour histogram of an (H, W, C) uint8 image, strip by strip: each strip's keys
    sorted and counted (radix.py), then the strips' counts merged."""
    channels = image.shape[2]
    counts = _Counts()
    for _, pixels in _strips(image):
        counts.add(radix.strip_counts(color_keys(pixels), 8 * channels))
    keys, totals = counts.merged()
    return Histogram(keys, _unpack_keys(keys, channels), totals)


def streaming_histogram(image: RowSource, release: Callable[[int, int], None] | None = None) -> Histogram:
    """histogram(), in memory bounded by the colour count instead of the pixel count: strip by
    strip, into a dense table of counts for <= 3 channels (2**24 for RGB), else merged as
    histogram() merges. release(top, bottom) is called after each strip is read."""
    _, width, channels = image.shape
    dense = np.zeros(1 << (8 * channels), dtype=np.int64) if channels <= 3 else None
    counts = _Counts()
    for first, pixels in _strips(image):
        strip = radix.strip_counts(color_keys(pixels), 8 * channels)
        if release is not None:
            release(first // width, (first + len(pixels)) // width)
        if dense is not None:
            dense[strip[0]] += strip[1]
        else:
            counts.add(strip)
    if dense is not None:
        keys = np.flatnonzero(dense).astype(np.uint32)
        return Histogram(keys, _unpack_keys(keys, channels), dense[keys])
    keys, totals = counts.merged()
    return Histogram(keys, _unpack_keys(keys, channels), totals)


class _Counts:
    """Sorted (keys, counts) runs merged as they come, runs of about equal size first (as in
    a merge sort): many strips of distinct colours cost n log n, not strips x colours, and the
    runs waiting hold at most about twice the largest of them."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, run: tuple[np.ndarray, np.ndarray]) -> None:
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            self._merge_last()

    def merged(self) -> tuple[np.ndarray, np.ndarray]:
        while len(self._runs) > 1:
            self._merge_last()
        return self._runs[0] if self._runs else (np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=np.int64))

    def _merge_last(self) -> None:
        last = self._runs.pop()
        self._runs[-1] = radix.merge_counts(self._runs[-1], last)


def nearest_index(colors: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of each colour's nearest codebook entry (squared distance, ties to the lowest index)."""
    return kmeans.exact_nearest(colors, codebook)


class Level(NamedTuple):
    """The histogram merged into cells (cubes, see _Made): one weighted-mean point per cell."""

    points: np.ndarray  # (m, C) float64: weighted mean colour of the cell
    weights: np.ndarray  # (m,) float64: pixels in the cell
    member: np.ndarray  # (n,) intp: the cell of each histogram colour


def _cube_keys(colors: np.ndarray, shift: int | np.ndarray) -> np.ndarray:
    """Each colour's cube of 2**shift per side (shift: one for all, or one per colour) as
    (8 - shift) bits a channel, first channel highest."""
    shift = np.asarray(shift, dtype=np.uint64)
    keys = np.zeros(len(colors), dtype=np.uint64)
    for channel in range(colors.shape[1]):
        keys = (keys << (np.uint64(8) - shift)) | (colors[:, channel].astype(np.uint64) >> shift)
    return keys


def _cube_members(hist: Histogram, shift: int) -> tuple[np.ndarray, int]:
    """Each histogram colour's cube number at this shift, numbered in key order, and the cube count."""
    cube_keys = _cube_keys(hist.colors, shift)
    space = 1 << (hist.colors.shape[1] * (8 - shift))
    if space > _DENSE_CUBES:
        cubes, member = np.unique(cube_keys, return_inverse=True)
        return member.ravel(), len(cubes)
    present = np.zeros(space, dtype=bool)  # a dense table beats sorting for small key spaces
    present[cube_keys] = True
    number = np.cumsum(present, dtype=np.intp) - 1
    return number[cube_keys], int(number[-1]) + 1


def _cube_masses(hist: Histogram, rows: np.ndarray, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """For these histogram rows: each one's cube among their cubes at this shift, and the pixels of each cube."""
    _, inverse = np.unique(_cube_keys(hist.colors[rows], shift), return_inverse=True)
    inverse = inverse.ravel()
    return inverse, np.bincount(inverse, weights=hist.counts[rows])


def _level(hist: Histogram, shift: int, cells: tuple[np.ndarray, int]) -> Level:
    colors = hist.colors.astype(np.float64)
    weights = hist.counts.astype(np.float64)
    if shift == 0:
        return Level(colors, weights, np.arange(len(colors)))
    member, size = cells
    mass = np.bincount(member, weights=weights, minlength=size)
    sums = np.stack([np.bincount(member, weights=colors[:, c] * weights, minlength=size) for c in range(colors.shape[1])], axis=1)
    return Level(sums / mass[:, None], mass, member)


class _Made:
    """The cube levels of one histogram, each made once: a psnr= search estimates many k from
    the same few cube sizes. Also the error of the colours around their cube means.

    A level's cells are the cubes of 2**shift per side, except that a cube holding more than
    _HEAVY_FACTOR times the pixels of an average cluster (total / k, k rounded down to a power
    of two) is cut into its eight half-size cubes, and so on down to single colours: a
    level's points can only be split between centroids where the level has points, and a
    dark sky or a flat background of a few heavy cubes needs many centroids (a photo of the
    deep sky, its dark colours in a handful of cubes of 8 per side, came out 9 % worse than
    clustering all colours)."""

    def __init__(self, hist: Histogram) -> None:
        self.hist = hist
        self._total = float(hist.counts.sum())
        self._members: dict[int, tuple[np.ndarray, int]] = {}
        self._masses: dict[int, np.ndarray] = {}
        self._cells: dict[tuple[int, float], tuple[np.ndarray, int]] = {}
        self._levels: dict[tuple[int, float], Level] = {}
        self._within: dict[tuple[int, float], float] = {}
        self._fits: dict[tuple[int, int], kmeans.Fit] = {}
        self._tolerance: float | None = None

    def _cubes(self, shift: int) -> tuple[np.ndarray, int]:
        if shift not in self._members:
            self._members[shift] = (np.arange(len(self.hist.keys)), len(self.hist.keys)) if shift == 0 else _cube_members(self.hist, shift)
        return self._members[shift]

    def _key(self, shift: int, k: int) -> tuple[int, float]:
        """(shift, heavy-cube limit): the exact level (shift 0) is the same for every k. k is
        rounded down to a power of two: a psnr= search's estimates at nearby k share levels."""
        return shift, _HEAVY_FACTOR * self._total / (1 << (int(k).bit_length() - 1)) if shift else 0.0

    def cells(self, shift: int, k: int) -> tuple[np.ndarray, int]:
        """Each colour's cell at this level (numbered from 0) and the cell count."""
        key = self._key(shift, k)
        if key not in self._cells:
            self._cells[key] = self._split_heavy(*key)
        return self._cells[key]

    def _split_heavy(self, shift: int, limit: float) -> tuple[np.ndarray, int]:
        member, size = self._cubes(shift)
        if shift == 0:
            return member, size
        if shift not in self._masses:
            self._masses[shift] = np.bincount(member, weights=self.hist.counts, minlength=size)
        split = np.flatnonzero(self._masses[shift][member] > limit)
        if not len(split):
            return member, size
        # The few colours of heavy cubes, cut cube by cube; a cube is no heavier than the one around it.
        cell_shift = np.full(len(split), shift, dtype=np.uint64)
        heavy = np.arange(len(split))
        for finer in range(shift - 1, -1, -1):
            cell_shift[heavy] = finer
            if not finer:
                break
            inverse, mass = _cube_masses(self.hist, split[heavy], finer)
            heavy = heavy[mass[inverse] > limit]
            if not len(heavy):
                break
        keys = (_cube_keys(self.hist.colors[split], cell_shift) << np.uint64(3)) | cell_shift
        _, finer_cell = np.unique(keys, return_inverse=True)
        kept = np.ones(size, dtype=bool)
        kept[member[split]] = False  # a heavy cube is cut whole: nothing is left in it
        number = np.cumsum(kept, dtype=np.intp) - 1
        cells = number[member]
        base = int(number[-1]) + 1
        cells[split] = base + finer_cell.ravel()
        return cells, base + int(finer_cell.max()) + 1

    def level(self, shift: int, k: int) -> Level:
        key = self._key(shift, k)
        if key not in self._levels:
            self._levels[key] = _level(self.hist, shift, self.cells(shift, k))
        return self._levels[key]

    def coarse_run(self, k: int, seed: int, max_iter: int) -> tuple[Level, kmeans.Fit]:
        """Seeds (_seeds) on the coarsest level for k, then Lloyd steps until they converge or
        max_iter in all: (level, fit; fit.steps counts them all). A run cut short earlier (a
        psnr= search's estimate at this k) is carried on, not repeated: the same steps, but
        that a centroid left without points may land elsewhere (bounds, not distances, pick
        where). A run taken further already is returned as it is."""
        level, seed = self.level(_level_shifts(self, k)[0], k), seed % 2**32  # scikit-learn takes seeds below 2**32: so do we
        if (k, seed) not in self._fits:
            seeds = _seeds(level, k, seed)
            self._fits[k, seed] = kmeans.Fit(seeds, kmeans.initial_labels(level.points, seeds), None, 0, False)
        fit = self._fits[k, seed]
        if not fit.converged and fit.steps < max_iter:
            # lloyd() updates bounds in place: the fit handed out before keeps its own.
            bounds = None if fit.bounds is None else kmeans.Bounds(*(np.copy(field) for field in fit.bounds))
            more = kmeans.lloyd(level.points, level.weights, fit.centroids, fit.labels, max_iter - fit.steps, self.tolerance(), bounds)
            self._fits[k, seed] = fit = more._replace(steps=fit.steps + more.steps)
        return level, fit

    def tolerance(self) -> float:
        """_tolerance of the exact level, the same for every k and seeding: computed once."""
        if self._tolerance is None:
            self._tolerance = _tolerance(self.level(0, 1))
        return self._tolerance

    def within(self, shift: int, k: int) -> float:
        key = self._key(shift, k)
        if key not in self._within:
            level = self.level(shift, k)
            self._within[key] = float(((_visible_colors(self.hist) - level.points[level.member]) ** 2).sum(axis=1) @ self.hist.counts)
        return self._within[key]


def _level_shifts(made: _Made, k: int) -> list[int]:
    """Cube shifts of the coarse-to-fine levels, ending with 0 (the exact histogram), each
    level >= _LEVEL_STEP times smaller than the next."""
    limit = max(_COARSE_MIN, _COARSE_FACTOR * k)
    shifts, coarsest = [0], len(made.hist.keys)
    for shift in range(_FIRST_SHIFT, 8):
        if coarsest <= limit:
            break
        cubes = made.cells(shift, k)[1]
        if cubes <= k:
            break
        if cubes * _LEVEL_STEP <= coarsest:
            shifts.insert(0, shift)
            coarsest = cubes
    return shifts


def _levels(made: _Made, k: int) -> list[Level]:
    return [made.level(shift, k) for shift in _level_shifts(made, k)]


def _child_start(parent: Level, child: Level, fit: kmeans.Fit) -> tuple[np.ndarray, kmeans.Bounds]:
    """Each point of the next finer level starts with the label and bounds of the cube it lies
    in (kmeans.descend): most then need no search in the finer level's first step."""
    parent_of = np.empty(len(child.points), dtype=np.intp)
    parent_of[child.member] = parent.member
    return kmeans.descend(fit, parent.points, child.points, parent_of)


def _level_error(level: Level, centroids: np.ndarray, labels: np.ndarray) -> float:
    return float(((level.points - centroids[labels]) ** 2).sum(axis=1) @ level.weights)


def _seeds(level: Level, k: int, seed: int) -> np.ndarray:
    """k-means++ seeds; above _KPP_MAX_K, where its k x n cost is too high, a weighted random draw."""
    if k <= _KPP_MAX_K:
        return kmeans.plusplus(level.points, level.weights, k, seed)
    # Sampling without replacement, in proportion to weight: the k smallest Exp(1) / weight keys.
    keys = np.random.default_rng(seed).exponential(size=len(level.points)) / level.weights
    return level.points[np.sort(np.argpartition(keys, k - 1)[:k])]


def _start(made: _Made, k: int, seed: int) -> tuple[float, kmeans.Fit]:
    """One k-means++ seeding run to convergence on the coarsest level: (error, fit)."""
    level, fit = made.coarse_run(k, seed, _COARSE_MAX_ITER)
    return _level_error(level, fit.centroids, fit.labels), fit


def _best_start(made: _Made, k: int, seed: int, seedings: int | None = None) -> kmeans.Fit:
    """Of several seedings (side by side on the pool's threads; by default _N_INIT up to
    _N_INIT_MAX_K, else one), the lowest-error one; the first of equal ones, so the result does
    not depend on the threads."""
    seedings = seedings or (_N_INIT if k <= _N_INIT_MAX_K else 1)
    attempts = [(made, k, seed + attempt) for attempt in range(seedings)]
    return min(run_jobs(_start, attempts), key=lambda result: result[0])[1]


def _tolerance(level: Level) -> float:
    """scikit-learn's tol, relative to the data's mean per-channel variance."""
    total = level.weights.sum()
    mean = level.weights @ level.points / total
    variance = level.weights @ (level.points * level.points) / total - mean * mean  # E[x^2] - E[x]^2: two passes fewer
    return _TOL * float(variance.mean())


def cluster(hist: Histogram, k: int, seed: int, made: _Made | None = None, seedings: int | None = None, ordered: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Codebook (<= k entries, uint8) and each histogram colour's index into it; k < len(hist).
    `made`: this histogram's levels and coarse runs made so far (by a psnr= search);
    `seedings`: k-means++ seedings to keep the best of (default: see _best_start); `ordered`:
    whether to put the entries in path order (_along_path; default: k <= PATH_MAX_K)."""
    made = made or _Made(hist)
    levels = _levels(made, k)
    tol = made.tolerance()
    fit = _best_start(made, k, seed, seedings)
    for parent, child in itertools.pairwise(levels):
        max_iter = _exact_steps(len(child.points)) if child is levels[-1] else _LEVEL_MAX_ITER
        labels, bounds = _child_start(parent, child, fit)
        fit = kmeans.lloyd(child.points, child.weights, fit.centroids, labels, max_iter, tol, bounds)
    centroids, labels = fit.centroids, fit.labels
    # Round to uint8, order the entries along a path (_along_path), then every colour's exact
    # nearest rounded entry, searched from its label.
    codebook = np.clip(np.rint(centroids), 0, 255).astype(np.uint8)
    if ordered is None:
        ordered = k <= PATH_MAX_K
    if ordered:
        codebook, labels = _along_path(codebook, labels)
    return _drop_unused(codebook, kmeans.exact_nearest(hist.colors, codebook, labels))


def _along_path(codebook: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The codebook in kmeans.path_order and the labels renumbered. The coded codebook (spec
    6.1) stores each channel's steps from one entry to the next: in the seeds' order they are
    as large as the colours and the codebook stayed raw; along the path it codes in about 0.7 x
    the raw bytes at K = 256 (benchmarks/codebook_order.py). The strips code much the same bytes
    in any order (zstd sees one byte value for another, near_rans ranks by colour up to 1,024
    entries), but compression="auto" estimates near_rans ranking by index, which along the path
    follows colour: it tries near_rans on some drawings it did not try before."""
    order = kmeans.path_order(codebook)
    renumber = np.empty_like(order)
    renumber[order] = np.arange(len(order))
    return codebook[order], renumber[labels]


def _exact_steps(points: int) -> int:
    return int(np.clip(_EXACT_POINT_STEPS // max(1, points), _EXACT_MIN_ITER, _EXACT_MAX_ITER))


def _drop_unused(codebook: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The codebook without entries no colour uses, and the labels renumbered (order kept)."""
    used = np.bincount(labels, minlength=len(codebook)) > 0
    renumber = np.cumsum(used) - 1
    return codebook[used], renumber[labels]


def _sub_histogram(hist: Histogram, mask: np.ndarray, channels: int) -> Histogram:
    """The colours selected by mask, keeping their first `channels` channels. Key order is kept:
    dropping a constant last channel (alpha 255) does not reorder the keys."""
    colors = np.ascontiguousarray(hist.colors[mask][:, :channels])
    return Histogram(color_keys(colors), colors, hist.counts[mask])


def _error_curve(part: Histogram, budget: int, seed: int) -> np.ndarray:
    """Estimated squared error of clustering this class into 0..budget entries: measured at 1 (the
    variance) and near budget / 2 (a coarse clustering), a power law between, 0 from its colour count."""
    ks = np.arange(budget + 1, dtype=np.float64)
    colors = part.colors.astype(np.float64)
    mean = np.average(colors, axis=0, weights=part.counts)
    at_one = float(((colors - mean) ** 2).sum(axis=1) @ part.counts) + 1.0
    middle = min(max(2, budget // 2), len(part.keys) - 1)
    exponent = 2.0 / colors.shape[1]  # high-resolution theory's k ** (-2 / d), until measured
    if middle >= 2:
        at_middle = _estimate_error(part, middle, seed) + 1.0
        exponent = float(np.clip(np.log(at_one / at_middle) / np.log(middle), 0.1, 4.0))
    curve = at_one * np.maximum(ks, 1.0) ** -exponent
    curve[0] = np.inf if len(part.keys) else 0.0
    curve[len(part.keys) :] = 0.0
    return curve


def _class_budget(k: int, opaque: Histogram, partial: Histogram, seed: int) -> tuple[int, int]:
    """Entries for opaque and partially transparent colours out of k: the split with the least
    estimated total error (each class's error curve measured, see _error_curve)."""
    sizes = (len(opaque.keys), len(partial.keys))
    if sum(sizes) <= k:
        return sizes
    if not sizes[0]:
        return 0, min(k, sizes[1])
    if not sizes[1] or k == 1:
        return min(k, sizes[0]), 0
    opaque_curve, partial_curve = _error_curve(opaque, k, seed), _error_curve(partial, k, seed)
    k_opaque = np.arange(1, k + 1)  # opaque colours always get an entry; partial ones may not
    total = opaque_curve[k_opaque] + np.where(partial_curve[k - k_opaque] == np.inf, _NO_ENTRY_PENALTY * partial_curve[1], partial_curve[k - k_opaque])
    best = int(k_opaque[np.argmin(total)])
    return best, min(k - best, sizes[1])


def _class_codebook(part: Histogram, k: int, seed: int, seedings: int | None, ordered: bool) -> tuple[np.ndarray, np.ndarray]:
    if len(part.keys) <= k:
        return part.colors, np.arange(len(part.keys))
    return cluster(part, k, seed, seedings=seedings, ordered=ordered)


def cluster_alpha(hist: Histogram, k: int, seed: int, seedings: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """cluster() for colours with alpha (last channel), keeping alpha classes apart: fully
    transparent colours share one entry (all channels 0), fully opaque ones get only opaque
    entries (clustered on colour alone), partial ones are clustered with their alpha and then
    take the nearest entry of any class. Needs k >= 2 when both transparent and opaque colours
    occur; k < len(hist)."""
    alpha = hist.colors[:, -1]
    transparent, opaque = alpha == 0, alpha == 255
    partial = ~(transparent | opaque)
    if k < int(transparent.any()) + int(opaque.any()):
        return cluster(hist, k, seed, seedings=seedings)
    channels = hist.colors.shape[1]
    books = [np.zeros((int(transparent.any()), channels), dtype=np.uint8)]
    color_index = np.zeros(len(hist.keys), dtype=np.intp)  # transparent colours: entry 0, if any
    opaque_hist, partial_hist = _sub_histogram(hist, opaque, channels - 1), _sub_histogram(hist, partial, channels)
    k_opaque, k_partial = _class_budget(k - len(books[0]), opaque_hist, partial_hist, seed)
    for mask, part, k_part, solid in ((opaque, opaque_hist, k_opaque, True), (partial, partial_hist, k_partial, False)):
        if not k_part:
            continue
        book, labels = _class_codebook(part, k_part, seed, seedings, k <= PATH_MAX_K)  # by the whole codebook's k
        if solid:
            book = np.concatenate([book, np.full((len(book), 1), 255, dtype=np.uint8)], axis=1)
        color_index[mask] = labels + sum(len(b) for b in books)
        books.append(book)
    codebook = np.concatenate(books)
    if partial.any():  # may match an opaque or transparent entry better than any of their own
        color_index[partial] = nearest_index(hist.colors[partial], codebook)
    return _drop_unused(codebook, color_index)


def quantize_histogram(hist: Histogram, k: int, seed: int = 0, made: _Made | None = None, seedings: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Codebook (<= k entries) and each histogram colour's index; lossless when <= k colours.
    Two or four channels are colours with alpha: see cluster_alpha. `made`, `seedings`: as
    for cluster."""
    if len(hist.keys) <= k:
        return hist.colors, np.arange(len(hist.keys))
    if hist.colors.shape[1] in (2, 4):
        return cluster_alpha(hist, k, seed, seedings)
    return cluster(hist, k, seed, made, seedings)


def _visible_colors(hist: Histogram) -> np.ndarray:
    """The colours as seen: with alpha (2 or 4 channels), a fully transparent pixel's colour
    channels are invisible, so they count as 0 - the colour of the shared transparent entry."""
    colors = hist.colors.astype(np.float64)
    if colors.shape[1] in (2, 4):
        colors[colors[:, -1] == 0] = 0
    return colors


def _visible_histogram(hist: Histogram) -> Histogram:
    """The histogram of the visible colours: fully transparent colours merged into one, all 0."""
    if hist.colors.shape[1] not in (2, 4) or not (hist.colors[:, -1] == 0).any():
        return hist
    colors = _visible_colors(hist).astype(np.uint8)
    keys, first, inverse = np.unique(color_keys(colors), return_index=True, return_inverse=True)
    return Histogram(keys, colors[first], np.bincount(inverse.ravel(), weights=hist.counts).astype(np.int64))


def squared_error(hist: Histogram, codebook: np.ndarray, color_index: np.ndarray) -> float:
    """Total squared error over all pixels and channels of mapping each colour to its entry
    (the colour under full transparency not counted)."""
    book = codebook.astype(np.float64)
    if book.shape[1] in (2, 4):
        book[book[:, -1] == 0] = 0  # an entry's colour under full transparency is not seen either
    difference = _visible_colors(hist) - book[color_index]
    return float(((difference * difference).sum(axis=1) * hist.counts).sum())


def _estimate_error(hist: Histogram, k: int, seed: int, made: _Made | None = None) -> float:
    """An upper bound on the squared error of cluster(hist, k, seed), from its coarsest level
    alone: a few Lloyd steps on the cube means, plus the error of the colours around their cube
    means (the full run starts from this very solution and only improves on it, rounding aside).
    `made`: levels of this histogram already made."""
    made = made or _Made(hist)
    shifts = _level_shifts(made, k)
    coarse = made.level(shifts[0], k)
    within = made.within(shifts[0], k)
    if len(coarse.points) <= k:
        return within
    fit = made.coarse_run(k, seed, _ESTIMATE_MAX_ITER)[1]
    return within + _level_error(coarse, fit.centroids, fit.labels)


def _smallest_k(hist: Histogram, target: float, seed: int, limit: int, precision: int = _ESTIMATE_K_PRECISION, made: _Made | None = None) -> tuple[int, int]:
    """By estimates alone: (a k whose estimate fails the target, the smallest found that meets
    it). One entry's error is the colours' variance, known without clustering; from it k is
    extrapolated on the error curve until one passes (an estimate costs more the larger its
    k, so from below), then interpolation closes in."""
    made = made or _Made(hist)
    one = (1, _variance_error(hist))
    if one[1] <= target or limit <= 1:
        return 0, 1
    low = one
    while True:
        k = min(limit, _extrapolated(one, low, target))
        error = _estimate_error(hist, k, seed, made)
        if error <= target or k >= limit:
            break
        low = (k, error)
    high = (k, error)
    while high[0] - low[0] > max(1, high[0] // precision):
        candidate = _next_candidate(low, high, target)
        error = _estimate_error(hist, candidate, seed, made)
        if error <= target:
            high = (candidate, error)
        else:
            low = (candidate, error)
    return low[0], high[0]


def _variance_error(hist: Histogram) -> float:
    """The squared error of one entry, the colours' weighted mean: their total variance."""
    colors = _visible_colors(hist)
    mean = hist.counts @ colors / hist.counts.sum()
    return float(((colors - mean) ** 2).sum(axis=1) @ hist.counts)


def _extrapolated(one: tuple[int, float], low: tuple[int, float], target: float) -> int:
    """A k where the error might reach target, from the failing k `low`: along the curve's
    mean slope since one entry (error ~ 1 / k at first). Photos' curves flatten as k grows,
    so this stays below the answer, where estimates are cheap; 1.25 to 8 x low."""
    k, error = low
    slope = 1.0 if k == 1 else max(0.1, float(np.log(one[1] / error) / np.log(k)))
    growth = float(np.log(error / target)) / slope  # in log space: a far target overflows a power
    return int(np.ceil(k * np.exp(np.clip(growth, np.log(1.25), np.log(8.0)))))


def mse_for_psnr(psnr: float) -> float:
    """Mean squared error per 8-bit channel value that gives this PSNR in dB (0 past what a
    float holds: such a target means lossless)."""
    try:
        return 255.0**2 / 10.0 ** (psnr / 10.0)
    except OverflowError:
        return 0.0


def psnr_for_mse(mse: float) -> float:
    """PSNR in dB of 8-bit channel values with this mean squared error (inf when 0)."""
    return float("inf") if mse <= 0 else 10.0 * float(np.log10(255.0**2 / mse))


def _alpha_classes(hist: Histogram) -> int:
    """How many of the fully transparent and fully opaque classes occur (0 without alpha)."""
    if hist.colors.shape[1] not in (2, 4):
        return 1
    alpha = hist.colors[:, -1]
    return max(1, int((alpha == 0).any()) + int((alpha == 255).any()))


def _next_candidate(low: tuple[int, float] | None, high: tuple[int, float], target: float) -> int:
    """The k where the error reaches target, interpolated on log k / log error (error ~ k ** -p)
    between a failing and a passing k, or stepped down from the passing one by theory's p = 2/3;
    kept off the bracket's ends so that it shrinks."""
    k_high, e_high = high
    if low is None:
        guess = k_high * (max(e_high, 1e-9) / target) ** 1.5 if e_high > 0 else k_high / 2
        return max(1, min(k_high - 1, int(guess)))
    k_low, e_low = low
    if e_high > 0:
        slope = (np.log(k_high) - np.log(k_low)) / (np.log(e_high) - np.log(e_low))
        guess = float(np.exp(np.log(k_low) + (np.log(target) - np.log(e_low)) * slope))
    else:
        guess = (k_low + k_high) / 2
    margin = max(1, (k_high - k_low) // 8)
    return int(np.clip(round(guess), k_low + margin, k_high - margin))


def _psnr_start(hist: Histogram, psnr: float, seed: int, max_k: int, precision: int, made: _Made) -> tuple[float, int, int, int]:
    """(target squared error, k limit, smallest k keeping the alpha classes, a k whose cheap
    upper-bound estimate reaches psnr, to within 1/precision)."""
    pixels_channels = float(hist.counts.sum()) * hist.colors.shape[1]
    target = mse_for_psnr(psnr) * pixels_channels
    limit = min(len(hist.keys), max_k)
    minimum = min(limit, _alpha_classes(hist))  # alpha classes stay exact only from this k
    visible = _visible_histogram(hist)
    k = limit if target <= 0 else max(minimum, _smallest_k(visible, target, seed, limit, precision, made if visible is hist else None)[1])
    return target, limit, minimum, k


def cluster_for_psnr(hist: Histogram, psnr: float, seed: int, max_k: int, narrow: bool = True, made: _Made | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The smallest k (to within 1/32) whose clustering reaches psnr dB. A search on cheap
    upper-bound estimates gives a k that passes; a few full clusterings, interpolated on the
    error curve, then close in on the smallest (k grows first if rounding or the alpha classes
    keep the estimate's k short). Without `narrow`, the first k that passes, from rougher
    estimates. ValueError if even max_k entries cannot reach it."""
    if psnr == float("inf") and len(hist.colors) > max_k:  # said at once, not after clustering up to max_k
        raise ValueError(f"psnr=inf (lossless) needs an entry for each of the image's {len(hist.colors):,} colours: more than k={max_k:,}")
    pixels_channels = float(hist.counts.sum()) * hist.colors.shape[1]
    made = made or _Made(hist)  # the estimates' levels and coarse runs serve the full clusterings
    target, limit, minimum, k = _psnr_start(hist, psnr, seed, max_k, _ESTIMATE_K_PRECISION if narrow else _ROUGH_K_PRECISION, made)

    def attempt(k: int) -> tuple[float, tuple[np.ndarray, np.ndarray]]:
        result = quantize_histogram(hist, k, seed, made)
        return squared_error(hist, *result), result

    error, best = attempt(k)
    low: tuple[int, float] | None = None
    while error > target:
        if k >= limit:
            raise ValueError(f"psnr={psnr} dB is out of reach: k={k:,} gives {psnr_for_mse(error / pixels_channels):.2f} dB")
        low = (k, error)
        k = min(limit, max(k + 1, int(k * _PSNR_GROWTH)))
        error, best = attempt(k)
    high = (k, error)
    for _ in range(_PSNR_MAX_STEPS if narrow else 0):
        if high[0] <= minimum or (low is not None and high[0] - low[0] <= max(1, high[0] // _PSNR_K_PRECISION)):
            break
        candidate = max(minimum, _next_candidate(low, high, target))
        if candidate >= high[0]:
            break
        error, result = attempt(candidate)
        if error <= target:
            high, best = (candidate, error), result
        else:
            low = (candidate, error)
    return best


def gather(image: RowSource, hist: Histogram, color_index: np.ndarray) -> np.ndarray:
    """Each pixel's index (H, W), looked up by colour key: a table for <= 3 channels, else a search."""
    height, width, channels = image.shape
    dtype = index_dtype(int(color_index.max(initial=0)) + 1)
    indices = np.empty(height * width, dtype=dtype)
    if channels <= 3:
        table = np.empty(1 << (8 * channels), dtype=dtype)  # only slots of present colours are written or read
        table[hist.keys] = color_index
        for first, pixels in _strips(image):
            indices[first : first + len(pixels)] = table[color_keys(pixels)]
    else:
        for first, pixels in _strips(image):
            indices[first : first + len(pixels)] = color_index[np.searchsorted(hist.keys, color_keys(pixels))]
    return indices.reshape(height, width)




class Clustering:
    """An image's colour histogram, counted once, clustered at any k or PSNR. From a PSNR
    search on, levels and coarse runs are kept from one clustering to the next (the search
    makes many); a plain clustering keeps nothing."""

    def __init__(self, image: RowSource, seed: int = 0) -> None:
        self.image, self.seed = image, seed
        self.hist = histogram(image)
        self._made: _Made | None = None
        self._ahead: tuple[tuple[int, int | None], _Background] | None = None

    @property
    def colors(self) -> int:
        """How many distinct colours the image has."""
        return len(self.hist.keys)

    def at_k(self, k: int, seedings: int | None = None) -> Quantized:
        ahead = self._settle()
        if ahead is not None and ahead[0] == (k, seedings):
            codebook, color_index = ahead[1]
        else:
            codebook, color_index = quantize_histogram(self.hist, k, self.seed, self._made, seedings)
        return Quantized(gather(self.image, self.hist, color_index), codebook)

    def ahead(self, k: int, seedings: int | None = None) -> None:
        """Start at_k(k, seedings)'s clustering on a thread of its own: a psnr= search knows the
        next k it will try while it still trades and codes the last, whose work leaves part of
        the cores idle. Only the histogram and this object's levels are used there (never the
        image, read by the caller meanwhile), and nothing here touches them until it ends.
        Not from a pool thread: the clustering's jobs would wait on a pool whose threads may
        all be waiting for it; at_k then clusters when asked."""
        if in_pool():
            return
        self._settle()
        self._ahead = ((k, seedings), _Background(quantize_histogram, self.hist, k, self.seed, self._made, seedings))

    def _settle(self) -> tuple[tuple[int, int | None], tuple[np.ndarray, np.ndarray]] | None:
        """Wait for a clustering started ahead: ((k, seedings), its result), or None."""
        if self._ahead is None:
            return None
        key, background = self._ahead
        self._ahead = None
        return key, background.result()

    def drop_ahead(self) -> None:
        """Wait for a clustering started ahead and forget it, and any error it raised: for a
        search that ends without taking it (its own error on the way out), so that no thread
        outlives the save that started it."""
        if self._ahead is not None:
            self._ahead[1].wait()
            self._ahead = None

    def at_psnr(self, psnr: float, max_k: int = 65_536, narrow: bool = True) -> Quantized:
        self._settle()
        self._made = self._made or _Made(self.hist)
        codebook, color_index = cluster_for_psnr(self.hist, psnr, self.seed, max_k, narrow, self._made)
        return Quantized(gather(self.image, self.hist, color_index), codebook)


class SharedClustering:
    """A Clustering for two psnr= searches run side by side: each (k, seedings) is clustered
    once for both (their next k is mostly the same), one clustering at a time (the levels a
    Clustering keeps are not made for two threads at once). drop_ahead is the owner's, once
    both searches have ended."""

    def __init__(self, clustering: Clustering) -> None:
        self._clustering = clustering
        self._lock = threading.Lock()
        self._done: dict[tuple[int, int | None], Quantized] = {}
        self._asked: set[tuple[int, int | None]] = set()

    @property
    def colors(self) -> int:
        return self._clustering.colors

    def at_k(self, k: int, seedings: int | None = None) -> Quantized:
        with self._lock:
            if (k, seedings) not in self._done:
                self._done[k, seedings] = self._clustering.at_k(k, seedings)
            return self._done[k, seedings]

    def ahead(self, k: int, seedings: int | None = None) -> None:
        with self._lock:
            if (k, seedings) not in self._done and (k, seedings) not in self._asked:
                self._asked.add((k, seedings))
                self._clustering.ahead(k, seedings)

    def drop_ahead(self) -> None:
        """Nothing: the other search may still take what was started ahead."""


class _Background:
    """function(*args) on a thread of its own; result() waits for it (and raises what it raised)."""

    def __init__(self, function: Callable[..., Any], *args: object) -> None:
        self._outcome: tuple[bool, Any] | None = None
        self._thread = threading.Thread(target=self._run, args=(function, args), name="kmq-ahead", daemon=True)
        self._thread.start()

    def _run(self, function: Callable[..., Any], args: tuple[object, ...]) -> None:
        try:
            self._outcome = (True, function(*args))
        except BaseException as error:  # handed to result()'s caller, as if called there
            self._outcome = (False, error)

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self._thread.join()
        assert self._outcome is not None
        done, value = self._outcome
        if not done:
            raise value
        return value


def quantize(image: RowSource, k: int, seed: int = 0) -> Quantized:
    """Cluster an (H, W, C) uint8 image into at most k colours; lossless when it has <= k colours.

    Returns indices (H, W) and the codebook (K, C) uint8 with K <= k. Every pixel's index is its
    nearest codebook entry (ties to the lowest index) - among the entries of its alpha class for
    images with alpha (see cluster_alpha); entries no pixel uses are dropped.
    """
    return Clustering(image, seed).at_k(k)


def quantize_to_psnr(image: RowSource, psnr: float, seed: int = 0, max_k: int = 65_536) -> Quantized:
    """As quantize, with the smallest k (to within ~3 %, up to max_k) whose result reaches psnr dB
    over all channels; ValueError if it cannot be reached."""
    return Clustering(image, seed).at_psnr(psnr, max_k)
