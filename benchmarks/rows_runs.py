"""Rows that repeat among many literals: the writer's rule against the one before.

Before: rows were tried only for a strip of at most one literal in six pixels (where the quick
trial, zstd level 3 with long-distance matching, takes the smaller of rows and runs). Now a
first strip of many literals whose rows the trial codes in under ROWS_REPEAT x its runs (tiles
or sprites that repeat far apart) cuts the image as a drawing, in one strip up to 2**22 pixels,
whose strips of many literals then try rows too; every photo pays for that trial.

Per image and K: default (`compression="auto"`) file bytes now ÷ before, and the whole save's
time now ÷ before (best of --repeat, taken in turns). Sets: the drawings made for tuning
(`rows_level.py`, `many_colours.py`), where the rule was set; the held-out graphics
(`heldout.py`) and a tile set drawn here (random textured tiles on a grid, never tuned on);
the Kodak photos and the held-out photos, which must not change; and every third Kodak photo
with Gaussian grain (sigma 12, 25, 50) at K = 4, 16, 64, noise that codes its rows smaller than
its runs: also saved without the test of the rows' packed bytes (ROWS_REPEAT_PACKED).

    pip install '.[bench]'
    python benchmarks/rows_runs.py
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator
from contextlib import contextmanager

import heldout
import many_colours
import numpy as np
import rows_level
from common import geomean, kodak_images, timed, webp_lossless_of
from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)
from pil_kmq import coding

KS = (16, 64, 256)


def tile_set(seed: int = 11) -> Image.Image:
    """10 tiles of 24 x 24, each textured at random from three of 24 colours, laid on a 45 x 30
    grid at random: a game map's or a texture atlas's repeats, one literal in about two pixels."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (24, 3), dtype=np.uint8)
    tiles = [rng.choice(rng.integers(0, 24, 3), size=(24, 24), p=[0.5, 0.3, 0.2]) for _ in range(10)]
    grid = rng.integers(0, 10, (30, 45))
    return Image.fromarray(palette[np.block([[tiles[g] for g in row] for row in grid])])


def grainy(seed: int = 3) -> dict[str, Image.Image]:
    """Every third Kodak photo with Gaussian grain of sigma 12, 25 and 50 added."""
    rng = np.random.default_rng(seed)
    found = {}
    for name, image in kodak_images()[::3]:
        pixels = np.asarray(image).astype(np.float64)
        for sigma in (12, 25, 50):
            found[f"{name}-grain{sigma}"] = Image.fromarray(np.clip(pixels + rng.normal(0, sigma, pixels.shape), 0, 255).astype(np.uint8))
    return found


@contextmanager
def rule_before() -> Iterator[None]:
    """The writer as it chose before: no rows among many literals, and no rows trial of a
    photo's first strip."""
    saved = coding.ROWS_REPEAT, coding._drawn
    drawn = coding._drawn  # with no method that may store rows, the first-strip test of before
    coding.ROWS_REPEAT, coding._drawn = 0.0, lambda indices, flags, bits, method: drawn(indices, flags, bits, None)
    try:
        yield
    finally:
        coding.ROWS_REPEAT, coding._drawn = saved


def _saved(image: Image.Image, k: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=k)
    return buffer.getvalue()


def measure(image: Image.Image, k: int, repeat: int) -> tuple[bytes, int, float, float]:
    """(file now, bytes before, best save time now, best save time before), saves in turns."""
    now_times, before_times = [], []
    for _ in range(repeat):
        now, seconds = timed(lambda: _saved(image, k))
        now_times.append(seconds)
        with rule_before():
            before, seconds = timed(lambda: _saved(image, k))
        before_times.append(seconds)
    return now, len(before), min(now_times), min(before_times)


def without_packed_test(image: Image.Image, k: int) -> int:
    """Bytes of a save whose rows need not code under ROWS_REPEAT_PACKED x their packed bytes."""
    saved = coding.ROWS_REPEAT_PACKED
    coding.ROWS_REPEAT_PACKED = float("inf")
    try:
        return len(_saved(image, k))
    finally:
        coding.ROWS_REPEAT_PACKED = saved


def table(title: str, images: dict[str, Image.Image], repeat: int, ks: tuple[int, ...] = KS, ablation: bool = False) -> None:
    print(f"\n### {title}\n")
    print("| image | K | bytes before | bytes now | now ÷ before | save time now ÷ before | before ÷ WebP-LL | now ÷ WebP-LL |")
    print("|---|---|---|---|---|---|---|---|")
    summary: dict[int, list[tuple[float, float]]] = {k: [] for k in ks}
    ablated: dict[int, list[float]] = {k: [] for k in ks}
    for name, image in images.items():
        for k in ks:
            data, before, now_time, before_time = measure(image, k, repeat)
            now = len(data)
            summary[k].append((now / before, now_time / before_time))
            if now != before:
                webp = webp_lossless_of(data)
                print(f"| {name} | {k} | {before:,} | {now:,} | {now / before:.3f} | {now_time / before_time:.2f} | {before / webp:.3f} | {now / webp:.3f} |")
            if ablation:
                ablated[k].append(without_packed_test(image, k) / before)
    print("\n| K | images | files changed | bytes now ÷ before, geometric mean (smallest) | save time now ÷ before, geometric mean (largest) |")
    print("|---|---|---|---|---|")
    for k, rows in summary.items():
        ratios, times = [r for r, _ in rows], [t for _, t in rows]
        changed = sum(r != 1.0 for r in ratios)
        print(f"| {k} | {len(rows)} | {changed} | {geomean(ratios):.3f} ({min(ratios):.3f}) | {geomean(times):.3f} ({max(times):.2f}) |")
    if ablation:
        print("\nWithout the packed-bytes test:\n\n| K | files changed | bytes ÷ before, geometric mean (smallest, largest) |\n|---|---|---|")
        for k, ratios in ablated.items():
            print(f"| {k} | {sum(r != 1.0 for r in ratios)} of {len(ratios)} | {geomean(ratios):.3f} ({min(ratios):.3f}, {max(ratios):.3f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"ROWS_REPEAT {coding.ROWS_REPEAT}; pil_kmq {pil_kmq.__version__}; rows: changed files, then every image in the summary")
    table("Drawings made for tuning", {**rows_level.drawings(), **many_colours.graphics()}, args.repeat)
    table("Held-out graphics and a tile set drawn here (never tuned on)", {**heldout.graphics(), "tile-set": tile_set()}, args.repeat)
    table("Kodak photos", dict(kodak_images()), args.repeat)
    table("Held-out photos", heldout.photos(), args.repeat)
    table("Kodak photos with grain (every third; sigma 12, 25, 50)", grainy(), args.repeat, (4, 16, 64), ablation=True)
    print("done")


if __name__ == "__main__":
    main()
