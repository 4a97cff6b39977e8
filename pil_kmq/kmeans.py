"""Compiled k-means kernels (numba): weighted Lloyd iterations, greedy k-means++ and exact
nearest-entry search.

Every search starts from a guess (the point's label, its parent cube's label) and walks the
guess's neighbour list, the other centroids sorted by distance from it: by the triangle
inequality a centroid j is no nearer to x than |c_guess - c_j| - |x - c_guess|, so the walk
stops after the few centroids around the guess. Lloyd iterations skip most points altogether
with Hamerly's bounds (an upper bound on the distance to the own centroid, lower bounds on
the distance to the runner-up and to every other), and sum again only the points whose
label changed. The listed distances are measured again at every step (k x m); the lists
themselves are rebuilt only when searches keep running off them after the centroids have
drifted.
"""

from __future__ import annotations

import itertools
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from .jobs import WORKERS, run_jobs

# Neighbours listed per centroid: a walk that runs off the list scans every centroid instead
# (fewer when lists come from a k-d tree, whose queries then settle such walks cheaply).
NEIGHBOURS, TREE_NEIGHBOURS = 96, 64
# Lists are rebuilt once an assignment step scanned every centroid for more than k / this
# many points (a rebuild costs about k x k distances, a scan k), and some centroid has drifted
# more than this fraction of the median distance to the first unlisted one since.
REBUILD_SCANS = 4
REBUILD_DRIFT = 0.5
# Runner-up bounds loosen by the largest shift among this many nearest neighbours of a point's
# centroid (the farther ones are bounded by their distance): one far centroid's jump then
# leaves most points' bounds alone.
NEAR = 16
# Above _BRUTE_LISTS_K, the centroids that drifted farthest are measured in every walk rather
# than loosening the bound on all unlisted ones (a few jump 2-5x farther than the rest at
# k = 4,096).
WANDERERS = 16
# Above this many centroids the lists come from a k-d tree instead of all pairwise distances.
_BRUTE_LISTS_K = 512
# Searches of at least this many points are split between the pool's threads: a hand-off
# costs tens of microseconds, a step over 16k colours at k = 256 about a millisecond.
SPLIT_POINTS = 1 << 14


def kd_tree(points: np.ndarray) -> Any:
    """scipy's k-d tree of these points. scipy.spatial is imported on first use: it took a third
    of `import pil_kmq` (0.3 s), which a program that only reads KMQ files never needs."""
    from scipy.spatial import cKDTree

    return cKDTree(points)


@njit(cache=True, nogil=True, inline="always")
def _squared(points: np.ndarray, i: int, centroids: np.ndarray, j: int) -> float:
    total = 0.0
    for c in range(points.shape[1]):
        d = points[i, c] - centroids[j, c]
        total += d * d
    return total


@njit(cache=True, nogil=True)
def _pairwise(centroids: np.ndarray) -> np.ndarray:
    """Squared distances between centroids, each one's distance to itself -1 (first when sorted)."""
    k = centroids.shape[0]
    squared = np.empty((k, k))
    for a in range(k):
        squared[a, a] = -1.0
        for j in range(a + 1, k):
            squared[a, j] = squared[j, a] = _squared(centroids, a, centroids, j)
    return squared


