"""Loads in a dataset's order: every file of a set read once in turn, as a training loader or a
viewer walks a folder, KMQ against PNG-8 of the same pixels.

heldout.py and size.py time each file's loads back to back, so whatever one load leaves behind
(arrays the decoder keeps, pages the allocator holds) serves the next load of the same file.
A loader reading different files in turn may find it gone, or too small, and pay for fresh
pages. The files are the Kodak set, the held-out photos and the held-out graphics, default
saves at K = 16, 64, 256 (123 files), and PNG-8 files of the very same pixels
(`optimize=True`), opened and converted to RGB as heldout.py does. A child process that only
loads (as a loader's worker does) walks them three ways: in a new shuffled order each round;
smallest image first, each round; and in folders of five files drawn at random, each walked
in turn --rounds times. In each of the three, the KMQ rounds come first, then the PNG-8 rounds
in the same orders.
A loader meets a file's typical load, not its best: each file's time is its median over the
rounds, and its minor page faults (fresh pages a load wrote to) their mean.

    pip install '.[bench]'
    python benchmarks/dataset_loads.py
"""

from __future__ import annotations

import argparse
import io
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import geomean, kodak_images
from heldout import graphics, photos
from PIL import Image

import pil_kmq

KS = (16, 64, 256)
FOLDER = 5  # files a small folder walk reads in turn: which sizes meet decides what is kept


def _write_files(folder: Path) -> None:
    """Every image of the three sets at every K, as NUMBER__KIND__K.kmq and .png (PNG-8 of the same pixels)."""
    sets = {"Kodak": dict(kodak_images()), "held-out photo": photos(), "held-out graphic": graphics()}
    number = 0
    for kind, images in sets.items():
        for image in images.values():
            for k in KS:
                stem = folder / f"{number:03d}__{kind}__{k}"
                image.convert("RGB").save(stem.with_suffix(".kmq"), "KMQ", k=k)
                _, (indices, codebook) = pil_kmq.decode_kmq(stem.with_suffix(".kmq").read_bytes())
                paletted = Image.fromarray(indices.astype(np.uint8), "P")
                paletted.putpalette(codebook.tobytes())
                paletted.save(stem.with_suffix(".png"), "PNG", optimize=True)
                number += 1


def _read_files(folder: Path) -> list[tuple[str, int, bytes, bytes]]:
    """(kind, K, KMQ bytes, PNG-8 bytes) of the files _write_files made, in its order."""
    files = []
    for path in sorted(folder.glob("*.kmq")):
        _, kind, k = path.stem.split("__")
        files.append((kind, int(k), path.read_bytes(), path.with_suffix(".png").read_bytes()))
    return files


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _walk(datas: list[bytes], order: np.ndarray, load: Callable[[bytes], object], times: list[list[float]], faults: list[list[int]]) -> None:
    """Load each file once, in this order, noting its time and page faults."""
    for number in order:
        before, start = _faults(), time.perf_counter()
        load(datas[number])
        times[number].append(time.perf_counter() - start)
        faults[number].append(_faults() - before)


def _table(title: str, files: list[tuple[str, int, bytes, bytes]], orders: list[np.ndarray]) -> None:
    """Walk the files in each order (one a round), KMQ then PNG-8; print a row per set and K."""
    kmq_times: list[list[float]] = [[] for _ in files]
    png_times: list[list[float]] = [[] for _ in files]
    kmq_faults: list[list[int]] = [[] for _ in files]
    png_faults: list[list[int]] = [[] for _ in files]
    for order in orders:  # one format's walks, then the other's: a loader reads one of them
        _walk([kmq for _, _, kmq, _ in files], order, lambda data: Image.open(io.BytesIO(data)).load(), kmq_times, kmq_faults)
    for order in orders:
        _walk([png for _, _, _, png in files], order, lambda data: Image.open(io.BytesIO(data)).convert("RGB"), png_times, png_faults)
    print(f"\n{title}: {len(files)} files, median of {len(kmq_times[0])} loads each\n")
    print("| set | K | KMQ load ÷ PNG-8 load, geometric mean (worst) | KMQ page faults a load, mean (most) | PNG-8 page faults a load, mean (most) |")
    print("|---|---|---|---|---|")
    for kind in dict.fromkeys(kind for kind, _, _, _ in files):
        for k in KS:
            chosen = [n for n, (row_kind, row_k, _, _) in enumerate(files) if row_kind == kind and row_k == k]
            ratios = [float(np.median(kmq_times[n]) / np.median(png_times[n])) for n in chosen]
            ours, theirs = [float(np.mean(kmq_faults[n])) for n in chosen], [float(np.mean(png_faults[n])) for n in chosen]
            print(f"| {kind} | {k} | {geomean(ratios):.3f} ({max(ratios):.3f}) | {np.mean(ours):.0f} ({max(ours):.0f}) | {np.mean(theirs):.0f} ({max(theirs):.0f}) |", flush=True)


def _walks(folder: Path, rounds: int, seed: int) -> None:
    files = _read_files(folder)
    rng = np.random.default_rng(seed)
    _table("Shuffled, a new order each round (a training loader)", files, [rng.permutation(len(files)) for _ in range(rounds)])
    by_size = np.argsort([np.prod(Image.open(io.BytesIO(kmq)).size) for _, _, kmq, _ in files], kind="stable")
    _table("Smallest image first, each round (a folder of growing sizes)", files, [by_size] * rounds)
    folders = np.array_split(rng.permutation(len(files)), -(-len(files) // FOLDER))
    _table(f"Folders of {FOLDER} files drawn at random, each walked {rounds} times in turn", files, [group for group in folders for _ in range(rounds)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="of the rounds' shuffled orders")
    parser.add_argument("--walk", type=Path, help=argparse.SUPPRESS)  # the child: walk these files
    args = parser.parse_args()
    if args.walk:
        _walks(args.walk, args.rounds, args.seed)
        return
    with tempfile.TemporaryDirectory() as folder:
        _write_files(Path(folder))
        # A loader's process reads and decodes, nothing else: the saves' large arrays, freed,
        # had raised the allocator's threshold for handing memory back, and hid the fresh pages.
        subprocess.run([sys.executable, __file__, "--walk", folder, "--rounds", str(args.rounds), "--seed", str(args.seed)], check=True)


if __name__ == "__main__":
    main()
