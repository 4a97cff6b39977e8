"""near_flat strips (KMQ 1.8) against near_rans: bytes and loads of the files `compression="near"` writes.

A `near_flat` strip codes a flat stretch (a pixel whose four neighbours are one entry, and
the pixels after it that the row above says would be too, at least 16) as one symbol where
`near_rans` spends a coder step on every pixel (spec 7.2, "Flat stretches"). The writer tries
`near_flat` on a small strip (at most 16,384 pixels) or where a quarter of the pixels or more
equal their four neighbours (`coding.NEAR_FLAT_SHARE`), and keeps the shorter.

Per image and K: the nearest indices (a `k=` save's) written with `compression="near"` as now,
and with every near coded strip `near_rans` (the writer before KMQ 1.8); how many of the first
file's strips are `near_flat`, their bytes (now ÷ near_rans) and their loads
(`Image.open(...).load()`, best of --repeat, taken in turns).
Sets: drawings made for tuning (`rows_level.py`, where the stretch's minimum of 16 pixels was
chosen on the Voronoi label map), every third Kodak photo (also looked at while choosing it), and
the held-out photos and graphics of `heldout.py`, never tuned on (graphics also at their exact
colours, as K = 0 below).

    pip install '.[bench]'
    python benchmarks/near_flat.py
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable

import heldout
import numpy as np
import rows_level
from common import best_times, geomean, kodak_images, setting
from PIL import Image

import pil_kmq
from pil_kmq import coding, near
from pil_kmq.api import compress_image, decode_kmq, encode_kmq
from pil_kmq.coding import iter_table
from pil_kmq.format import StripMethod

KS = (16, 64, 256)


def _near_rans_only(indices: np.ndarray, palette: near.Palette) -> bytes:
    """What the writer stored for a near coded strip before KMQ 1.8."""
    return bytes([StripMethod.NEAR_RANS]) + near.encode_near(indices, palette)


def _files(image: Image.Image, k: int | None) -> tuple[bytes, bytes]:
    """(near_flat file, near_rans file) of the image's nearest indices at k (None: its colours)."""
    pixels = np.asarray(image.convert("RGB"))
    colours = len(image.convert("RGB").getcolors(1 << 24))
    quantized = compress_image(pixels, k=colours if k is None else min(k, colours))
    flat = encode_kmq(*quantized, compression="near")
    with setting(coding, "_near_coded", _near_rans_only):
        plain = encode_kmq(*quantized, compression="near")
    return flat, plain


def _flat_strips(data: bytes) -> str:
    """'n / m': strips stored near_flat, of the strips (each strip's first byte, coding.iter_table)."""
    header, _ = decode_kmq(data)
    if header.index_coding == 0:
        return "0 / 0"
    start = header.index_stream_offset
    fields = (header.height, header.width, header.bits_per_index, header.index_stream_length)
    offsets = [start + offset for _, offset, _, _ in iter_table(lambda at, size: data[at : at + size], start, fields, 0, header.height, True)]
    return f"{sum(data[offset] == StripMethod.NEAR_FLAT for offset in offsets)} / {len(offsets)}"


def _load(data: bytes) -> Callable[[], object]:
    return lambda: Image.open(io.BytesIO(data)).load()


def measure(name: str, image: Image.Image, k: int | None, repeat: int) -> tuple[float, float]:
    flat, plain = _files(image, k)
    flat_load, plain_load = best_times((_load(flat), _load(plain)), repeat)
    ratio, load = len(flat) / len(plain), flat_load / plain_load
    print(f"| {name} | {image.width}x{image.height} | {k or 'exact'} | {_flat_strips(flat)} | {len(plain):,} | {len(flat):,} | {ratio:.3f} | {plain_load * 1e3:.2f} | {flat_load * 1e3:.2f} | {load:.2f} |", flush=True)
    return ratio, load


def table(title: str, images: dict[str, Image.Image], ks: tuple[int | None, ...], repeat: int) -> None:
    for k in ks:
        print(f"\n### {title}, K = {k or 'exact colours'}\n")
        print("| image | size | K | near_flat strips | near_rans bytes | bytes now | ÷ | near_rans load (ms) | load now (ms) | ÷ |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        results = [measure(name, image, k, repeat) for name, image in images.items()]
        ratios, loads = zip(*results, strict=True)
        print(f"| **geometric mean** (best, worst) | | | | | | **{geomean(ratios):.3f}** ({min(ratios):.3f}, {max(ratios):.3f}) | | | **{geomean(loads):.2f}** ({min(loads):.2f}, {max(loads):.2f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    print(f"near_flat ÷ near_rans, pil_kmq {pil_kmq.__version__}")
    table("Drawings made for tuning", rows_level.drawings(), (None, 16), args.repeat)
    table("Kodak photos (every third)", dict(kodak_images()[::3]), KS, args.repeat)
    table("Held-out photos", heldout.photos(), KS, args.repeat)
    table("Held-out graphics", heldout.graphics(), (None, *KS), args.repeat)


if __name__ == "__main__":
    main()
