"""A k-means codebook ordered along a path through colour space, against the seeds' order.

Before: a k-means codebook was stored in the order k-means++ drew its seeds; each channel
jumps from entry to entry, so the coded codebook (spec 6.1, each channel's differences from
the entry before, zstd) was no shorter than the raw entries and the codebook stayed raw. Now
the writer orders the entries greedily, from the darkest, each time to the nearest entry left
(`kmeans.path_order`, up to `quantize.PATH_MAX_K` entries). zstd sees one byte value for
another and near_rans ranks by colour up to 1,024 entries, so the strips should change little.

Per set and K: default (`compression="auto"`) file bytes now ÷ before, codebook bytes before and
now, the whole save's time now ÷ before and the load's (best of --repeat, taken in turns), and
for graphics both files ÷ WebP lossless. Sets: the Kodak photos and the drawings made for tuning
(`rows_level.py`, `many_colours.py`), where the order was chosen; the held-out photos and
graphics (`heldout.py`) and their thumbnails 128 pixels wide, never tuned on. Then, for the
limit: `compression="near"` at K = 2,048, path order up to 4,096 entries against none, on every
third Kodak photo and the held-out photos (above 1,024 entries near_rans ranks by index distance).
First: the coded codebook's bytes in the orders tried (seeds', path, luminance, sorted as
numbers), path_order's time, a coded codebook's decoding time warm and cold, and how many
codebooks at an exact colour count code between `coding.CODEBOOK_KEEP` and 1 x their raw bytes.

    pip install '.[bench]'
    python benchmarks/codebook_order.py
"""

from __future__ import annotations

import argparse
from contextlib import AbstractContextManager

import heldout
import many_colours
import numpy as np
import rows_level
import small
from common import best_time, best_times, geomean, kodak_images, saved_kmq, setting, timed, webp_lossless_of
from size import load_kmq
from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)
from pil_kmq import coding, quantize
from pil_kmq.api import decode_kmq
from pil_kmq.decoding import decode_codebook
from pil_kmq.kmeans import path_order

KS = (16, 64, 256)


def path_max_k(limit: int) -> AbstractContextManager[None]:
    """The writer with codebooks of up to `limit` entries put in path order (0: none, as before)."""
    return setting(quantize, "PATH_MAX_K", limit)


def measure(image: Image.Image, k: int, repeat: int, compression: str = "auto") -> tuple[bytes, bytes, float, float]:
    """(file now, file before, save time now ÷ before, load time now ÷ before): best of
    `repeat` saves and of at least 7 loads, now and before taken in turns."""
    saves_now: list[float] = []
    saves_before: list[float] = []
    now = before = b""
    for _ in range(repeat):
        now, seconds = timed(lambda: saved_kmq(image, k, compression))
        saves_now.append(seconds)
        with path_max_k(0):
            before, seconds = timed(lambda: saved_kmq(image, k, compression))
        saves_before.append(seconds)
    # after the saves, in turns: a first load is slower
    load_now, load_before = best_times((lambda: load_kmq(now), lambda: load_kmq(before)), max(repeat, 7))
    return now, before, min(saves_now) / min(saves_before), load_now / load_before


def codebook_bytes(data: bytes) -> int:
    header, quantized = decode_kmq(data)
    return header.codebook_stream_length or quantized.codebook.size


def table(title: str, images: dict[str, Image.Image], repeat: int, ks: tuple[int, ...] = KS, compression: str = "auto", webp: bool = False) -> None:
    print(f"\n### {title}\n")
    print(f"PATH_MAX_K {quantize.PATH_MAX_K}\n")
    extra = " before ÷ WebP-LL | now ÷ WebP-LL |" if webp else ""
    print("| image | K | stored K | codebook bytes before → now | file bytes before | now ÷ before | save now ÷ before | load now ÷ before |" + extra)
    print("|---|---|---|---|---|---|---|---|" + ("---|---|" if webp else ""))
    summary: dict[int, list[tuple[float, float, float]]] = {k: [] for k in ks}
    for name, image in images.items():
        for k in ks:
            now, before, save, load = measure(image, k, repeat, compression)
            summary[k].append((len(now) / len(before), save, load))
            stored = decode_kmq(now)[0].k
            cells = f"| {name} | {k} | {stored} | {codebook_bytes(before):,} → {codebook_bytes(now):,} | {len(before):,} | {len(now) / len(before):.4f} | {save:.2f} | {load:.2f} |"
            if webp:
                anchor = webp_lossless_of(now)
                cells += f" {len(before) / anchor:.3f} | {len(now) / anchor:.3f} |"
            print(cells)
    print("\n| K | images | bytes now ÷ before, geometric mean (smallest, largest) | save now ÷ before, geometric mean (largest) | load now ÷ before, geometric mean (largest) |")
    print("|---|---|---|---|---|")
    for k, rows in summary.items():
        ratios, saves, loads = ([row[i] for row in rows] for i in range(3))
        print(f"| {k} | {len(rows)} | {geomean(ratios):.4f} ({min(ratios):.4f}, {max(ratios):.4f}) | {geomean(saves):.3f} ({max(saves):.2f}) | {geomean(loads):.3f} ({max(loads):.2f}) |")


