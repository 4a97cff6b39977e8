"""What the default could reach by near coding some images: the byte and load targets together.

The default writes zstd's strips for a photo, whose files load faster than PNG-8's but are
well above the 0.85 x WebP lossless asked of them; `compression="near"` writes files under
0.85 x WebP lossless on the held-out photos that load in over twice PNG-8's time. A writer
free to pick either for each image, knowing both files' bytes and loads, reaches at best
what this script finds (a bound: it picks from the very timings it reports):

- per set and K, both files of every image (`compression="auto"` and `"near"`, the same
  pixels): bytes ÷ WebP lossless (`method=6`) and load (open + load) ÷ PNG-8's (the same
  pixels, `optimize=True`, open + convert to RGB), loads in turns, best of --repeat;
- every image's default file, every image's near file, and the best choice of near coded
  images: the least geometric mean of bytes ÷ WebP lossless whose loads' geometric mean
  stays within PNG-8's (exact: every subset, by meet in the middle; a near file no smaller
  than the default is never chosen);
- the speed-up near coded loads would need for a choice to meet the byte target too (0.85 x
  WebP lossless for photos, 0.95 x for graphics, geometric means), each near load divided by
  the same factor: "none" where no choice meets it however fast near files load, "> 20 x"
  past MOST_SPEED_UP.

Sets: the Kodak photos (tuning), the held-out photos and graphics of `heldout.py` (never
tuned on). Needs the `bench` extra (the held-out photos ship with scikit-image).

    python benchmarks/mix_bound.py             # all three sets, K = 16, 64, 256
    python benchmarks/mix_bound.py --quick     # every third Kodak photo
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Sequence
from typing import NamedTuple

import heldout
import numpy as np
from common import best_times, geomean, kodak_images, saved_kmq, webp_lossless_of
from PIL import Image
from rate import png_of

KS = (16, 64, 256)
BYTE_TARGETS = {"photo": 0.85, "graphic": 0.95}
MOST_SPEED_UP = 20.0


class Ratios(NamedTuple):
    """One image's two files: bytes ÷ WebP lossless's, loads ÷ PNG-8's."""

    default_bytes: float
    near_bytes: float
    default_load: float
    near_load: float


def measure(image: Image.Image, k: int, repeat: int) -> Ratios:
    """Both files of image.save(k=k): the default's and compression="near"'s."""
    default, near = saved_kmq(image, k), saved_kmq(image, k, "near")
    png8, webp = png_of(default), webp_lossless_of(default)  # PNG-8: K <= 256 here
    default_load, near_load, png8_load = best_times((
        lambda: Image.open(io.BytesIO(default)).load(),
        lambda: Image.open(io.BytesIO(near)).load(),
        lambda: Image.open(io.BytesIO(png8)).convert("RGB"),
    ), repeat)
    return Ratios(len(default) / webp, len(near) / webp, default_load / png8_load, near_load / png8_load)


