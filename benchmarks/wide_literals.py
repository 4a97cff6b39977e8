"""16-bit literals (k > 256) of runs strips: which zstd level, and what the writer's level
(`coding.WIDE_LITERALS_LEVEL`) does to whole files against level 15, the level of everything else.

Part 1, the literal streams alone, on every third Kodak photo (tuned on) at k = 512, k = 2,048
and psnr=42: bytes of flags + literals and the literals' compression time at levels 15, 16,
17 and 19. Part 2, whole files of the writer against the same writer with level 15 for them:
every third Kodak photo and the held-out photos of heldout.py (never tuned on) at k = 512,
2,048 and psnr=42, and the graphics above 256 colours at their exact colour count
(many_colours.py's, the drawings made for tuning of rows_level.py and heldout.py's); file
bytes, save and load time (best of 3 saves and 9 loads, in turns), and the files ÷ WebP
lossless (`method=6`) of the same pixels.

    pip install '.[bench]'
    python benchmarks/wide_literals.py              # --whole-only: part 2 alone
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Iterator

import heldout
import many_colours
import numpy as np
import rows_level
import zstandard
from common import best_times, geomean, kodak_images, setting
from PIL import Image

import pil_kmq
from pil_kmq import coding
from pil_kmq.format import bits_for_k

LEVELS = (15, 16, 17, 19)
PHOTO_CASES = ("k=512", "k=2048", "psnr=42")


def _quantized(image: Image.Image, case: str) -> pil_kmq.Quantized:
    pixels = np.asarray(image.convert("RGB"))
    name, value = case.split("=")
    return pil_kmq.compress_image(pixels, k=int(value)) if name == "k" else pil_kmq.compress_image(pixels, psnr=float(value))


def literal_levels(photos: dict[str, Image.Image]) -> None:
    print("| photo | case | K | " + " | ".join(f"level {level}: bytes, literals ms" for level in LEVELS) + " |")
    print("|---|---|---|" + "---|" * len(LEVELS))
    sizes: dict[int, list[float]] = {level: [] for level in LEVELS}
    times: dict[int, list[float]] = {level: [] for level in LEVELS}
    for name, image in photos.items():
        for case in PHOTO_CASES:
            quantized = _quantized(image, case)
            bits = bits_for_k(len(quantized.codebook))
            if bits <= 8:
                continue
            flags, literals = coding._runs_streams(quantized.indices, coding._run_flags(quantized.indices), bits)
            flag_bytes = len(zstandard.ZstdCompressor(level=coding.ZSTD_LEVEL).compress(flags))
            cells, found = [], {}
            for level in LEVELS:
                compressor = zstandard.ZstdCompressor(level=level)
                coded: list[bytes] = []
                (seconds,) = best_times((lambda: coded.append(compressor.compress(literals)),), 3)
                found[level] = (flag_bytes + len(coded[-1]), seconds)
                cells.append(f"{found[level][0]:,}, {seconds * 1000:.1f}")
            for level in LEVELS:
                sizes[level].append(found[level][0] / found[15][0])
                times[level].append(found[level][1] / found[15][1])
            print(f"| {name} | {case} | {len(quantized.codebook)} | " + " | ".join(cells) + " |", flush=True)
    print("\n| literals' level | strip bytes ÷ level 15 (worst) | literals' time ÷ level 15 |")
    print("|---|---|---|")
    for level in LEVELS:
        print(f"| {level} | {geomean(sizes[level]):.4f} ({max(sizes[level]):.4f}) | {geomean(times[level]):.2f} |")


def _cases(images: dict[str, Image.Image], photo: bool) -> Iterator[tuple[str, Image.Image, str]]:
    for name, image in images.items():
        if photo:
            yield from ((name, image, case) for case in PHOTO_CASES)
        else:
            colours = len(image.getcolors(1 << 24) or ())
            if colours > 256:
                yield name, image, f"k={colours}"


def _save(image: Image.Image, case: str) -> bytes:
    name, value = case.split("=")
    out = io.BytesIO()
    image.save(out, "KMQ", **{name: int(value) if name == "k" else float(value)})
    return out.getvalue()


def whole_files(kind: str, images: dict[str, Image.Image], photo: bool) -> list[tuple[float, float, float]]:
    results = []
    for name, image, case in _cases(images, photo):
        files: dict[str, bytes] = {}

        def save(level: int, which: str) -> None:
            with setting(coding, "WIDE_LITERALS_LEVEL", level):
                files[which] = _save(image, case)

        now = coding.WIDE_LITERALS_LEVEL
        save_now, save_before = best_times((lambda: save(now, "now"), lambda: save(coding.ZSTD_LEVEL, "before")), 3)
        if files["now"] == files["before"]:
            continue
        load_now, load_before = best_times([lambda data=files[which]: Image.open(io.BytesIO(data)).load() for which in ("now", "before")], 9)
        webp = io.BytesIO()
        Image.open(io.BytesIO(files["now"])).save(webp, "WEBP", lossless=True, quality=100, method=6)
        ratios = (len(files["now"]) / len(files["before"]), save_now / save_before, load_now / load_before)
        results.append(ratios)
        header = pil_kmq.decode_kmq(files["now"])[0]
        print(f"| {kind} | {name} | {case} | {header.k} | {len(files['before']):,} | {len(files['now']):,} | {ratios[0]:.3f} | {ratios[1]:.2f} | {ratios[2]:.2f} "
              f"| {len(files['before']) / len(webp.getvalue()):.3f} | {len(files['now']) / len(webp.getvalue()):.3f} |", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--whole-only", action="store_true", help="part 2 only: whole files")
    kodak = dict(list(kodak_images())[::3])
    if not parser.parse_args().whole_only:
        literal_levels(kodak)
    print(f"\nWhole files, literals at level {coding.WIDE_LITERALS_LEVEL} (now) against level {coding.ZSTD_LEVEL} (before); files that did not change are left out:\n")
    print("| set | image | case | K | bytes before | bytes now | now ÷ before | save now ÷ before | load now ÷ before | before ÷ WebP-LL | now ÷ WebP-LL |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    sets = {
        "Kodak (tuned on)": (kodak, True),
        "held-out photos": (heldout.photos(), True),
        "graphics above 256 colours": (many_colours.graphics() | {f"tuning {n}": i for n, i in rows_level.drawings().items()} | {f"held-out {n}": i for n, i in heldout.graphics().items()}, False),
    }
    summary = {kind: whole_files(kind, images, photo) for kind, (images, photo) in sets.items()}
    print("\n| set | files changed | bytes now ÷ before (smallest, largest) | save time (largest) | load time (largest) |")
    print("|---|---|---|---|---|")
    for kind, results in summary.items():
        if results:
            columns = list(zip(*results))
            print(f"| {kind} | {len(results)} | {geomean(columns[0]):.3f} ({min(columns[0]):.3f}, {max(columns[0]):.3f}) | {geomean(columns[1]):.2f} ({max(columns[1]):.2f}) | {geomean(columns[2]):.2f} ({max(columns[2]):.2f}) |")


if __name__ == "__main__":
    main()
