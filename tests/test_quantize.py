"""Clustering rules: nearest rounded colour (ties to the lowest index), lossless when <= k colours."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pil_kmq import compress_image, kmeans, reconstruct_image
from pil_kmq import quantize as quantize_module
from pil_kmq.quantize import cluster, histogram, nearest_index, quantize, squared_error


def brute_force_nearest(colours: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    distance = ((colours[:, None, :].astype(np.int64) - codebook[None, :, :]) ** 2).sum(axis=2)
    return np.argmin(distance, axis=1)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("seed", range(3))
def test_nearest_index_matches_brute_force_with_ties_to_lowest(channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # A coarse grid of values makes exact ties and duplicate entries common.
    codebook = (rng.integers(0, 4, (40, channels)) * 64).astype(np.uint8)
    colours = (rng.integers(0, 9, (500, channels)) * 32).clip(0, 255).astype(np.uint8)
    assert np.array_equal(nearest_index(colours, codebook), brute_force_nearest(colours, codebook))


@pytest.mark.parametrize("entries", [600, 3000])
def test_nearest_index_exact_with_many_entries_and_far_colours(entries: int) -> None:
    """Above 512 entries a search that runs off its neighbour list goes to a k-d tree: still
    the nearest, ties to the lowest index (duplicates and equidistant entries are common here)."""
    rng = np.random.default_rng(entries)
    codebook = (rng.integers(0, 8, (entries, 3)) * 16).astype(np.uint8)  # all inside [0, 112]
    near = (rng.integers(0, 15, (300, 3)) * 8).astype(np.uint8)
    far = (rng.integers(20, 32, (300, 3)) * 8).clip(0, 255).astype(np.uint8)  # beyond every list
    colours = np.concatenate([near, far])
    assert np.array_equal(nearest_index(colours, codebook), brute_force_nearest(colours, codebook))


def _clustered_image(seed: int, height: int, width: int) -> np.ndarray:
    """Random blobs of colour on a coarse grid: many exact ties and dense clusters, like photos and art."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, (12, 3))
    pixels = centres[rng.integers(0, 12, height * width)] + rng.normal(0, 12, (height * width, 3))
    pixels = np.round(pixels / 4) * 4  # a coarse grid: equidistant colours are common
    return pixels.clip(0, 255).astype(np.uint8).reshape(height, width, 3)


@pytest.mark.parametrize("k", [2, 5, 16, 17, 64, 300, 1500])
@pytest.mark.parametrize("image_seed", [0, 1])
def test_every_pixel_gets_its_nearest_stored_colour(k: int, image_seed: int) -> None:
    """Exactness: squared RGB distance, ties to the lowest index, against brute force."""
    for image in (_clustered_image(image_seed, 60, 70), np.random.default_rng(image_seed).integers(0, 256, (60, 70, 3)).astype(np.uint8)):
        indices, codebook = quantize(image, k, seed=0)
        assert len(codebook) <= k
        assert np.array_equal(indices.ravel(), brute_force_nearest(image.reshape(-1, 3), codebook))


def test_image_with_at_most_k_colours_is_stored_exactly() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (7, 3)).astype(np.uint8)
    image = pixels[np.random.default_rng(2).integers(0, 7, (20, 30))]
    indices, codebook = compress_image(image, k=7)
    assert np.array_equal(reconstruct_image(indices, codebook), image)


def test_k1_gives_one_colour_the_weighted_mean() -> None:
    image = np.array([[[0, 0, 0], [100, 50, 10]], [[100, 50, 10], [100, 50, 10]]], np.uint8)
    indices, codebook = compress_image(image, k=1)
    assert codebook.tolist() == [[75, 38, 8]]  # rint of the mean (75, 37.5, 7.5)
    assert not indices.any()


def test_unused_codebook_entries_are_dropped() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    indices, codebook = quantize(pixels, 64, seed=0)
    assert set(np.unique(indices)) == set(range(len(codebook)))


@pytest.mark.parametrize("k", [16, 256, 2000])
def test_same_seed_gives_the_same_result(ihc: object, k: int) -> None:
    image = np.asarray(ihc)
    first = compress_image(image, k=k, seed=5)
    again = compress_image(image, k=k, seed=5)
    assert np.array_equal(first.indices, again.indices)
    assert np.array_equal(first.codebook, again.codebook)


def test_quantizing_touches_no_global_random_state(parrot: object) -> None:
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    compress_image(np.asarray(parrot), k=64)
    assert np.random.random() == expected


