"""Rate-distortion: file bytes at equal PSNR against libimagequant (pngquant's library) + oxipng.

Per photo, four curves of (PSNR, bytes):
- libimagequant, no dithering, K = 4 ... 256, its PNG squeezed by oxipng (level 4): what a
  careful user ships today;
- KMQ `k=K`, the same K: nearest-entry indices (the default save);
- KMQ `psnr=P`, P = 26 ... 44 dB: the smallest file pil_kmq finds that reaches P (k and
  rate-optimized indices searched together; compression="auto" searches near coded strips,
  spec 7.2, unless their estimate is over 1.1 x zstd's bytes: both up to 1.6 x);
- the same with `compression="zstd"` (runs and rows only: faster loads).
For both psnr= curves: save time ÷ a plain `k=` save at the k chosen, and load time ÷ the load
of a PNG of the same pixels (`optimize=True`: PNG-8 up to 256 entries, else RGB; open +
convert), each the best of two saves and five loads.

BD-rate (Bjøntegaard delta rate): the mean difference of log(bytes) between two curves, each
interpolated as a monotone cubic in PSNR over the PSNR range both cover, as a percentage;
negative means smaller files than the anchor. The Kodak set (tuning) and the held-out photos
(heldout.py) are reported apart, per image and as geometric means. --plot draws the mean
curves of both sets into a PNG (the README's figure).

    pip install '.[bench]'
    python benchmarks/rate.py --plot benchmarks/rate-distortion.png
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from common import best_times, geomean, kodak_images
from PIL import Image
from scipy.interpolate import PchipInterpolator
from size import load_kmq, load_png8

import pil_kmq  # noqa: F401 - registers KMQ
from pil_kmq.quantize import psnr_for_mse

KS = (4, 8, 16, 32, 64, 128, 256)
TARGETS = (26, 29, 32, 35, 38, 41, 44)
Curve = list[tuple[float, int]]  # (PSNR dB, bytes)


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    difference = original.astype(np.int64) - decoded.astype(np.int64)
    return psnr_for_mse(float((difference * difference).mean()))


def libimagequant_curve(image: Image.Image) -> Curve:
    import imagequant
    import oxipng

    pixels, curve = np.asarray(image), []
    for k in KS:
        paletted = imagequant.quantize_pil_image(image, dithering_level=0.0, max_colors=k)
        buffer = io.BytesIO()
        paletted.save(buffer, "PNG")
        squeezed = oxipng.optimize_from_memory(buffer.getvalue(), level=4)
        curve.append((psnr(pixels, np.asarray(paletted.convert("RGB"))), len(squeezed)))
    return curve


def kmq_point(image: Image.Image, **options: object) -> tuple[float, int, int, float, bytes]:
    """(PSNR, bytes, stored k, save seconds, the file) of one KMQ save."""
    buffer = io.BytesIO()
    start = time.perf_counter()
    image.save(buffer, "KMQ", **options)
    seconds = time.perf_counter() - start
    with Image.open(io.BytesIO(buffer.getvalue())) as opened:
        return psnr(np.asarray(image), np.asarray(opened.convert("RGB"))), len(buffer.getvalue()), opened.kmq_header.k, seconds, buffer.getvalue()


def png_of(kmq: bytes) -> bytes:
    """A PNG of the KMQ file's very pixels: PNG-8 up to 256 entries, else RGB (optimize=True)."""
    header, (indices, codebook) = pil_kmq.decode_kmq(kmq)
    if header.k <= 256:
        image = Image.fromarray(indices.astype(np.uint8), "P")
        image.putpalette(codebook.tobytes(), "RGB")
    else:
        image = Image.fromarray(codebook[indices], "RGB")
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def psnr_point(image: Image.Image, target: float, compression: str) -> tuple[tuple[float, int], float, float]:
    """((PSNR, bytes), save time ÷ a plain save at its k, load time ÷ its pixels' PNG's)."""
    quality, size, k, seconds, data = kmq_point(image, psnr=target, compression=compression)
    seconds = min(seconds, kmq_point(image, psnr=target, compression=compression)[3])  # best of 2, as the plain save
    plain = min(kmq_point(image, k=k, compression=compression)[3] for _ in range(2))
    png = png_of(data)
    load, load_png = best_times([lambda: load_kmq(data), lambda: load_png8(png)], 5)
    return (quality, size), seconds / plain, load / load_png


def _interpolated(curve: Curve) -> tuple[PchipInterpolator, float, float]:
    points = sorted(set(curve))
    xs, ys = [], []
    for quality, size in points:
        if xs and quality <= xs[-1] + 1e-6:
            continue  # equal PSNR: keep the smaller file (listed first)
        xs.append(quality)
        ys.append(np.log(size))
    return PchipInterpolator(xs, ys), xs[0], xs[-1]


def bd_rate(test: Curve, anchor: Curve) -> float:
    """Mean log-bytes difference of test against anchor over their common PSNR range, in %."""
    test_fit, test_low, test_high = _interpolated(test)
    anchor_fit, anchor_low, anchor_high = _interpolated(anchor)
    low, high = max(test_low, anchor_low), min(test_high, anchor_high)
    if high - low < 0.5:
        return float("nan")
    grid = np.linspace(low, high, 200)
    return float(np.expm1(np.mean(test_fit(grid) - anchor_fit(grid))) * 100)