def _brute_lists(centroids: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """neighbour_lists() by all pairwise distances (up to _BRUTE_LISTS_K centroids). numpy sorts
    rows of 256 whole faster than it partitions them (0.4 against 0.7 ms for 256 x 256);
    longer rows are partitioned first (3 against 4 ms at 512)."""
    k = len(centroids)
    squared = _pairwise(np.ascontiguousarray(centroids, dtype=np.float64))
    kept = min(k, m + 1)
    if k <= 256 or kept == k:
        order = np.argsort(squared, axis=1)[:, :kept]
    else:
        order = np.argpartition(squared, kept - 1, axis=1)[:, :kept]
        order = np.take_along_axis(order, np.argsort(np.take_along_axis(squared, order, 1), axis=1), 1)
    tail = np.sqrt(np.take_along_axis(squared, order[:, m:], 1)[:, 0]) if m < k else np.full(k, np.inf)
    return np.ascontiguousarray(order[:, :m]), tail


def neighbour_lists(centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per centroid: its nearest m centroids, itself first (k, m; m = min(k, NEIGHBOURS), or
    TREE_NEIGHBOURS above _BRUTE_LISTS_K), and the distance to the nearest one not listed (inf
    when all are)."""
    k = len(centroids)
    m = min(k, NEIGHBOURS if k <= _BRUTE_LISTS_K else TREE_NEIGHBOURS)
    if k <= _BRUTE_LISTS_K:
        return _brute_lists(centroids, m)
    distance, order = kd_tree(centroids).query(centroids, k=min(k, m + 1), workers=_workers(k, min(k, m + 1)))
    rows = np.arange(k)
    own = np.argmax(order == rows[:, None], axis=1)  # a duplicate may come before itself
    order[rows, own], distance[rows, own] = order[:, 0], distance[:, 0]
    order[:, 0], distance[:, 0] = rows, 0.0
    tail = distance[:, m] if m < k else np.full(k, np.inf)
    return np.ascontiguousarray(order[:, :m], dtype=np.int64), np.array(tail, dtype=np.float64)


@njit(cache=True, nogil=True)
def _wanderers(drift):
    """The WANDERERS centroids that drifted farthest since the lists were built (those beyond
    the next one's drift), and that next drift: the unlisted centroids' bound in a walk takes
    the wanderers out (they are measured instead), so that one far jump leaves it alone."""
    count = min(WANDERERS + 1, drift.shape[0])
    top = np.full(count, -1, dtype=np.int64)  # the largest drifts, descending
    for j in range(drift.shape[0]):
        t = count
        while t > 0 and (top[t - 1] < 0 or drift[j] > drift[top[t - 1]]):
            t -= 1
        if t < count:
            top[t + 1 :] = top[t:-1].copy()
            top[t] = j
    farthest = drift[top[-1]] if count > WANDERERS else 0.0
    wanderers = top[:WANDERERS]
    return wanderers[drift[wanderers] > farthest], farthest


@njit(cache=True, nogil=True)
def _floors(centroids, order, tail, drift):
    """Lower bounds on distances between centroids, for walks and for settling points:
    floor[a, t] <= the distance from centroid a to every centroid from position t of its list
    on and to every unlisted one but the wanderers (floor[a, m]); unlisted[a] <= its distance
    to every unlisted one. Listed distances are measured now, the unlisted bounded by their
    distance when listed less how far both ends have drifted since. Also the wanderers (see
    _wanderers), as numbers and as a mask."""
    k, m = order.shape
    everyone = drift.max() if k else 0.0
    # Only where a walk that runs off its list costs a k-d tree query: at k <= _BRUTE_LISTS_K
    # it scans k centroids, and measuring the wanderers in every walk cost more (a photo of
    # 100k colours saved 20-30 % slower at k = 256).
    wanderers, farthest = _wanderers(drift) if m < k and k > _BRUTE_LISTS_K else (np.empty(0, dtype=np.int64), everyone)
    wandering = np.zeros(k, dtype=np.bool_)
    wandering[wanderers] = True
    floor = np.empty((k, m + 1))
    unlisted = np.empty(k)
    for a in range(k):
        unlisted[a] = max(tail[a] - drift[a] - everyone, 0.0)
        low = max(tail[a] - drift[a] - farthest, 0.0)
        floor[a, m] = low
        for t in range(m - 1, 0, -1):
            low = min(low, np.sqrt(_squared(centroids, a, centroids, order[a, t])))
            floor[a, t] = low
        floor[a, 0] = 0.0
    return floor, unlisted, wanderers, wandering


class Bounds(NamedTuple):
    """Per point, what lets a Lloyd step skip it: Hamerly's bounds, with the runner-up kept
    apart. Most points that the bounds cannot settle lie on the face between their centroid
    and one other; measuring that one settles them, where a walk measures a dozen."""

    upper: np.ndarray  # >= the distance to the own centroid
    runner: np.ndarray  # int64: the runner-up centroid when last searched (-1: none)
    runner_lower: np.ndarray  # <= the distance to the runner-up
    lower: np.ndarray  # <= the distance to every centroid but the own and the runner-up


def new_bounds(n: int) -> Bounds:
    return Bounds(np.zeros(n), np.full(n, -1, dtype=np.int64), np.zeros(n), np.zeros(n))


@njit(cache=True, nogil=True, inline="always")
def _walk(points, i, centroids, guess, order, floor, wanderers, wandering):
    """Nearest and runner-up centroid of point i, walking the guess's list after measuring the
    wanderers: (nearest, squared distance, runner-up (-1: none), its distance, a lower bound on
    every other centroid's distance, whether the walk ran off the list). A centroid at list
    position t or later is no nearer than floor[guess, t] - |x - c_guess| (triangle
    inequality). Off the list, every centroid is scanned, or with more than _BRUTE_LISTS_K the
    nearest is -1: left to the caller."""
    k = centroids.shape[0]
    m = order.shape[1]
    s1 = _squared(points, i, centroids, guess)
    own = np.sqrt(s1)
    best, runner, s2, s3, d2 = guess, -1, np.inf, np.inf, np.inf
    # The ranking update is written out in each loop: an inlined helper returning the values
    # cost 3-12 % more CPU time in Kodak saves at K = 256.
    for j in wanderers:
        if j == guess:
            continue
        s = _squared(points, i, centroids, j)
        if s < s2:
            s3 = s2
            if s < s1:
                best, runner, s2, s1 = j, best, s1, s
            else:
                runner, s2 = j, s
            d2 = np.sqrt(s2)
        elif s < s3:
            s3 = s
    for t in range(1, m):
        if floor[guess, t] - own >= d2:
            return best, s1, runner, d2, min(np.sqrt(s3), floor[guess, t] - own), False
        j = order[guess, t]
        if wandering[j]:
            continue
        s = _squared(points, i, centroids, j)
        if s < s2:
            s3 = s2
            if s < s1:
                best, runner, s2, s1 = j, best, s1, s
            else:
                runner, s2 = j, s
            d2 = np.sqrt(s2)
        elif s < s3:
            s3 = s
    rest = floor[guess, m] - own if m < k else np.inf
    if rest >= np.sqrt(s1):
        return best, s1, runner, d2, min(np.sqrt(s3), rest), False
    if k > _BRUTE_LISTS_K:
        return -1, 0.0, -1, 0.0, 0.0, True  # an unlisted centroid may be nearer: the caller's k-d tree finds it
    best, runner, s1, s2, s3 = 0, -1, np.inf, np.inf, np.inf  # an unlisted centroid may be nearer: scan them all
    for j in range(k):
        s = _squared(points, i, centroids, j)
        if s < s2:
            s3 = s2
            if s < s1:
                best, runner, s2, s1 = j, best, s1, s
            else:
                runner, s2 = j, s
        elif s < s3:
            s3 = s
    return best, s1, runner, np.sqrt(s2), np.sqrt(s3), True


@njit(cache=True, nogil=True)
def _assign(points, centroids, labels, bounds, order, floors, shift, everyone, deferred, start, stop):
    """One assignment step for points start..stop: bounds moved by this step's shifts, then
    every point that its bounds cannot settle is searched. Returns how many labels changed,
    and how many searches ran off their list: with more than _BRUTE_LISTS_K centroids, those
    points are listed from deferred[start] on, for the caller to search."""
    k, m = order.shape
    near = min(NEAR, m)
    floor, unlisted, wanderers, wandering = floors
    upper, runner, runner_lower, lower = bounds
    # The other centroids' bound loosens by the largest shift among the own centroid's `near`
    # nearest neighbours; the centroids beyond them are bounded afresh by floor[a, near] - upper.
    first, top, second = 0, 0.0, 0.0  # Hamerly's plain rule: the largest shift of any other centroid
    for j in range(k):
        if shift[j] > top:
            first, second, top = j, top, shift[j]
        elif shift[j] > second:
            second = shift[j]
    near_shift = np.zeros(k)
    for a in range(k):
        for t in range(1, near):
            near_shift[a] = max(near_shift[a], shift[order[a, t]])
    changed, scans = 0, 0
    for i in range(start, stop):
        a, b = labels[i], runner[i]
        upper[i] += shift[a]
        lower[i] = max(lower[i] - (second if a == first else top), min(lower[i] - near_shift[a], min(floor[a, near], unlisted[a]) - upper[i]))
        runner_lower[i] = runner_lower[i] - shift[b] if b >= 0 else np.inf
        if not everyone:
            # Hamerly: nearer than half the gap to every other centroid, or than the runner-up.
            bound = max(min(lower[i], runner_lower[i]), min(floor[a, 1], unlisted[a]) * 0.5) if k > 1 else np.inf
            if upper[i] <= bound:
                continue
            upper[i] = np.sqrt(_squared(points, i, centroids, a))
            if upper[i] <= bound:
                continue
            if b >= 0 and upper[i] <= lower[i]:  # only the runner-up can be nearer
                runner_lower[i] = np.sqrt(_squared(points, i, centroids, b))
                if runner_lower[i] < upper[i]:
                    labels[i], runner[i] = b, a
                    upper[i], runner_lower[i] = runner_lower[i], upper[i]
                    changed += 1
                continue
        best, s1, b, d2, d3, scanned = _walk(points, i, centroids, a, order, floor, wanderers, wandering)
        if best < 0:
            deferred[start + scans] = i
            scans += 1
            continue
        changed += best != a
        scans += scanned
        labels[i], runner[i] = best, b
        upper[i], runner_lower[i], lower[i] = np.sqrt(s1), d2, d3
    return changed, scans


class Tally(NamedTuple):
    """Per cluster its members, weight and weighted sum, as of the labels in `counted`: a Lloyd
    step then moves only the points whose label changed (~1 % of them near convergence) rather
    than summing every point again (a quarter of the exact level's time on 100k colours)."""

    counted: np.ndarray  # (n,) the label each point is counted under
    members: np.ndarray  # (k,) int64: points counted, so that emptiness is exact
    mass: np.ndarray  # (k,)
    sums: np.ndarray  # (k, channels)


@njit(cache=True, nogil=True)
def _tally(points, weights, labels, k):
    """A Tally's fields for these labels, summed afresh."""
    members = np.zeros(k, dtype=np.int64)
    mass = np.zeros(k)
    sums = np.zeros((k, points.shape[1]))
    for i in range(points.shape[0]):
        a = labels[i]
        members[a] += 1
        mass[a] += weights[i]
        for c in range(points.shape[1]):
            sums[a, c] += weights[i] * points[i, c]
    return labels.copy(), members, mass, sums


@njit(cache=True, nogil=True)
def _update(points, weights, labels, tally, centroids):
    """Weighted means of the clusters (an empty cluster keeps its centroid), each centroid's
    shift, and each cluster's weight. The tally is brought up to the labels first, in point
    order whatever threads assigned them, so the result is the same on any number of cores."""
    counted, members, mass, sums = tally
    k, channels = centroids.shape
    for i in range(points.shape[0]):
        a, b = counted[i], labels[i]
        if a == b:
            continue
        counted[i] = b
        members[a] -= 1
        members[b] += 1
        mass[a] -= weights[i]
        mass[b] += weights[i]
        for c in range(channels):
            sums[a, c] -= weights[i] * points[i, c]
            sums[b, c] += weights[i] * points[i, c]
    moved = centroids.copy()
    shift = np.zeros(k)
    for j in range(k):
        if members[j] == 0:  # reset exactly: what rounding left over must not become a centroid
            mass[j] = 0.0
            sums[j] = 0.0
        if mass[j] <= 0:
            continue
        total = 0.0
        for c in range(channels):
            moved[j, c] = sums[j, c] / mass[j]
            d = moved[j, c] - centroids[j, c]
            total += d * d
        shift[j] = np.sqrt(total)
    return moved, shift, mass


def _workers(queries: int, neighbours: int = 1) -> int:
    """Threads for a k-d tree query: scipy starts them per call, which costs more than a
    small query. The work is the neighbours found: 4,096 centroids' lists of 65 took 40 ms
    on one thread and 22 ms on two, while 4,096 queries of 1 or 2 neighbours gain nothing."""
    return WORKERS if queries * neighbours >= SPLIT_POINTS else 1


def _part_bounds(n: int) -> list[int]:
    """Where the parts of a split search of n points start, and n: one part per worker when n is large."""
    parts = WORKERS if n >= SPLIT_POINTS else 1
    return [n * part // parts for part in range(parts + 1)]


def _split(kernel, n: int, *args: object) -> list:
    """kernel(*args, start, stop) over each part of 0..n (_part_bounds), one part per thread."""
    return run_jobs(kernel, [(*args, start, stop) for start, stop in itertools.pairwise(_part_bounds(n))])


def _checked_labels(labels: np.ndarray, k: int) -> np.ndarray:
    """A copy of start labels as int64, each a valid centroid number (the kernels index with them
    unchecked)."""
    labels = np.array(labels, dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise ValueError(f"start labels must be in 0..{k - 1}")
    return labels


@njit(cache=True, nogil=True)
def _descended(labels, bounds, parent_of, points, parents):
    n = points.shape[0]
    upper, runner, runner_lower, lower = bounds
    child = np.empty(n, dtype=np.int64), Bounds(np.empty(n), np.empty(n, dtype=np.int64), np.empty(n), np.empty(n))
    for i in range(n):
        p = parent_of[i]
        apart = np.sqrt(_squared(points, i, parents, p))
        child[0][i], child[1].runner[i] = labels[p], runner[p]
        child[1].upper[i], child[1].runner_lower[i], child[1].lower[i] = upper[p] + apart, runner_lower[p] - apart, lower[p] - apart
    return child


def descend(fit: Fit, parents: np.ndarray, points: np.ndarray, parent_of: np.ndarray) -> tuple[np.ndarray, Bounds]:
    """Start labels and bounds for points that lie in the cells of a fit's points (`parents`;
    point i in cell parent_of[i]): the cell's label, and its bounds widened by how far the
    point lies from the cell's point (triangle inequality), so that lloyd() need not search
    the points those bounds settle."""
    return _descended(fit.labels, fit.bounds, parent_of, np.ascontiguousarray(points, dtype=np.float64), np.ascontiguousarray(parents, dtype=np.float64))


def _checked_bounds(bounds: Bounds, k: int, n: int) -> Bounds:
    """Start bounds for n points as contiguous arrays (the given ones when they are: lloyd()
    then updates them in place, a copy of a level's four would add 32 bytes a colour to the
    peak), runner-ups -1 or a valid centroid number (the kernels index with them unchecked)."""
    upper, runner, runner_lower, lower = (np.ascontiguousarray(field, dtype=dtype) for field, dtype in zip(bounds, (np.float64, np.int64, np.float64, np.float64)))
    if any(len(field) != n for field in (upper, runner, runner_lower, lower)):
        raise ValueError(f"start bounds must be given for all {n} points")
    if len(runner) and (runner.min() < -1 or runner.max() >= k):
        raise ValueError(f"start runner-ups must be -1 or in 0..{k - 1}")
    return Bounds(upper, runner, runner_lower, lower)


def initial_labels(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Each point's nearest centroid by a k-d tree (ties either way): a start for lloyd()."""
    return kd_tree(centroids).query(points, k=1, workers=_workers(len(points)))[1].astype(np.int64)


_DONE, _STALE_LISTS, _MOVED_EMPTY, _ASSIGN, _SPENT = 0, 1, 2, 3, 4


@njit(cache=True, nogil=True)
def _iterate(points, weights, tally, centroids, labels, bounds, order, tail, drift, scans, steps, tol, deferred, split):
    """Lloyd steps (update, assign) until no label changes or the total squared shift is at most
    tol (_DONE), or `steps` are done (_SPENT): (centroids, steps done, status, scans, changed, shift, and the
    neighbour lists: drift is measured from them). The caller takes over to build lists, and
    when its k-d tree or threads are needed: _STALE_LISTS when the lists have grown loose
    (before the step); _MOVED_EMPTY when an empty cluster's centroid was moved (every point
    must be searched again, with new lists); _ASSIGN when the caller is to assign: with `split`
    (every step, on its threads), or when searches ran off the lists of more than
    _BRUTE_LISTS_K centroids (deferred[:scans], for its tree)."""
    n, k, m = points.shape[0], centroids.shape[0], order.shape[1]
    brute = k <= _BRUTE_LISTS_K
    for step in range(steps):
        # A brute-force scan costs k distances, a deferred search a k-d tree query (far less);
        # a rebuild costs about k x k distances, or k tree queries of m neighbours.
        if scans * REBUILD_SCANS > (k if brute else k * m // 8) and drift.max() > REBUILD_DRIFT * np.median(tail):
            return centroids, step, _STALE_LISTS, scans, 0, drift, order, tail
        moved, shift, mass = _update(points, weights, labels, tally, centroids)
        empty = (mass <= 0).sum()
        if empty:  # move empty clusters onto the points costing most, as scikit-learn does
            worst = np.argsort(-(bounds.upper * bounds.upper * weights), kind="mergesort")[:empty]
            moving = 0
            for j in range(k):
                if mass[j] <= 0 and moving < len(worst):
                    centroids[j] = points[worst[moving]]
                    moving += 1
            # The caller searches every point again: that is this step's assignment.
            return centroids, step + 1, _MOVED_EMPTY, scans, 0, drift, order, tail
        centroids = moved
        drift += shift
        if split:
            return centroids, step + 1, _ASSIGN, 0, -1, shift, order, tail
        changed, scans = _assign(points, centroids, labels, bounds, order, _floors(centroids, order, tail, drift), shift, False, deferred, 0, n)
        if not brute and scans:
            return centroids, step + 1, _ASSIGN, scans, changed, shift, order, tail
        if changed == 0 or (shift * shift).sum() <= tol:
            return centroids, step + 1, _DONE, scans, changed, shift, order, tail
    return centroids, steps, _SPENT, scans, 0, drift, order, tail


def _search_deferred(points: np.ndarray, centroids: np.ndarray, found: np.ndarray, labels: np.ndarray, bounds: Bounds) -> int:
    """Nearest, runner-up and third of the points whose walks ran off their lists, by a k-d
    tree; returns how many labels changed."""
    if not len(found):
        return 0
    distance, nearest = kd_tree(centroids).query(points[found], k=3, workers=_workers(len(found), 3))
    changed = int((labels[found] != nearest[:, 0]).sum())
    labels[found], bounds.runner[found] = nearest[:, 0], nearest[:, 1]
    bounds.upper[found], bounds.runner_lower[found], bounds.lower[found] = distance[:, 0], distance[:, 1], distance[:, 2]
    return changed


def _deferred_parts(deferred: np.ndarray, n: int, counts: list[int]) -> np.ndarray:
    """The points each part of a split search left for the k-d tree (listed from its start)."""
    return np.concatenate([deferred[start : start + count] for start, count in zip(_part_bounds(n), counts)])


class Fit(NamedTuple):
    centroids: np.ndarray
    labels: np.ndarray
    bounds: Bounds  # on each point's distances to these centroids: a start for a finer level
    steps: int
    converged: bool  # stopped by the rule, not by max_iter (both can hold at the last step)


def lloyd(points: np.ndarray, weights: np.ndarray, centroids: np.ndarray, labels: np.ndarray, max_iter: int, tol: float, bounds: Bounds | None = None) -> Fit:
    """Weighted Lloyd iterations from these centroids and start labels, until no label changes
    or the centroids' total squared shift is at most tol (scikit-learn's rule), or max_iter
    steps; the assignments of large levels on the pool's threads. The labels may be any
    guesses: the first step searches every point from its guess, but those that `bounds` (on
    the distances to these centroids, labels as given; taken over and updated) prove nearest."""
    points = np.ascontiguousarray(points, dtype=np.float64)
    weights = np.ascontiguousarray(weights, dtype=np.float64)
    centroids = np.array(centroids, dtype=np.float64)
    labels = _checked_labels(labels, len(centroids))
    k, n = len(centroids), len(points)
    searched = bounds is not None
    bounds, drift = new_bounds(n) if bounds is None else _checked_bounds(bounds, k, n), np.zeros(k)
    deferred = np.empty(n, dtype=np.int64)
    split = n >= SPLIT_POINTS and WORKERS > 1
    tally = Tally(*_tally(points, weights, labels, k))

    def assign(shift: np.ndarray, everyone: bool) -> tuple[int, int]:
        """One assignment step by this thread or the pool's: (labels changed, searches run off their lists)."""
        parts = _split(_assign, n, points, centroids, labels, bounds, order, _floors(centroids, order, tail, drift), shift, everyone, deferred)
        changed, scans = (sum(part) for part in zip(*parts))
        if k > _BRUTE_LISTS_K and scans:
            changed += _search_deferred(points, centroids, _deferred_parts(deferred, n, [part[1] for part in parts]), labels, bounds)
        return changed, scans

    status, scans, left = _MOVED_EMPTY, 0, max_iter
    while True:
        if status != _ASSIGN:
            order, tail = neighbour_lists(centroids)
            drift[:] = 0.0
        if status == _MOVED_EMPTY:
            assign(drift, not searched)
            searched = False  # a centroid moved onto an empty cluster's place is in no bound
        centroids, steps, status, scans, changed, shift, order, tail = _iterate(points, weights, tally, centroids, labels, bounds, order, tail, drift, scans, left, tol, deferred, split)
        left -= steps
        if status == _ASSIGN:
            if changed < 0:  # split: the whole step is the caller's
                changed, scans = assign(shift, False)
            else:  # the kernel's searches ran off their lists
                changed += _search_deferred(points, centroids, deferred[:scans], labels, bounds)
            status = _DONE if not changed or float(shift @ shift) <= tol else _SPENT if left <= 0 else _ASSIGN
        if status in (_DONE, _SPENT):
            return Fit(centroids, labels, bounds, max_iter - left, status == _DONE)


@njit(cache=True, nogil=True)
def _exact(colors, book, labels, order, floor, deferred, start, stop):
    """Nearest entry by exact squared distance, ties to the lowest index, walking from each
    label. Distances of integer colours are exact in float64; the floors (square roots) get a
    margin so that a tie is never cut off. A walk that runs off its list scans every entry, or
    with more than _BRUTE_LISTS_K entries is listed from deferred[start] on (returns how many)."""
    k = book.shape[0]
    m = order.shape[1]
    count = 0
    for i in range(start, stop):
        guess = labels[i]
        s1 = _squared(colors, i, book, guess)
        best, own = guess, np.sqrt(s1)
        cut = own + own + 1e-6
        walked = True
        for t in range(1, m):
            if floor[guess, t] > cut:
                walked = False
                break
            j = order[guess, t]
            s = _squared(colors, i, book, j)
            if s < s1 or (s == s1 and j < best):
                best, s1 = j, s
                cut = own + np.sqrt(s1) + 1e-6
        if walked and m < k and floor[guess, m] <= cut:
            if k > _BRUTE_LISTS_K:
                deferred[start + count] = i
                count += 1
                continue
            best, s1 = 0, np.inf  # an unlisted entry may be as near: scan them all
            for j in range(k):
                s = _squared(colors, i, book, j)
                if s < s1:
                    best, s1 = j, s
        labels[i] = best
    return count


def exact_nearest(colors: np.ndarray, codebook: np.ndarray, guess: np.ndarray | None = None) -> np.ndarray:
    """Each colour's nearest codebook entry (squared distance, ties to the lowest index), from
    guesses (a k-d tree's when not given) that only speed the search."""
    book = np.ascontiguousarray(codebook, dtype=np.float64)
    points = np.ascontiguousarray(colors, dtype=np.float64)
    labels = initial_labels(points, book) if guess is None else _checked_labels(guess, len(book))
    order, tail = neighbour_lists(book)
    floor = _floors(book, order, tail, np.zeros(len(book)))[0]
    deferred = np.empty(len(points), dtype=np.int64)
    found = _deferred_parts(deferred, len(points), _split(_exact, len(points), points, book, labels, order, floor, deferred))
    if len(found):
        labels[found] = _tree_exact(points[found], book)
    return labels


def _tree_exact(points: np.ndarray, book: np.ndarray) -> np.ndarray:
    """Exact nearest entries by a k-d tree: its nearest is exact unless the runner-up is as
    near (distances of integer points are exact in float64); such ties are settled by all
    distances, to the lowest index."""
    distance, nearest = kd_tree(book).query(points, k=2, workers=_workers(len(points), 2))
    labels = nearest[:, 0]
    for i in np.flatnonzero(distance[:, 0] == distance[:, 1]):
        labels[i] = int(np.argmin(((book - points[i]) ** 2).sum(axis=1)))
    return labels


@njit(cache=True, nogil=True)
def _potentials(columns, weights, closest, candidates, potentials, distances):
    """The weighted potential left by adding each candidate centre, and the squared distances
    to it (trials, n). columns: the points channel by channel (channels, n), so that the inner
    loops vectorize."""
    channels, n = columns.shape
    for t in range(candidates.shape[0]):
        distance = distances[t]
        j = candidates[t]
        if channels == 3:  # one pass for the common case
            red, green, blue = columns[0], columns[1], columns[2]
            r, g, b = red[j], green[j], blue[j]
            for i in range(n):
                dr, dg, db = red[i] - r, green[i] - g, blue[i] - b
                distance[i] = dr * dr + dg * dg + db * db
        else:
            distance[:] = 0.0
            for c in range(channels):
                row = columns[c]
                centre = row[j]
                for i in range(n):
                    d = row[i] - centre
                    distance[i] += d * d
        potentials[t] = _weighted_minimum(weights, closest, distance)


@njit(cache=True, nogil=True)
def _weighted_minimum(weights, closest, distance):
    """sum(weights * minimum(closest, distance)) in four running sums: one sum would wait for
    each addition to finish before the next."""
    n = weights.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    whole = n - n % 4
    for i in range(0, whole, 4):
        s0 += weights[i] * min(closest[i], distance[i])
        s1 += weights[i + 1] * min(closest[i + 1], distance[i + 1])
        s2 += weights[i + 2] * min(closest[i + 2], distance[i + 2])
        s3 += weights[i + 3] * min(closest[i + 3], distance[i + 3])
    for i in range(whole, n):
        s0 += weights[i] * min(closest[i], distance[i])
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True)
def _scanned_plusplus(points, weights, first, draws):
    """Greedy k-means++ (as scikit-learn runs it): each new centre is the best, by the weighted
    potential it leaves, of several candidates drawn in proportion to weight x squared distance
    to the nearest centre so far. draws: (k - 1, trials) uniforms in [0, 1). Every candidate
    is measured against every point."""
    n = points.shape[0]
    k, trials = draws.shape[0] + 1, draws.shape[1]
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = first
    columns = np.ascontiguousarray(points.T)
    closest = np.empty(n)
    for i in range(n):
        closest[i] = _squared(points, i, points, first)
    cumulative = np.empty(n)
    potentials = np.empty(trials)
    distances = np.empty((trials, n))
    candidates = np.empty(trials, dtype=np.int64)
    for c in range(1, k):
        total = 0.0
        for i in range(n):
            total += weights[i] * closest[i]
            cumulative[i] = total
        for t in range(trials):
            candidates[t] = min(np.searchsorted(cumulative, draws[c - 1, t] * total), n - 1)
        _potentials(columns, weights, closest, candidates, potentials, distances)
        best = np.argmin(potentials)
        chosen[c] = candidates[best]
        np.minimum(closest, distances[best], closest)
    return chosen


# Above _CUBED_SEEDS_K centres, k-means++ sorts the points into cubes of _SEED_CUBE per side: a
# candidate centre can take points only from cubes nearer to it than their points are to their
# centres, a few in a hundred once some dozens of centres are placed. Checking ~1,000 cubes
# costs more than scanning every point of a coarse level at fewer centres (kodim05: 9 against
# 15 ms at k = 256; at k = 853, 135-165 against 55-70 ms on Kodak photos).
_CUBED_SEEDS_K = 256
_SEED_CUBE = 16.0
# ... and keeps the running sums of weight x squared distance it draws from per block of this
# many points, so that a draw reads the blocks' sums and one block.
_DRAW_BLOCK = 64
# A candidate's gain is summed over every point (vectorized) when the cubes it can take points
# from hold at least 1 / this share of them.
_SCAN_SHARE = 4


@njit(cache=True, nogil=True)
def _reachable(target, low, side, reach, starts, passing):
    """Which cubes may hold a point nearer to target (1, channels) than to its centre: those
    whose box is nearer than the farthest of their points is from its centre (reach, squared).
    Returns how many points they hold."""
    count = 0
    for c in range(low.shape[0]):
        gap = 0.0
        for channel in range(low.shape[1]):
            value = target[0, channel]
            d = low[c, channel] - value if value < low[c, channel] else max(value - low[c, channel] - side, 0.0)
            gap += d * d
        passing[c] = gap < reach[c]
        if passing[c]:
            count += starts[c + 1] - starts[c]
    return count


@njit(cache=True, nogil=True)
def _scanned_gain(columns, weights, nearest, target):
    """_gain over every point, in four running sums (one would wait for each addition);
    columns: the points channel by channel (channels, n), so that the loops vectorize."""
    channels, n = columns.shape
    drop = nearest.copy()
    for c in range(channels):
        row, centre = columns[c], target[0, c]
        for i in range(n):
            drop[i] -= (row[i] - centre) ** 2
    s0 = s1 = s2 = s3 = 0.0
    whole = n - n % 4
    for i in range(0, whole, 4):
        s0 += weights[i] * max(drop[i], 0.0)
        s1 += weights[i + 1] * max(drop[i + 1], 0.0)
        s2 += weights[i + 2] * max(drop[i + 2], 0.0)
        s3 += weights[i + 3] * max(drop[i + 3], 0.0)
    for i in range(whole, n):
        s0 += weights[i] * max(drop[i], 0.0)
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, nogil=True)
def _gain(points, columns, weights, nearest, cubes, target, passing):
    """How much the weighted potential would drop were target a centre too (points in cube
    order; nearest: their squared distances to their centres)."""
    low, side, reach, starts = cubes
    if _reachable(target, low, side, reach, starts, passing) * _SCAN_SHARE >= points.shape[0]:
        return _scanned_gain(columns, weights, nearest, target)
    gain = 0.0
    for c in range(low.shape[0]):
        if passing[c]:
            for p in range(starts[c], starts[c + 1]):
                d = _squared(points, p, target, 0)
                if d < nearest[p]:
                    gain += weights[p] * (nearest[p] - d)
    return gain


@njit(cache=True, nogil=True)
def _take(points, nearest, closest, order, cubes, target, passing, touched):
    """Make target a centre: the squared distances of the points now nearest to it, in cube
    order (nearest) and in the caller's (closest, its blocks marked touched), and the reach of
    their cubes."""
    low, side, reach, starts = cubes
    _reachable(target, low, side, reach, starts, passing)
    for c in range(low.shape[0]):
        if not passing[c]:
            continue
        farthest = 0.0
        for p in range(starts[c], starts[c + 1]):
            d = _squared(points, p, target, 0)
            if d < nearest[p]:
                nearest[p] = closest[order[p]] = d
                touched[order[p] // _DRAW_BLOCK] = True
            farthest = max(farthest, nearest[p])
        reach[c] = farthest


@njit(cache=True, nogil=True)
def _drawn(weights, closest, ends, target):
    """The first point at which the running sum of weight x closest reaches target (the last
    point if rounding leaves it short): the blocks' running sums (ends), then within one."""
    n = closest.shape[0]
    block = np.searchsorted(ends, target)
    if block >= ends.shape[0]:
        return n - 1
    total = ends[block - 1] if block > 0 else 0.0
    stop = min(n, (block + 1) * _DRAW_BLOCK)
    for i in range(block * _DRAW_BLOCK, stop):
        total += weights[i] * closest[i]
        if total >= target:
            return i
    return stop - 1


@njit(cache=True, nogil=True)
def _cubed_plusplus(points, weights, first, draws, order, starts, low, side):
    """_scanned_plusplus, each candidate measured against the points of the cubes it can take
    points from (order, starts, low, side: _seed_cubes), the draws read from blocks' sums:
    the same centres, but where rounding tips a draw or a choice between equal candidates."""
    n = points.shape[0]
    k, trials = draws.shape[0] + 1, draws.shape[1]
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = first
    cubed, cubed_weights = points[order], weights[order]
    columns = np.ascontiguousarray(cubed.T)
    closest, nearest = np.empty(n), np.empty(n)
    reach = np.zeros(low.shape[0])
    for c in range(low.shape[0]):
        for p in range(starts[c], starts[c + 1]):
            nearest[p] = closest[order[p]] = _squared(cubed, p, points, first)
            reach[c] = max(reach[c], nearest[p])
    cubes, passing = (low, side, reach, starts), np.zeros(low.shape[0], dtype=np.bool_)
    blocks = (n + _DRAW_BLOCK - 1) // _DRAW_BLOCK
    sums, ends, touched = np.zeros(blocks), np.empty(blocks), np.ones(blocks, dtype=np.bool_)
    candidates, gains = np.empty(trials, dtype=np.int64), np.empty(trials)
    for c in range(1, k):
        total = 0.0
        for b in range(blocks):
            if touched[b]:  # summed afresh, not corrected: no rounding drift
                sums[b] = 0.0
                for i in range(b * _DRAW_BLOCK, min(n, (b + 1) * _DRAW_BLOCK)):
                    sums[b] += weights[i] * closest[i]
                touched[b] = False
            total += sums[b]
            ends[b] = total
        for t in range(trials):
            candidates[t] = _drawn(weights, closest, ends, draws[c - 1, t] * total)
            gains[t] = _gain(cubed, columns, cubed_weights, nearest, cubes, points[candidates[t] : candidates[t] + 1], passing)
        chosen[c] = candidates[np.argmax(gains)]
        _take(cubed, nearest, closest, order, cubes, points[chosen[c] : chosen[c] + 1], passing, touched)
    return chosen


def _seed_cubes(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The points sorted into cubes of _SEED_CUBE per side: (order, where each cube starts in it
    and n, each cube's lowest corner, the side)."""
    cells = np.floor(points / _SEED_CUBE).astype(np.int64)
    keys = np.ravel_multi_index(tuple((cells - cells.min(axis=0)).T), tuple(np.ptp(cells, axis=0) + 1))
    order = np.argsort(keys, kind="stable")
    first = np.flatnonzero(np.diff(keys[order], prepend=-1))
    return order, np.append(first, len(points)), np.ascontiguousarray(cells[order[first]] * _SEED_CUBE, dtype=np.float64), _SEED_CUBE


def plusplus(points: np.ndarray, weights: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k centres by greedy k-means++ with 2 + ln k candidates per centre (scikit-learn's choice)."""
    rng = np.random.default_rng(seed)
    first = int(np.searchsorted(np.cumsum(weights), rng.random() * weights.sum()))
    draws = rng.random((k - 1, 2 + int(np.log(k))))
    points = np.ascontiguousarray(points, dtype=np.float64)
    weights, first = np.ascontiguousarray(weights, dtype=np.float64), min(first, len(points) - 1)
    if k <= _CUBED_SEEDS_K:
        return points[_scanned_plusplus(points, weights, first, draws)]
    return points[_cubed_plusplus(points, weights, first, draws, *_seed_cubes(points))]


@njit(cache=True, nogil=True)
def path_order(codebook: np.ndarray) -> np.ndarray:
    """An order of the entries along a short path through colour space: from the darkest
    (smallest channel sum, the lowest index of equals), each time to the nearest entry not yet
    taken (squared distance, ties to the lowest index). Greedy, k x k / 2 steps. A k-means
    codebook comes in the order of its seeds; along the path each channel steps little from
    one entry to the next."""
    k, channels = codebook.shape
    colours = codebook.astype(np.int64)
    left = np.arange(k)  # entries not yet taken, in left[:count]
    order = np.empty(k, dtype=np.int64)
    at = int(np.argmin(colours.sum(axis=1)))
    for step in range(k):
        order[step] = left[at]
        current = left[at]
        count = k - step - 1
        left[at] = left[count]  # the last one not taken fills the gap
        at, best, best_distance = -1, k, np.int64(1) << 40
        for place in range(count):
            entry = left[place]
            distance = 0
            for channel in range(channels):
                difference = colours[entry, channel] - colours[current, channel]
                distance += difference * difference
            if distance < best_distance or (distance == best_distance and entry < best):
                at, best, best_distance = place, entry, distance
    return order
