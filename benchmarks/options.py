"""The psnr= and dither= save options on the Kodak set, measured against plain saves in the same run.

psnr= with compression="none" (bit-packed indices, where psnr= looks for the smallest k;
with strips it looks for the smallest file, measured by rate.py): for each target, the k
chosen, the PSNR reached, whether 10 % fewer colours fall short (is k the smallest?), and the
save time divided by a plain save at that same k (the price of the search). dither=: save time divided by the same save undithered, and how far
8 x 8 block means are from the original (banding), dithered and not. psnr_loss=: file bytes,
PSNR drop and save time against the plain save at the same k, on these Kodak images and on
the held-out photos and graphics (heldout.py, never tuned on; `--loss-only` skips the rest).

    python benchmarks/options.py [--images N] [--loss-only]
"""

from __future__ import annotations

import argparse
import io

import numpy as np
from common import best_time, geomean, kodak_images
from PIL import Image

import pil_kmq
from pil_kmq.quantize import psnr_for_mse, quantize

TARGETS = (30.0, 35.0, 40.0)
DITHER_KS = (16, 256, 1024)


def save(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", **options)
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def psnr(original: np.ndarray, result: np.ndarray) -> float:
    return psnr_for_mse(float(((original.astype(np.float64) - result) ** 2).mean()))


def block_rmse(original: np.ndarray, result: np.ndarray) -> float:
    def blocks(a: np.ndarray) -> np.ndarray:
        h, w = a.shape[0] // 8 * 8, a.shape[1] // 8 * 8
        return a[:h, :w].astype(np.float64).reshape(h // 8, 8, w // 8, 8, -1).mean(axis=(1, 3))

    return float(np.sqrt(((blocks(original) - blocks(result)) ** 2).mean()))


def psnr_rows(images: list[tuple[str, Image.Image]]) -> None:
    print("| image | target dB | k chosen | PSNR reached | PSNR at 0.9 k | psnr= save s | save at that k s | time ratio |")
    print("|---|---|---|---|---|---|---|---|")
    ratios, smallest = {t: [] for t in TARGETS}, []
    for name, image in images:
        pixels = np.asarray(image)
        for target in TARGETS:
            searched = best_time(lambda: save(image, psnr=target, compression="none"), repeat=2)  # the first call also loads compiled kernels
            data = save(image, psnr=target, compression="none")
            k = pil_kmq.decode_kmq(data)[0].k
            plain = best_time(lambda: save(image, k=k, compression="none"), repeat=2)
            fewer = quantize(pixels, max(1, int(0.9 * k)), 0)
            below = psnr(pixels, fewer.codebook[fewer.indices])
            smallest.append(below < target)
            ratios[target].append(searched / plain)
            print(f"| {name} | {target:.0f} | {k} | {psnr(pixels, decoded(data)):.2f} | {below:.2f} | {searched:.2f} | {plain:.2f} | {searched / plain:.2f} |")
    print()
    print("| target dB | psnr= save time / plain save at the chosen k (geo mean) |")
    print("|---|---|")
    for target in TARGETS:
        print(f"| {target:.0f} | {geomean(ratios[target]):.2f} |")
    print(f"\n0.9 k falls short of the target in {sum(smallest)} of {len(smallest)} cases.\n")


def dither_rows(images: list[tuple[str, Image.Image]]) -> None:
    print("| K | dithered save time / plain save (geo mean) | 8x8 block RMSE plain | dithered |")
    print("|---|---|---|---|")
    for k in DITHER_KS:
        ratios, plain_error, dither_error = [], [], []
        for _, image in images:
            pixels = np.asarray(image)
            plain = best_time(lambda: save(image, k=k))
            dithered = best_time(lambda: save(image, k=k, dither=True))
            ratios.append(dithered / plain)
            plain_error.append(block_rmse(pixels, decoded(save(image, k=k))))
            dither_error.append(block_rmse(pixels, decoded(save(image, k=k, dither=True))))
        print(f"| {k} | {geomean(ratios):.2f} | {np.mean(plain_error):.2f} | {np.mean(dither_error):.2f} |")


LOSSES = (0.25, 0.5, 1.0, 2.0)
LOSS_KS = (16, 64, 256)


def loss_rows(title: str, images: list[tuple[str, Image.Image]]) -> None:
    print(f"\n{title}: psnr_loss= against the plain save at the same k (geometric means, worst in brackets)\n")
    print("| K | psnr_loss dB | bytes ÷ plain | PSNR drop dB (max) | save time ÷ plain |")
    print("|---|---|---|---|---|")
    for k in LOSS_KS:
        rows: dict[float, list[tuple[float, float, float]]] = {loss: [] for loss in LOSSES}
        for _, image in images:
            pixels = np.asarray(image)
            plain_data = save(image, k=k)
            plain_psnr, plain_time = psnr(pixels, decoded(plain_data)), best_time(lambda: save(image, k=k), repeat=2)
            for loss in LOSSES:
                data = save(image, k=k, psnr_loss=loss)
                seconds = best_time(lambda: save(image, k=k, psnr_loss=loss), repeat=2)
                traded_psnr = psnr(pixels, decoded(data))
                drop = 0.0 if traded_psnr == plain_psnr else plain_psnr - traded_psnr  # both inf: kept exact
                rows[loss].append((len(data) / len(plain_data), drop, seconds / plain_time))
        for loss, values in rows.items():
            sizes, drops, times = zip(*values)
            print(f"| {k} | {loss} | {geomean(sizes):.3f} ({max(sizes):.3f}) | {np.mean(drops):.2f} ({max(drops):.2f}) | {geomean(times):.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="every (24 / N)-th Kodak image (default 8)")
    parser.add_argument("--loss-only", action="store_true", help="only the psnr_loss= tables")
    args = parser.parse_args()
    images = kodak_images()
    images = images[:: max(1, len(images) // args.images)][: args.images]
    if not args.loss_only:
        psnr_rows(images)
        dither_rows(images)
    import heldout

    loss_rows("Kodak", images)
    loss_rows("Held-out photos", [(name, image.convert("RGB")) for name, image in heldout.photos().items()])
    loss_rows("Held-out graphics", [(name, image.convert("RGB")) for name, image in heldout.graphics().items()])


if __name__ == "__main__":
    main()
