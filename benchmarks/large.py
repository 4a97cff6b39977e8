"""Memory and large K on the 12 MP mosaic.

- Peak memory of im.save(..., "KMQ", k=256) above the input image, in bytes per pixel:
  tracemalloc (numpy and Python allocations; the input is Pillow's own memory), and the
  peak resident memory of a fresh process above its resident memory before the save (which
  also counts what tracemalloc does not see: the compiled kernels' own arrays).
- Time of K = 4,096, and K = 65,536 end to end (correct, lossless below 65,536 colours).

    python benchmarks/large.py
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
import tracemalloc

import numpy as np
from common import mosaic
from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)


def peak_bytes_per_pixel(image: Image.Image, k: int) -> float:
    # Load the compiled kernels first (from numba's cache, or compiled on a first run): their
    # loading is not the save's memory.
    image.crop((0, 0, 1024, 768)).save(io.BytesIO(), "KMQ", k=k)
    tracemalloc.start()
    tracemalloc.reset_peak()
    out = io.BytesIO()
    image.save(out, "KMQ", k=k)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # The written file is output the caller asked for; count it too (it is part of the peak).
    return peak / (image.width * image.height)


_RSS_CHILD = """
import io, sys
sys.path.insert(0, {here!r})
from common import mosaic
import pil_kmq
image = mosaic()
image.save(io.BytesIO(), "KMQ", k=8)  # load the compiled kernels before the baseline
def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) * 1024
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS:")
image.save(io.BytesIO(), "KMQ", k=256)
print((status("VmHWM:") - before) / (image.width * image.height))
"""


def peak_rss_per_pixel() -> float:
    """Peak resident memory of the save in a fresh process, above the process before it."""
    from pathlib import Path

    code = _RSS_CHILD.format(here=str(Path(__file__).resolve().parent))
    return float(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)


def timed_save(image: Image.Image, k: int) -> tuple[float, bytes]:
    out = io.BytesIO()
    start = time.perf_counter()
    image.save(out, "KMQ", k=k)
    return time.perf_counter() - start, out.getvalue()


def main() -> None:
    image = mosaic()
    pixels = image.width * image.height
    print(f"12 MP mosaic: {image.width}x{image.height} = {pixels / 1e6:.1f} MP")
    print()
    print("| case | figure | target |")
    print("|---|---|---|")
    print(f"| peak memory, save at K=256 (tracemalloc) | {peak_bytes_per_pixel(image, 256):.2f} bytes/pixel | <= 8 |")
    print(f"| peak resident memory, save at K=256 (fresh process) | {peak_rss_per_pixel():.2f} bytes/pixel | <= 8 |")
    seconds, _ = timed_save(image, 4096)
    print(f"| save at K=4,096 | {seconds:.2f} s | < 10 s |")
    seconds, data = timed_save(image, 65536)
    with Image.open(io.BytesIO(data)) as decoded:
        colours = len(np.unique(np.asarray(decoded).reshape(-1, 3), axis=0))
    print(f"| save at K=65,536 | {seconds:.2f} s, {colours:,} colours, {len(data):,} bytes | works |")
    small = image.reduce(16)  # fewer than 65,536 colours: must come back exactly
    distinct = len(np.unique(np.asarray(small).reshape(-1, 3), axis=0))
    seconds, data = timed_save(small, 65536)
    with Image.open(io.BytesIO(data)) as decoded:
        lossless = decoded.tobytes() == small.tobytes()
    print(f"| K=65,536 on a {small.width}x{small.height} reduction ({distinct:,} colours) | {seconds:.2f} s, lossless: {lossless} | lossless |")


if __name__ == "__main__":
    main()
