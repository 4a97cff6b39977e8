"""A codebook's near tables made in two halves side by side, before strips go to the pool.

Near coding ranks entries by colour distance from each entry: up to `near.COLOUR_ORDER_K`
entries a reader and a writer make a k x k table of those orders (`near.palette_tables`),
most of the time numpy's sort. They were made in the first near strip's job while the other
job waited for them. Now, above `near.SPLIT_TABLES_K` entries, they are made on the calling
thread before the strips' jobs go to the pool (`codec.tables_first`, `near.coding_palette`),
in two halves of the rows side by side where a worker is spare. Files cannot change.

Loads (Image.open + load) and saves, with ÷ without (SPLIT_TABLES_K = MAX_K: the tables made
whole, in the first job that needs them, as before), best of 2 × --repeat and of --repeat,
each pair in turns (loads taken apart from saves: in turns with them, their times scattered);
whether the saved file is byte for byte the same; the tables alone, halves ÷ whole, and made
whole in ms; each set by K and whole. Every third Kodak photo and the held-out photos with
compression="near" at K = 257, 512, 768, 1,024, and the graphics of `many_colours.py` and the
held-out graphics kept exactly where they have 257 to 1,024 colours (default options; only
files with near strips count, the rest are listed).

    python benchmarks/near_tables.py
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import heldout
import many_colours
import numpy as np
import rows_level
from common import best_times, kodak_images, saved_kmq, setting, spread_text
from med_rows import strip_methods
from size import load_kmq
from PIL import Image

import pil_kmq
from pil_kmq import near
from pil_kmq.format import NEAR_METHODS

KS = (257, 512, 768, 1024)

Row = tuple[str, int, bool, float, float, float, float]  # image, k, same file, load ÷ without, save ÷ without, tables: halves ÷ whole, whole in ms


def _without() -> object:
    """The writer and reader before: tables made whole, in the first job that needs them."""
    return setting(near, "SPLIT_TABLES_K", near.MAX_K)


def _tables_times(data: bytes, repeat: int) -> tuple[float, float]:
    """The tables made in halves ÷ made whole, and made whole in ms."""
    codebook = pil_kmq.decode_kmq(data)[1].codebook

    def whole() -> None:
        with _without():
            near.palette_tables(codebook)

    halves, alone = best_times((lambda: near.palette_tables(codebook), whole), repeat)
    return halves / alone, 1e3 * alone


def rows(images: dict[str, Image.Image], ks: Callable[[Image.Image], list[int]], repeat: int, compression: str) -> tuple[list[Row], list[str]]:
    found, skipped = [], []
    for name, image in images.items():
        for k in ks(image):
            data = saved_kmq(image, k, compression)
            if not set(strip_methods(data)) & set(NEAR_METHODS):
                skipped.append(f"{name} at {k}")
                continue
            with _without():
                same = saved_kmq(image, k, compression) == data

            def load_without(data: bytes = data) -> None:
                with _without():
                    load_kmq(data)

            def save_without(image: Image.Image = image, k: int = k) -> None:
                with _without():
                    saved_kmq(image, k, compression)

            load, load_before = best_times((lambda data=data: load_kmq(data), load_without), 2 * repeat)  # loads apart from saves, which upset them
            save, save_before = best_times((lambda image=image, k=k: saved_kmq(image, k, compression), save_without), repeat)
            found.append((name, k, same, load / load_before, save / save_before, *_tables_times(data, repeat)))
    return found, skipped


def print_rows(title: str, found: list[Row], skipped: list[str]) -> None:
    print(f"\n#### {title}\n")
    print("| image | K | same file | load ÷ without | save ÷ without | tables: halves ÷ whole | tables made whole, ms |")
    print("|---|---|---|---|---|---|---|")
    for name, k, same, load, save, tables, whole in found:
        print(f"| {name} | {k} | {'yes' if same else '**no**'} | {load:.3f} | {save:.3f} | {tables:.3f} | {whole:.2f} |")
    for k in sorted({row[1] for row in found}):
        at = [row for row in found if row[1] == k]
        print(f"| **K = {k}** ({len(at)}) | | {sum(row[2] for row in at)} of {len(at)} | {spread_text(row[3] for row in at)} | {spread_text(row[4] for row in at)} | "
              f"{spread_text(row[5] for row in at)} | {spread_text(row[6] for row in at)} |")
    if found:
        print(f"| **all** ({len(found)}) | | {sum(row[2] for row in found)} of {len(found)} | {spread_text(row[3] for row in found)} | {spread_text(row[4] for row in found)} | "
              f"{spread_text(row[5] for row in found)} | |")
    if skipped:
        print(f"\nWithout near strips: {', '.join(skipped)}.")


def _exact(image: Image.Image) -> list[int]:
    """The image's colour count where the tables are made and split (257 to 1,024), else none."""
    colours = len(image.getcolors(near.COLOUR_ORDER_K) or ())
    return [colours] if colours > near.SPLIT_TABLES_K else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"pil_kmq {pil_kmq.__version__}; SPLIT_TABLES_K {near.SPLIT_TABLES_K}, COLOUR_ORDER_K {near.COLOUR_ORDER_K}")
    graphics = {**rows_level.drawings(), **many_colours.graphics(), **{f"held-out {name}": image for name, image in heldout.graphics().items()}}
    print_rows("Graphics at their exact colours, 257 to 1,024 (default options)", *rows(graphics, _exact, args.repeat, "auto"))
    photos = {"Kodak photos, every third": dict(kodak_images()[::3]), "Held-out photos": heldout.photos()}
    for title, images in photos.items():
        print_rows(f"{title}, compression=\"near\"", *rows(images, lambda image: list(KS), args.repeat, "near"))
    print("done")


if __name__ == "__main__":
    main()