def test_quality_is_near_a_full_kmeans_fit(ihc: object) -> None:
    """The levels and iteration caps must not cost quality: compare with scikit-learn's KMeans."""
    from sklearn.cluster import KMeans

    image = np.asarray(ihc)
    pixels = image.reshape(-1, 3).astype(np.float64)
    for k in (4, 32):
        fitted = KMeans(n_clusters=k, n_init="auto", max_iter=300, random_state=42).fit(pixels)
        reference = np.clip(np.rint(fitted.cluster_centers_), 0, 255)[fitted.labels_]
        indices, codebook = compress_image(image, k=k)
        ours = codebook[indices].reshape(-1, 3).astype(np.float64)
        reference_mse = ((pixels - reference) ** 2).sum(axis=1).mean()
        ours_mse = ((pixels - ours) ** 2).sum(axis=1).mean()
        assert ours_mse <= reference_mse * 1.03


def test_heavy_cubes_are_cut_so_that_a_dark_sky_keeps_its_quality(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most pixels in a few cubes of the coarse levels (a dim, noisy sky) need many centroids
    there; cutting heavy cubes keeps the levels as good as clustering the colours directly.
    Without the cut this image came out 1.37 x worse at k = 256."""
    rng = np.random.default_rng(0)
    dark = rng.integers(0, 24, (300_000, 3))
    bright = rng.integers(0, 256, (30_000, 3))
    hist = histogram(np.concatenate([dark, bright]).astype(np.uint8).reshape(330, 1000, 3))
    with_levels = squared_error(hist, *cluster(hist, 256, 0))
    monkeypatch.setattr(quantize_module, "_COARSE_MIN", 1 << 30)  # no levels: the colours themselves
    direct = squared_error(hist, *cluster(hist, 256, 0))
    assert with_levels <= 1.03 * direct


def test_cells_of_a_level_refine_the_coarser_level() -> None:
    """Each cell of a finer level lies in one cell of the coarser: labels can go down the levels."""
    rng = np.random.default_rng(1)
    pixels = np.concatenate([rng.integers(0, 40, (50_000, 3)), rng.integers(0, 256, (5_000, 3))]).astype(np.uint8)
    made = quantize_module._Made(histogram(pixels.reshape(-1, 100, 3)))
    for k in (16, 256):
        for coarse, fine in ((5, 3), (3, 2), (2, 0)):
            coarse_cells, _ = made.cells(coarse, k)
            fine_cells, count = made.cells(fine, k)
            parents = np.full(count, -1)
            parents[fine_cells] = coarse_cells
            assert (parents[fine_cells] == coarse_cells).all()
            assert (parents >= 0).all()


def _smooth_histogram(seed: int):
    rng = np.random.default_rng(seed)
    return histogram(np.clip(rng.normal(128, 40, (60_000, 3)), 0, 255).astype(np.uint8).reshape(-1, 100, 3))


@pytest.mark.parametrize("k", [12, 200])
def test_a_coarse_run_stopped_short_is_carried_on_to_the_same_result(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A psnr= estimate's few Lloyd steps are carried on by the full clustering at its k, not
    repeated: the same centroids as one run of all the steps (smooth colours: no cluster
    empties, whose new centroid a run's bounds would place), from only the steps still to go."""
    hist = _smooth_histogram(k)
    once = quantize_module._Made(hist).coarse_run(k, 0, 8)[1]  # both stop short of converging (11 and 20 steps)
    made = quantize_module._Made(hist)
    level, short = made.coarse_run(k, 0, 3)
    asked: list[int] = []
    original = kmeans.lloyd
    monkeypatch.setattr(kmeans, "lloyd", lambda *args: asked.append(args[4]) or original(*args))
    carried = made.coarse_run(k, 0, 8)[1]
    assert asked == [5] and carried.steps == once.steps == 8
    assert np.array_equal(carried.centroids, once.centroids) and np.array_equal(carried.labels, once.labels)
    assert made.coarse_run(k, 0, 8)[1] is carried and asked == [5]  # at its limit already: kept
    _assert_bounds_hold(level.points, short.centroids, short.labels, short.bounds)  # carrying on left it whole


def test_a_coarse_run_converged_at_its_limit_is_not_carried_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that converged on the very step its limit allowed is final: carrying it on would
    take steps a single run does not."""
    hist = _smooth_histogram(12)
    made = quantize_module._Made(hist)
    made.coarse_run(12, 0, 100)
    steps = made._fits[12, 0].steps  # where one run converges
    assert made._fits[12, 0].converged and steps < 100
    at_limit = quantize_module._Made(hist)
    first = at_limit.coarse_run(12, 0, steps)
    monkeypatch.setattr(kmeans, "lloyd", lambda *args: pytest.fail("a converged run was carried on"))
    assert at_limit.coarse_run(12, 0, 100)[1] is first[1]


def test_k_may_be_a_numpy_integer() -> None:
    image = np.random.default_rng(2).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    assert np.array_equal(quantize(image, np.int64(16)).codebook, quantize(image, 16).codebook)


def test_histogram_counts_every_distinct_colour() -> None:
    pixels = np.random.default_rng(4).integers(0, 4, (10, 10, 4)).astype(np.uint8)
    hist = histogram(pixels)
    expected, counts = np.unique(pixels.reshape(-1, 4), axis=0, return_counts=True)
    assert np.array_equal(hist.colors, expected)
    assert np.array_equal(hist.counts, counts)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_histogram_of_many_strips_matches_a_plain_count(channels: int) -> None:
    """Strips of 2**20 pixels, each radix-sorted on its own, then merged: the counts of a
    plain np.unique, for every key width (8 to 32 bits, one to three radix passes)."""
    rng = np.random.default_rng(channels)
    palette = rng.integers(0, 256, (5000, channels), dtype=np.uint8)
    pixels = palette[rng.integers(0, 5000, (1100, 1000)) ** 2 // 5000]  # skewed counts
    hist = histogram(pixels)
    expected, counts = np.unique(pixels.reshape(-1, channels), axis=0, return_counts=True)
    assert np.array_equal(hist.colors, expected)
    assert np.array_equal(hist.counts, counts)
    assert np.all(np.diff(hist.keys.astype(np.int64)) > 0)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "shape"),
    ],
)
def test_compress_image_rejects_bad_arrays(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compress_image(image, k=4)


@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("k", [97, 200, 700])
def test_lloyd_labels_are_nearest_at_convergence(monkeypatch: pytest.MonkeyPatch, split: bool, k: int) -> None:
    """Run to convergence from duplicated centroids (empty clusters, rebuilt neighbour lists),
    with the assignment split over two threads or not: every label is a nearest centroid."""
    monkeypatch.setattr(kmeans, "WORKERS", 2)
    monkeypatch.setattr(kmeans, "SPLIT_POINTS", 1 << 14 if split else 1 << 30)
    rng = np.random.default_rng(k)
    points = rng.integers(0, 256, (20_000, 3)).astype(np.float64)
    weights = rng.integers(1, 50, len(points)).astype(np.float64)
    start = points[rng.choice(len(points), k // 4, replace=False)][rng.integers(0, k // 4, k)]
    centroids, labels, bounds, steps, converged = kmeans.lloyd(points, weights, start, kmeans.initial_labels(points, start), 1000, 0.0)
    distance = ((points[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    own = distance[np.arange(len(points)), labels]
    assert (own <= distance.min(axis=1) + 1e-9).all()
    _assert_bounds_hold(points, centroids, labels, bounds)
    assert converged and 0 < steps < 1000


def _assert_bounds_hold(points: np.ndarray, centroids: np.ndarray, labels: np.ndarray, bounds: kmeans.Bounds) -> None:
    """Each bound of a fit holds against distances measured afresh."""
    distance = np.sqrt(((points[:, None, :] - centroids[None]) ** 2).sum(axis=2))
    rows = np.arange(len(points))
    assert (bounds.upper >= distance[rows, labels] - 1e-9).all()
    assert (bounds.runner != labels).all() and (bounds.runner >= 0).all()
    assert (bounds.runner_lower <= distance[rows, bounds.runner] + 1e-9).all()
    distance[rows, labels] = distance[rows, bounds.runner] = np.inf
    assert (bounds.lower <= distance.min(axis=1) + 1e-9).all()


def test_given_bounds_then_an_emptied_cluster_still_ends_on_nearest_labels() -> None:
    """Start bounds spare the first step's searches; once an emptied cluster's centroid is
    moved, no bound covers it, so every point must be searched again."""
    rng = np.random.default_rng(3)
    points = rng.integers(0, 256, (3000, 3)).astype(np.float64)
    weights = rng.integers(1, 30, len(points)).astype(np.float64)
    start = points[rng.choice(len(points), 40, replace=False)]
    start[:5] += 2000.0  # far from every point: these clusters are empty from the first step
    distance = np.sqrt(((points[:, None, :] - start[None]) ** 2).sum(axis=2))
    order = np.argsort(distance, axis=1)
    rows = np.arange(len(points))
    bounds = kmeans.Bounds(distance[rows, order[:, 0]], order[:, 1].copy(), distance[rows, order[:, 1]], distance[rows, order[:, 2]])
    centroids, labels, bounds, _, _ = kmeans.lloyd(points, weights, start, order[:, 0].copy(), 50, 0.0, bounds)
    measured = ((points[:, None, :] - centroids[None]) ** 2).sum(axis=2)
    assert (measured[rows, labels] <= measured.min(axis=1) + 1e-9).all()
    _assert_bounds_hold(points, centroids, labels, bounds)


@pytest.mark.parametrize("k", [12, 200, 700])
def test_a_finer_level_started_from_its_cubes_bounds_runs_as_from_a_full_search(k: int) -> None:
    """A finer level starts from its cubes' labels and bounds widened by how far each point lies
    from its cube's point; trusting them must give what searching every point gives."""
    rng = np.random.default_rng(k)
    colors = np.clip(rng.normal(128, 50, (30_000, 3)), 0, 255).astype(np.uint8)
    hist = histogram(colors.reshape(-1, 100, 3))
    made = quantize_module._Made(hist)
    coarse, fine = made.level(3, k), made.level(0, k)
    start = coarse.points[rng.choice(len(coarse.points), k, replace=False)]
    fit = kmeans.lloyd(coarse.points, coarse.weights, start, kmeans.initial_labels(coarse.points, start), 5, 0.0)
    _assert_bounds_hold(coarse.points, fit.centroids, fit.labels, fit.bounds)
    labels, bounds = quantize_module._child_start(coarse, fine, fit)
    _assert_bounds_hold(fine.points, fit.centroids, labels, bounds)
    trusted = kmeans.lloyd(fine.points, fine.weights, fit.centroids, labels, 3, 0.0, bounds)
    searched = kmeans.lloyd(fine.points, fine.weights, fit.centroids, labels, 3, 0.0)
    assert np.array_equal(trusted.labels, searched.labels) and np.array_equal(trusted.centroids, searched.centroids)


@pytest.mark.parametrize("k", [16, 97, 200, 300, 512])
def test_neighbour_lists_are_the_nearest_in_order(k: int) -> None:
    """Each centroid lists itself, then its nearest others by distance (rows of 256 are
    sorted whole, longer ones partitioned first); `tail` is the nearest unlisted one. A
    coarse grid makes duplicates and equal distances common."""
    centroids = (np.random.default_rng(k).integers(0, 6, (k, 3)) * 40).astype(np.float64)
    order, tail = kmeans.neighbour_lists(centroids)
    m = order.shape[1]
    assert m == min(k, kmeans.NEIGHBOURS)
    assert np.array_equal(order[:, 0], np.arange(k))
    distance = np.sqrt(((centroids[:, None, :] - centroids[None]) ** 2).sum(axis=2))
    listed = np.take_along_axis(distance, order, 1)
    assert (np.diff(listed[:, 1:], axis=1) >= 0).all()
    assert all(len(set(row)) == m for row in order)
    unlisted = np.ones((k, k), dtype=bool)
    np.put_along_axis(unlisted, order, False, 1)
    nearest_unlisted = np.where(unlisted, distance, np.inf).min(axis=1)
    assert np.array_equal(tail, nearest_unlisted)
    assert (listed[:, -1] <= tail).all()


def test_a_far_centroid_landing_beside_another_is_found() -> None:
    """Above 512 centroids a centroid that drifted far (here: the farthest one, unlisted for
    centroid a, lands beside a) is measured in every walk; the bounds that settle points
    without a walk must allow for it too. Every point ends at its nearest centroid."""
    grid = np.arange(0, 200, 22.0)
    old = np.array(np.meshgrid(grid, grid, grid)).reshape(3, -1).T[:600].copy()
    order, tail = kmeans.neighbour_lists(old)
    a = 300
    far = int(np.argmax(((old - old[a]) ** 2).sum(axis=1)))
    assert far not in order[a]
    rng = np.random.default_rng(0)
    new = old + rng.normal(0, 0.05, old.shape)
    new[far] = old[a] + np.array([3.0, 0.0, 0.0])
    shift = np.sqrt(((new - old) ** 2).sum(axis=1))
    points = old[a] + rng.uniform(-4, 4, (500, 3))
    before = np.sqrt(((points[:, None] - old[None]) ** 2).sum(axis=2))
    keep = before.argmin(axis=1) == a
    points, before = np.ascontiguousarray(points[keep]), before[keep]
    labels = np.full(len(points), a, dtype=np.int64)
    upper = before[:, a].copy()
    others = before.copy()
    others[:, a] = np.inf
    runner = others.argmin(axis=1)
    runner_lower = others[np.arange(len(points)), runner]
    others[np.arange(len(points)), runner] = np.inf
    bounds = kmeans.Bounds(upper, runner, runner_lower, others.min(axis=1))
    deferred = np.empty(len(points), dtype=np.int64)
    floors = kmeans._floors(new, order, tail, shift.copy())
    assert far in floors[2]
    _, scans = kmeans._assign(points, new, labels, bounds, order, floors, shift, False, deferred, 0, len(points))
    kmeans._search_deferred(points, new, deferred[:scans], labels, bounds)
    after = np.sqrt(((points[:, None] - new[None]) ** 2).sum(axis=2))
    assert (after[np.arange(len(points)), labels] <= after.min(axis=1) + 1e-9).all()
    assert (labels == far).any()


def test_start_labels_out_of_range_are_refused() -> None:
    codebook = np.zeros((20, 3), np.uint8)
    with pytest.raises(ValueError, match="start labels"):
        kmeans.exact_nearest(np.zeros((5, 3), np.uint8), codebook, np.full(5, 20))


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_seeding_by_cubes_picks_the_centres_a_full_scan_picks(channels: int) -> None:
    """Above _CUBED_SEEDS_K centres k-means++ measures a candidate only against the cubes it can
    take points from; the centres must be those of measuring every point."""
    rng = np.random.default_rng(channels)
    centres = rng.uniform(0, 255, (60, channels))
    points = np.clip(centres[rng.integers(0, 60, 12_000)] + rng.normal(0, 12, (12_000, channels)), 0, 255)
    weights = rng.integers(1, 40, len(points)).astype(np.float64)
    k = kmeans._CUBED_SEEDS_K + 44
    draws = rng.random((k - 1, 2 + int(np.log(k))))
    scanned = kmeans._scanned_plusplus(points, weights, 5, draws)
    cubed = kmeans._cubed_plusplus(points, weights, 5, draws, *kmeans._seed_cubes(points))
    assert len(set(scanned.tolist())) == k and np.array_equal(cubed, scanned)


class _WatchedRows:
    """An image read by row strips that notes which threads read it."""

    def __init__(self, pixels: np.ndarray) -> None:
        self.pixels, self.shape, self.readers = pixels, pixels.shape, set()

    def __getitem__(self, rows: slice) -> np.ndarray:
        self.readers.add(threading.current_thread().name)
        return self.pixels[rows]


def test_a_clustering_started_ahead_is_the_one_at_k_gives(ihc: object) -> None:
    """ahead(k) runs at_k(k)'s clustering on a thread of its own, after a psnr= search as a
    search runs it; the result is the same as without, and the image is never read there
    (the caller reads it meanwhile)."""
    pixels = np.asarray(ihc)
    plain = quantize_module.Clustering(pixels)
    plain.at_psnr(30, narrow=False)
    watched = _WatchedRows(pixels)
    early = quantize_module.Clustering(watched)
    early.at_psnr(30, narrow=False)
    early.ahead(40, seedings=1)
    got = early.at_k(40, seedings=1)
    expected = plain.at_k(40, seedings=1)
    assert np.array_equal(expected.indices, got.indices) and np.array_equal(expected.codebook, got.codebook)
    assert "kmq-ahead" not in watched.readers


@pytest.mark.parametrize(("k", "seedings"), [(24, 1), (40, None)])
def test_a_clustering_started_ahead_for_another_k_or_seedings_is_not_taken(ihc: object, k: int, seedings: int | None) -> None:
    pixels = np.asarray(ihc)
    early = quantize_module.Clustering(pixels)
    early.ahead(40, seedings=1)
    got = early.at_k(k, seedings)
    expected = quantize_module.Clustering(pixels).at_k(k, seedings)
    assert np.array_equal(expected.indices, got.indices) and np.array_equal(expected.codebook, got.codebook)


def test_an_error_in_a_clustering_started_ahead_reaches_the_caller(ihc: object, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise MemoryError("no room for the levels")

    monkeypatch.setattr(quantize_module, "quantize_histogram", broken)
    early = quantize_module.Clustering(np.asarray(ihc))
    early.ahead(40)
    with pytest.raises(MemoryError, match="no room"):
        early.at_k(40)
