"""Speed: the whole im.save(..., "KMQ", k=K) against what a Pillow user does today for a small
palette file, im.quantize(K, method=MEDIANCUT) then .save(..., "PNG"), and against
libimagequant (pngquant's library, `imagequant`, no dithering) then .save(..., "PNG"); same
image and K, alternated in one process, best of --repeat runs each. The seed method's time
(from cache/seed_method.json) is reported beside it.

    pip install '.[bench]'
    python benchmarks/speed.py            # Kodak set at K = 2, 16, 64, 256, and the 12 MP mosaic at K = 256
"""

from __future__ import annotations

import argparse
import io
import time

import imagequant
import seed_method
from common import geomean, kodak_images, mosaic
from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)

KS = seed_method.KS


def save_kmq(image: Image.Image, k: int) -> None:
    image.save(io.BytesIO(), "KMQ", k=k)


def save_png8(image: Image.Image, k: int) -> None:
    image.quantize(k, method=Image.Quantize.MEDIANCUT).save(io.BytesIO(), "PNG")


def save_liq(image: Image.Image, k: int) -> None:
    imagequant.quantize_pil_image(image, dithering_level=0.0, max_colors=k).save(io.BytesIO(), "PNG")


def alternate(image: Image.Image, k: int, repeat: int) -> tuple[float, float, float]:
    """Best times of KMQ, of the median-cut anchor and of libimagequant's, run in turns so all
    see the same machine state."""
    kmq: list[float] = []
    png8: list[float] = []
    liq: list[float] = []
    for _ in range(repeat):
        for runner, times in ((save_kmq, kmq), (save_png8, png8), (save_liq, liq)):
            start = time.perf_counter()
            runner(image, k)
            times.append(time.perf_counter() - start)
    return min(kmq), min(png8), min(liq)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-mosaic", action="store_true")
    args = parser.parse_args()
    seed = seed_method.load()
    print("| image | K | KMQ save ms | median cut + PNG ms | ratio | libimagequant + PNG ms | ratio | seed method ms |")
    print("|---|---|---|---|---|---|---|---|")
    ratios: dict[int, list[float]] = {k: [] for k in KS}
    liq_ratios: dict[int, list[float]] = {k: [] for k in KS}
    for name, image in kodak_images():
        for k in KS:
            kmq, png8, liq = alternate(image, k, args.repeat)
            ratios[k].append(kmq / png8)
            liq_ratios[k].append(kmq / liq)
            seed_ms = seed.get(f"{name}/{k}", {}).get("seconds", float("nan")) * 1000
            print(f"| {name} | {k} | {kmq * 1000:.1f} | {png8 * 1000:.1f} | {kmq / png8:.3f} | {liq * 1000:.1f} | {kmq / liq:.3f} | {seed_ms:.0f} |", flush=True)
    print()
    print("| K | ÷ median cut + PNG, geometric mean (worst) | ÷ libimagequant + PNG, geometric mean (worst) |")
    print("|---|---|---|")
    for k in KS:
        print(f"| {k} | {geomean(ratios[k]):.3f} ({max(ratios[k]):.3f}) | {geomean(liq_ratios[k]):.3f} ({max(liq_ratios[k]):.3f}) |")
    every, every_liq = [r for k in KS for r in ratios[k]], [r for k in KS for r in liq_ratios[k]]
    print(f"| all | **{geomean(every):.3f}** ({max(every):.3f}) | **{geomean(every_liq):.3f}** ({max(every_liq):.3f}) |")
    if not args.no_mosaic:
        image = mosaic()
        kmq, png8, liq = alternate(image, 256, args.repeat)
        print()
        print("| 12 MP mosaic | K | KMQ save s | median cut + PNG s | ratio | libimagequant + PNG s | ratio |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {image.width}x{image.height} | 256 | {kmq:.2f} | {png8:.2f} | **{kmq / png8:.3f}** | {liq:.2f} | **{kmq / liq:.3f}** |")


if __name__ == "__main__":
    main()