def measure(name: str, image: Image.Image) -> dict[str, object]:
    row: dict[str, object] = {"name": name, "liq": libimagequant_curve(image), "nearest": [kmq_point(image, k=k)[:2] for k in KS], "pixels": image.width * image.height}
    for key, compression in (("traded", "auto"), ("zstd", "zstd")):
        points = [psnr_point(image, target, compression) for target in TARGETS]
        row[key] = [point for point, _, _ in points]
        row[f"{key}_save"], row[f"{key}_save_worst"] = geomean(save for _, save, _ in points), max(save for _, save, _ in points)
        row[f"{key}_load"], row[f"{key}_load_worst"] = geomean(load for _, _, load in points), max(load for _, _, load in points)
    row["traded_vs_liq"] = bd_rate(row["traded"], row["liq"])
    row["zstd_vs_liq"] = bd_rate(row["zstd"], row["liq"])
    row["nearest_vs_liq"] = bd_rate(row["nearest"], row["liq"])
    row["traded_vs_nearest"] = bd_rate(row["traded"], row["nearest"])
    return row


def _ratio(percent: Iterable[float]) -> float:
    """Geometric mean of BD-rates as ratios, back to a percentage."""
    return (geomean(1 + value / 100 for value in percent) - 1) * 100


def report(title: str, rows: list[dict[str, object]]) -> None:
    print(f"\n### {title}\n")
    print(
        "| image | KMQ psnr= vs libimagequant + oxipng | KMQ k= vs libimagequant + oxipng | KMQ psnr= vs KMQ k= | psnr= save ÷ plain save (mean, worst) "
        "| psnr= load ÷ PNG load (mean, worst) | KMQ psnr=, compression=\"zstd\", vs libimagequant + oxipng | its save ÷ plain save | its load ÷ PNG load |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['name']} | {row['traded_vs_liq']:+.1f} % | {row['nearest_vs_liq']:+.1f} % | {row['traded_vs_nearest']:+.1f} % "
            f"| {row['traded_save']:.2f}, {row['traded_save_worst']:.2f} | {row['traded_load']:.2f}, {row['traded_load_worst']:.2f} | {row['zstd_vs_liq']:+.1f} % "
            f"| {row['zstd_save']:.2f}, {row['zstd_save_worst']:.2f} | {row['zstd_load']:.2f}, {row['zstd_load_worst']:.2f} |"
        )
    columns = ("traded_vs_liq", "nearest_vs_liq", "traded_vs_nearest", "zstd_vs_liq")
    means = [_ratio(row[column] for row in rows if np.isfinite(row[column])) for column in columns]
    worst = [max(row[column] for row in rows if np.isfinite(row[column])) for column in columns]
    times = {key: geomean(row[key] for row in rows) for key in ("traded_save", "traded_load", "zstd_save", "zstd_load")}
    print(
        f"| **geometric mean** | **{means[0]:+.1f} %** | **{means[1]:+.1f} %** | **{means[2]:+.1f} %** | **{times['traded_save']:.2f}** | **{times['traded_load']:.2f}** "
        f"| **{means[3]:+.1f} %** | **{times['zstd_save']:.2f}** | **{times['zstd_load']:.2f}** |"
    )
    print(
        f"| worst image | {worst[0]:+.1f} % | {worst[1]:+.1f} % | {worst[2]:+.1f} % | {max(row['traded_save_worst'] for row in rows):.2f} "
        f"| {max(row['traded_load_worst'] for row in rows):.2f} | {worst[3]:+.1f} % | {max(row['zstd_save_worst'] for row in rows):.2f} "
        f"| {max(row['zstd_load_worst'] for row in rows):.2f} |"
    )


def mean_curve(rows: list[dict[str, object]], key: str, grid: np.ndarray) -> np.ndarray:
    """Geometric-mean bits per pixel at each PSNR of grid, over the images whose curve covers it."""
    logs = np.full((len(rows), len(grid)), np.nan)
    for number, row in enumerate(rows):
        fit, low, high = _interpolated(row[key])
        inside = (grid >= low) & (grid <= high)
        logs[number, inside] = fit(grid[inside]) + np.log(8 / row["pixels"])
    mean = np.full(len(grid), np.nan)
    covered = np.isfinite(logs).all(axis=0)  # only where every image's curve reaches
    mean[covered] = np.exp(logs[:, covered].mean(axis=0))
    return mean


def plot(sets: dict[str, list[dict[str, object]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(26, 44, 73)
    figure, axes = plt.subplots(1, len(sets), figsize=(5.2 * len(sets), 4), sharey=True)
    for axis, (title, rows) in zip(np.atleast_1d(axes), sets.items()):
        for key, label, style in (
            ("liq", "libimagequant + oxipng (PNG-8)", "C0--"),
            ("nearest", "KMQ k= (nearest entries)", "C1:"),
            ("zstd", "KMQ psnr=, compression=\"zstd\"", "C3-"),
            ("traded", "KMQ psnr= (default)", "C2-"),
        ):
            axis.plot(grid, mean_curve(rows, key, grid), style, label=label)
        axis.set_title(f"{title}: {len(rows)} photos")
        axis.set_xlabel("PSNR (dB)")
        axis.grid(True, alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("bits per pixel (geometric mean)")
    np.atleast_1d(axes)[0].legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    print(f"\nwrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=0, help="only the first N images of each set (0: all)")
    parser.add_argument("--plot", type=Path, help="write the mean rate-distortion curves to this PNG")
    args = parser.parse_args()
    import heldout

    sets = {"Kodak": kodak_images(), "held-out": list(heldout.photos().items())}
    results = {}
    for title, images in sets.items():
        chosen = images[: args.images] if args.images else images
        results[title] = [measure(name, image.convert("RGB")) for name, image in chosen]
        report(f"{title} photos (BD-rate at equal PSNR; negative: smaller)", results[title])
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
