"""A gigapixel image in bounded memory: pil_kmq.stream on a 32,768 x 32,768 RGB memmap.

The image (1.07 gigapixel, 3.2 GB) is tiled from the Kodak set, every tile flipped or not by
its position, into a .npy file on disk (made once, in benchmarks/cache/). Each phase runs in
its own process, so its peak RSS (VmHWM) is its own:

- encode: stream.encode(np.load(..., mmap_mode="r"), "giga.kmq", k=256);
- decode: stream.decode_into("giga.kmq", an output .npy memmap), and iter_rows alone
  (decoding without writing 3.2 GB to disk);
- anchors, measured in the same run: Image.save(k=256) and Image.open().load() of the 12 MP
  mosaic in memory, as seconds per megapixel.

Then rows sampled across the image are checked: the decoded memmap equals a row-range
decode, and its PSNR against the source is printed.

    python benchmarks/gigapixel.py [--size 32768] [--keep]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import CACHE, KODAK, mosaic
from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)
from pil_kmq import stream
from pil_kmq.quantize import psnr_for_mse

K = 256
TILE_W, TILE_H = 768, 512


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not getrusage's ru_maxrss: across exec that
    keeps the high-water mark of the process that started it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_source(path: Path, size: int) -> None:
    """The Kodak tiles, landscape, flipped by position, row band by row band (bounded memory)."""
    tiles = []
    for tile_path in KODAK:
        with Image.open(tile_path) as image:
            image = image.convert("RGB")
            tiles.append(np.asarray(image if image.width >= image.height else image.transpose(Image.Transpose.ROTATE_90)))
    array = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.uint8, shape=(size, size, 3))
    for band, top in enumerate(range(0, size, TILE_H)):
        rows = min(TILE_H, size - top)
        strip = np.empty((rows, size, 3), dtype=np.uint8)
        for column, left in enumerate(range(0, size, TILE_W)):
            tile = tiles[(band * 7 + column * 5) % len(tiles)]
            tile = tile[:, ::-1] if (band + column) % 2 else tile
            width = min(TILE_W, size - left)
            strip[:, left : left + width] = tile[:rows, :width]
        array[top : top + rows] = strip
        array.flush()
    del array
    os.replace(path.with_suffix(".tmp.npy"), path)


def phase_encode(source: Path, target: Path) -> dict[str, float]:
    array = np.load(source, mmap_mode="r")
    start = time.perf_counter()
    header = stream.encode(array, target, k=K)
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(), "k": header.k, "bytes": target.stat().st_size}


def phase_decode(source: Path, target: Path) -> dict[str, float]:
    with stream.open_kmq(source) as reader:
        out = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=reader.shape)
        start = time.perf_counter()
        reader.decode_into(out)
        out.flush()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def phase_iterate(source: Path) -> dict[str, float]:
    """Decoding alone: every strip decoded to pixels and dropped, nothing written."""
    with stream.open_kmq(source) as reader:
        start = time.perf_counter()
        for _ in reader.iter_rows():
            pass
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss_mb": peak_rss_mb()}


def phase_anchor() -> dict[str, float]:
    image = mosaic()
    megapixels = image.width * image.height / 1e6
    out = io.BytesIO()
    start = time.perf_counter()
    image.save(out, "KMQ", k=K)
    save = time.perf_counter() - start
    start = time.perf_counter()
    with Image.open(io.BytesIO(out.getvalue())) as decoded:
        decoded.load()
    load = time.perf_counter() - start
    return {"save_s_per_mp": save / megapixels, "load_s_per_mp": load / megapixels, "peak_rss_mb": peak_rss_mb()}


def run_phase(name: str, *args: str) -> dict[str, float]:
    result = subprocess.run([sys.executable, __file__, "--phase", name, *args], check=True, capture_output=True, text=True)
    return json.loads(result.stdout.splitlines()[-1])


def check(source: Path, kmq: Path, decoded: Path) -> tuple[bool, float]:
    """Sampled rows: the decoded memmap equals a row-range decode; PSNR against the source."""
    original, result = np.load(source, mmap_mode="r"), np.load(decoded, mmap_mode="r")
    height = original.shape[0]
    same, error, count = True, 0.0, 0
    with stream.open_kmq(kmq) as reader:
        for top in np.linspace(0, height - 64, 16).astype(int):
            rows = reader.read_rows(top, top + 64)
            same &= bool(np.array_equal(rows, result[top : top + 64]))
            difference = rows.astype(np.float64) - original[top : top + 64]
            error += float((difference * difference).sum())
            count += difference.size
    return same, psnr_for_mse(error / count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32768, help="side of the square image (default 32768)")
    parser.add_argument("--keep", action="store_true", help="keep the KMQ and decoded files in benchmarks/cache/")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        if args.phase == "make":
            make_source(Path(args.paths[0]), int(args.paths[1]))
            print(json.dumps({}))
            return
        phases = {"encode": phase_encode, "decode": phase_decode, "iterate": phase_iterate, "anchor": phase_anchor}
        print(json.dumps(phases[args.phase](*map(Path, args.paths))))
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    source = CACHE / f"giga-{args.size}.npy"
    if not source.exists():
        print(f"making {source} ({args.size}x{args.size} RGB, {3 * args.size**2 / 1e9:.1f} GB)...", flush=True)
        run_phase("make", str(source), str(args.size))
    kmq, decoded = CACHE / f"giga-{args.size}.kmq", CACHE / f"giga-{args.size}-decoded.npy"
    megapixels = args.size**2 / 1e6
    anchor = run_phase("anchor")
    encode = run_phase("encode", str(source), str(kmq))
    decode = run_phase("decode", str(kmq), str(decoded))
    iterate = run_phase("iterate", str(kmq))
    same, psnr = check(source, kmq, decoded)
    print(f"{args.size} x {args.size} RGB = {megapixels:,.0f} MP ({3 * args.size**2 / 1e9:.2f} GB), k = {K}: "
          f"{encode['bytes']:,} bytes ({8 * encode['bytes'] / args.size**2:.3f} bits/pixel), k stored {encode['k']}")
    print()
    print("| phase | seconds | s per MP | in-memory anchor s per MP (12 MP mosaic) | ratio | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    rows = (
        ("encode (stream.encode)", encode, "save_s_per_mp"),
        ("decode into a memmap on disk (decode_into)", decode, "load_s_per_mp"),
        ("decode, strips dropped (iter_rows)", iterate, "load_s_per_mp"),
    )
    for name, result, anchor_key in rows:
        per_mp = result["seconds"] / megapixels
        print(f"| {name} | {result['seconds']:.1f} | {per_mp:.4f} | {anchor[anchor_key]:.4f} | {per_mp / anchor[anchor_key]:.2f} | {result['peak_rss_mb']:,.0f} |")
    print()
    print(f"Sampled rows: decoded memmap equals row-range decode: {same}; PSNR against the source {psnr:.2f} dB.")
    print(f"In-memory anchor process peak RSS (12 MP): {anchor['peak_rss_mb']:,.0f} MB.")
    if not args.keep:
        kmq.unlink()
        decoded.unlink()


if __name__ == "__main__":
    main()
