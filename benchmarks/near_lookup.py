"""Loads of near coded strips whose kernel looks each pixel's codebook entry up as it decodes.

Pillow takes a KMQ image's pixels as codebook entries, one word each (`plugin._entry_words`).
A near_rans or near_flat strip was decoded to indices and then looked up in a pass after;
now the kernel writes each pixel's entry itself, a run's entry once for the whole run
(`near._decode`'s table), unless the strip holds `decoding.NEAR_LOOKUP_BITS` coded bits a
pixel or more (a photo's): there the pass after kept loads faster. Files cannot change: only
the reader did.

Loads (Image.open + load) with ÷ without (NEAR_LOOKUP_BITS = 0: every near strip looked up
after, the reader before), best of --repeat in turns, and both ÷ the same pixels' PNG-8
load (open + convert to RGB, the paletted image saved with optimize=True; up to 256 colours),
for every file that has near coded strips; the strips' coded bits a pixel; whether both loads
give the same pixels. Sets: the drawings made for tuning (`rows_level.py`, `many_colours.py`)
and the held-out graphics (`heldout.py`) at K = 4, 16, 64, 256 and each image's exact colour
count (up to 4,096), default options; the label maps of `zstd_floor.py` (unseen); every third
Kodak photo and the held-out photos with compression="near" at K = 16, 64, 256.

    python benchmarks/near_lookup.py
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable

import heldout
import many_colours
import numpy as np
import rows_level
import zstd_floor
from common import best_times, kodak_images, ratio_text, setting, spread_text
from med_rows import strip_methods
from PIL import Image

import pil_kmq
from pil_kmq import decoding
from pil_kmq.format import NEAR_METHODS

Row = tuple[str, int, float, bool, float, float, float]  # image, k, bits a pixel, same pixels, with ÷ without, with ÷ PNG-8, without ÷ PNG-8


def _load(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return np.asarray(image)


def _without(data: bytes) -> np.ndarray:
    """The reader before: every near strip's entries looked up after it is decoded."""
    with setting(decoding, "NEAR_LOOKUP_BITS", 0):
        return _load(data)


def _png8(data: bytes) -> bytes | None:
    """The same pixels as a PNG-8 (None above 256 colours, or for a mode PNG-8 does not hold)."""
    header, (indices, codebook) = pil_kmq.decode_kmq(data)
    if header.k > 256 or codebook.shape[1] != 3:
        return None
    paletted = Image.fromarray(indices.astype(np.uint8), "P")
    paletted.putpalette(codebook.astype(np.uint8).tobytes())
    out = io.BytesIO()
    paletted.save(out, "PNG", optimize=True)
    return out.getvalue()


def _png8_load(png: bytes) -> None:
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB")


def _near_bits(data: bytes) -> float:
    """Coded bits a pixel of the whole index stream (near strips, and any others)."""
    header, _ = pil_kmq.decode_kmq(data)
    return 8 * header.index_stream_length / (header.width * header.height)


def rows(images: dict[str, Image.Image], ks: Callable[[Image.Image], list[int]], repeat: int, compression: str = "auto") -> tuple[list[Row], int]:
    """The rows of files with near strips, and how many files had none."""
    found, skipped = [], 0
    for name, image in images.items():
        for k in ks(image):
            out = io.BytesIO()
            image.save(out, "KMQ", k=k, compression=compression)
            data = out.getvalue()
            if not set(strip_methods(data)) & set(NEAR_METHODS):
                skipped += 1
                continue
            same = np.array_equal(_load(data), _without(data))
            png = _png8(data)
            functions = [lambda data=data: _load(data), lambda data=data: _without(data)]
            if png is not None:
                functions.append(lambda png=png: _png8_load(png))
            times = best_times(functions, repeat)
            anchor = times[2] if png is not None else float("nan")
            found.append((name, k, _near_bits(data), same, times[0] / times[1], times[0] / anchor, times[1] / anchor))
    return found, skipped


def print_rows(title: str, found: list[Row], skipped: int) -> None:
    print(f"\n#### {title}\n")
    print("| image | K | coded bits a pixel | kernel's table | same pixels | load ÷ without | load ÷ PNG-8 | without ÷ PNG-8 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, k, bits, same, ratio, with_png, without_png in found:
        table = "yes" if bits < decoding.NEAR_LOOKUP_BITS else "no"
        print(f"| {name} | {k} | {bits:.3f} | {table} | {'yes' if same else '**no**'} | {ratio:.3f} | {ratio_text(with_png)} | {ratio_text(without_png)} |")
    anchored = [row for row in found if row[5] == row[5]]
    print(f"| **all** ({len(found)}; {skipped} without near strips) | | | | {sum(row[3] for row in found)} of {len(found)} | {spread_text(row[4] for row in found)} | "
          f"{spread_text(row[5] for row in anchored)} | {spread_text(row[6] for row in anchored)} |")
    for label, chosen in (("kernel's table", [row for row in found if row[2] < decoding.NEAR_LOOKUP_BITS]), ("pass after", [row for row in found if row[2] >= decoding.NEAR_LOOKUP_BITS])):
        if chosen:
            print(f"| {label} ({len(chosen)}) | | | | | {spread_text(row[4] for row in chosen)} | {spread_text(row[5] for row in chosen if row[5] == row[5])} | {spread_text(row[6] for row in chosen if row[6] == row[6])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"pil_kmq {pil_kmq.__version__}; NEAR_LOOKUP_BITS {decoding.NEAR_LOOKUP_BITS}")
    sets = {"Drawings made for tuning": {**rows_level.drawings(), **many_colours.graphics()},
            "Held-out graphics": heldout.graphics(),
            "Label maps generated by zstd_floor.py": zstd_floor.label_maps()}
    for title, images in sets.items():
        print_rows(title, *rows(images, zstd_floor._ks, args.repeat))
    photos = {"Kodak photos, every third, compression=\"near\"": dict(kodak_images()[::3]), "Held-out photos, compression=\"near\"": heldout.photos()}
    for title, images in photos.items():
        print_rows(title, *rows(images, lambda image: [16, 64, 256], args.repeat, "near"))
    print("done")


if __name__ == "__main__":
    main()