def _subsets(values: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of values and of weights over every subset of these items, and each subset's mask."""
    masks = np.arange(1 << len(values), dtype=np.int64)
    taken = (masks[:, None] >> np.arange(len(values))) & 1
    return taken @ values, taken @ weights, masks


def best_choice(rows: Sequence[Ratios], speed_up: float = 1.0) -> tuple[float, float, int]:
    """(bytes, load, how many near coded), geometric means over the images, for the choice of
    near coded images with the least bytes whose loads' geometric mean stays within PNG-8's
    (near loads divided by speed_up); (inf, the default files' load, 0) where no choice does.
    Only near files smaller than the default are candidates: one of the same bytes (a drawing
    both ways code alike) would be picked or not by its timing's noise."""
    smaller = [row for row in rows if row.near_bytes < row.default_bytes]
    gains = np.log([row.near_bytes / row.default_bytes for row in smaller])
    costs = np.log([row.near_load / speed_up / row.default_load for row in smaller])
    budget = -sum(math.log(row.default_load) for row in rows)  # what the loads' log sum may grow by
    chosen = _least_gain(gains, costs, budget)
    if chosen is None:
        return math.inf, geomean(row.default_load for row in rows), 0
    near = {id(row) for row, taken in zip(smaller, chosen) if taken}
    picked_bytes = [row.near_bytes if id(row) in near else row.default_bytes for row in rows]
    picked_loads = [row.near_load / speed_up if id(row) in near else row.default_load for row in rows]
    return geomean(picked_bytes), geomean(picked_loads), len(near)


def _least_gain(gains: np.ndarray, costs: np.ndarray, budget: float) -> list[bool] | None:
    """The items whose gains sum least with costs summing to at most budget, None where no
    subset (not even none) is within it: every subset of each half, the halves met by cost."""
    half = len(gains) // 2
    first_gain, first_cost, first_mask = _subsets(gains[:half], costs[:half])
    second_gain, second_cost, second_mask = _subsets(gains[half:], costs[half:])
    order = np.argsort(second_cost)
    second_gain, second_cost, second_mask = second_gain[order], second_cost[order], second_mask[order]
    where_best = _running_argmin(second_gain)  # the least gain among those costing at most each
    # a little slack: the budget and the subsets' costs are sums taken in different orders
    affordable = np.searchsorted(second_cost, budget - first_cost + 1e-12, side="right") - 1
    totals = np.where(affordable >= 0, first_gain + second_gain[where_best[np.maximum(affordable, 0)]], np.inf)
    at = int(np.argmin(totals))
    if not np.isfinite(totals[at]):
        return None
    second = int(second_mask[where_best[affordable[at]]])
    return [bool((int(first_mask[at]) >> i) & 1) for i in range(half)] + [bool((second >> i) & 1) for i in range(len(gains) - half)]


def _running_argmin(values: np.ndarray) -> np.ndarray:
    """For each place, where the least value up to it is."""
    places = np.empty(len(values), dtype=np.int64)
    best = 0
    for at, value in enumerate(values):
        if value < values[best]:
            best = at
        places[at] = best
    return places


def speed_up_needed(rows: Sequence[Ratios], target: float) -> float:
    """The least factor near loads must shrink by for some choice to meet the byte target with
    loads within PNG-8's (bisection: a larger factor never leaves fewer choices); inf where
    none would meet it however fast near files load, MOST_SPEED_UP + 1 where one would past it."""
    if geomean(min(row.default_bytes, row.near_bytes) for row in rows) > target:
        return math.inf
    if best_choice(rows)[0] <= target:
        return 1.0
    low, high = 1.0, MOST_SPEED_UP
    if best_choice(rows, high)[0] > target:
        return MOST_SPEED_UP + 1
    for _ in range(30):
        middle = math.sqrt(low * high)
        low, high = (low, middle) if best_choice(rows, middle)[0] <= target else (middle, high)
    return high


def report(kind: str, set_name: str, images: dict[str, Image.Image], repeat: int) -> None:
    for k in KS:
        rows = [measure(image, k, repeat) for image in images.values()]
        mixed_bytes, mixed_load, near_count = best_choice(rows)
        cells = (
            _mean_worst([r.default_bytes for r in rows]), f"{geomean(r.default_load for r in rows):.3f}",
            _mean_worst([r.near_bytes for r in rows]), f"{geomean(r.near_load for r in rows):.3f}",
            "none" if math.isinf(mixed_bytes) else f"{mixed_bytes:.3f}", f"{mixed_load:.3f}", f"{near_count} of {len(rows)}",
            _speed_up_text(speed_up_needed(rows, BYTE_TARGETS[kind])),
        )
        print(f"| {set_name} | {k} | " + " | ".join(cells) + " |", flush=True)


def _mean_worst(values: list[float]) -> str:
    return f"{geomean(values):.3f} ({max(values):.3f})"


def _speed_up_text(needed: float) -> str:
    if math.isinf(needed):
        return "none"
    return f"> {MOST_SPEED_UP:.0f} ×" if needed > MOST_SPEED_UP else f"{needed:.2f} ×"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="every third Kodak photo")
    args = parser.parse_args()
    kodak = dict(kodak_images()[:: 3 if args.quick else 1])
    print(
        "| set | K | default: bytes ÷ WebP-LL (worst) | default: load ÷ PNG-8 | near: bytes ÷ WebP-LL (worst) | near: load ÷ PNG-8 "
        "| best choice: bytes ÷ WebP-LL | its load ÷ PNG-8 | near coded | near loads' speed-up for the byte target |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    report("photo", "Kodak photos", kodak, args.repeat)
    report("photo", "held-out photos", heldout.photos(), args.repeat)
    report("graphic", "held-out graphics", heldout.graphics(), args.repeat)


if __name__ == "__main__":
    main()