def coded_ratio(codebook: np.ndarray) -> float:
    """The coded codebook's bytes (spec 6.1, whether or not the writer keeps it) ÷ the raw entries'."""
    return len(coding.coded_codebook(codebook)) / codebook.size


def orders(codebook: np.ndarray) -> dict[str, np.ndarray]:
    """Orders of a codebook that were tried: the seeds' (as k-means made it), the path, by
    luminance, and sorted as numbers (red first), as exact colours come."""
    colours = codebook.astype(np.int64)
    return {"seeds": np.arange(len(codebook)), "path": path_order(codebook),
            "luminance": np.argsort(colours @ np.array([299, 587, 114]), kind="stable"), "red first": np.lexsort(colours.T[::-1])}


def orders_table(title: str, images: dict[str, Image.Image]) -> None:
    """Coded ÷ raw codebook bytes in each order, geometric mean per K (k-means codebooks)."""
    print(f"\n### Coded ÷ raw codebook bytes by order: {title}\n")
    print("| K | images | " + " | ".join(orders(np.zeros((1, 3), np.uint8))) + " |")
    print("|---|---|" + "---|" * 4)
    for k in (64, 256):
        ratios: dict[str, list[float]] = {}
        with path_max_k(0):
            for image in images.values():
                codebook = pil_kmq.compress_image(np.asarray(image), k=k).codebook
                for name, order in orders(codebook).items():
                    ratios.setdefault(name, []).append(coded_ratio(codebook[order]))
        print(f"| {k} | {len(images)} | " + " | ".join(f"{geomean(values):.3f}" for values in ratios.values()) + " |")


def costs() -> None:
    """path_order's time, and decoding a coded codebook of 256 entries warm and after 32 MB were
    touched (caches cold, as in a file's first load)."""
    rng = np.random.default_rng(1)
    for k in (256, 1024):
        codebook = rng.integers(0, 256, (k, 3), dtype=np.uint8)
        print(f"path_order, {k} entries: {best_time(lambda: path_order(codebook), 20) * 1e3:.2f} ms")
    photo = kodak_images()[0][1]
    codebook = pil_kmq.compress_image(np.asarray(photo), k=256).codebook
    coded = coding.encode_codebook(codebook)
    assert coded is not None
    warm = best_time(lambda: decode_codebook(coded, 256, 3), 50)
    scratch, cold = np.zeros(32 << 20, np.uint8), []
    for _ in range(50):
        scratch += 1
        cold.append(best_time(lambda: decode_codebook(coded, 256, 3), 1))
    print(f"decode_codebook, 256 entries ({len(coded)} bytes): warm {warm * 1e6:.0f} µs, cold median {np.median(cold) * 1e6:.0f} µs")


def exact_between(images: dict[str, Image.Image]) -> None:
    """How many codebooks at an exact colour count code between CODEBOOK_KEEP and 1 x their raw bytes."""
    ratios = []
    for image in images.values():
        pixels = np.asarray(image.convert("RGB"))
        ratios.append(coded_ratio(pil_kmq.compress_image(pixels, k=len(image.convert("RGB").getcolors(1 << 24))).codebook))
    between = sum(coding.CODEBOOK_KEEP < ratio < 1 for ratio in ratios)
    print(f"\nExact colours, {len(ratios)} drawings: {between} code between {coding.CODEBOOK_KEEP} and 1 x their raw bytes (ratios {min(ratios):.2f} to {max(ratios):.2f})")


def thumbnails(images: dict[str, Image.Image], width: int = 128) -> dict[str, Image.Image]:
    return {name: image.resize((width, max(1, round(image.height * width / image.width))), Image.Resampling.LANCZOS) for name, image in images.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"pil_kmq {pil_kmq.__version__}")
    kodak = dict(kodak_images())
    orders_table("the first 8 Kodak photos and the drawings of rows_level.py (tuning)", {**dict(list(kodak.items())[:8]), **rows_level.drawings()})
    orders_table("held-out photos and graphics (never tuned on)", {**heldout.photos(), **heldout.graphics()})
    costs()
    exact_between({**rows_level.drawings(), **many_colours.graphics(), **heldout.graphics(), **small.drawn_small()})
    table("Kodak photos", kodak, args.repeat)
    table("Drawings made for tuning", {**rows_level.drawings(), **many_colours.graphics()}, args.repeat, webp=True)
    table("Held-out photos (never tuned on)", heldout.photos(), args.repeat)
    table("Held-out graphics (never tuned on)", heldout.graphics(), args.repeat, webp=True)
    table("Held-out photos and graphics, 128 pixels wide (never tuned on)", thumbnails({**heldout.photos(), **heldout.graphics()}), args.repeat, (64, 256))
    with path_max_k(4096):
        table("compression=\"near\" at K = 2,048: every third Kodak photo", dict(list(kodak.items())[::3]), 1, (2048,), "near")
        table("compression=\"near\" at K = 2,048: held-out photos (never tuned on)", heldout.photos(), 1, (2048,), "near")
    print("done")


if __name__ == "__main__":
    main()
