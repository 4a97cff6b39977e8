"""`med_rows_zstd` strips (KMQ 1.10): a grayscale image's indices as MED residuals.

A grayscale image's codebook runs from dark to light, so its indices are grey levels, and
runs along rows (the default's strips) leave a photo's literals as noisy as its pixels. The
method stores each index as its residual from the MED prediction of its left, above and
above-left neighbours (spec 7.2, "Predicted rows"); the writer tries it where the codebook
ascends (or descends) in every channel, and stores it where zstd's quick trial codes it under
`coding.MED_SURE` x the way it took, the smaller of the two up to `coding.MED_MARGIN` x
(`coding._predicted_or`).

Sets: the Kodak set as grey (the margin was set on its trial ratios); the held-out photos
(`heldout.py`) as grey, never tuned on (their chelsea was among the images the method was first
tried on); greyscale images shipped with scikit-image: those the method and its zstd parameters
were first tried on (camera, coins, page, text, clock, moon, brick, grass, gravel; a bound) and
three no choice was made on (microaneurysms, cell, the Shepp-Logan phantom); and, as a check,
the Kodak set in colour, whose codebooks do not run from dark to light (no file may change).

Per image and K = 16, 64, 256, default saves with the method ÷ without it (the writer before
KMQ 1.10: `codec.predictable` off, so no trial either): bytes, which strips changed, save and
load times (in turns, best of 3 and 9); both files ÷ WebP lossless (`method=6`) and ÷ a
grayscale PNG (`optimize=True`) of the same pixels, and the load ÷ that PNG's; the near coded
file ÷ its own without the method.

    python benchmarks/med_rows.py
"""

from __future__ import annotations

import argparse
import io
import struct

import heldout
import numpy as np
from common import best_times, geomean, kodak_images, setting
from PIL import Image

import pil_kmq  # noqa: F401 - registers KMQ
from pil_kmq import codec
from pil_kmq.format import StripMethod

KS = (16, 64, 256)


def _grey(image: Image.Image) -> Image.Image:
    return image.convert("L")


def sets() -> dict[str, dict[str, Image.Image]]:
    """The sets, each {name: image}, in the order they are reported."""
    import skimage.data

    def shipped(names: tuple[str, ...]) -> dict[str, Image.Image]:
        return {name: Image.fromarray(getattr(skimage.data, name)()).convert("L") for name in names}

    phantom = (skimage.data.shepp_logan_phantom() * 255).round().astype(np.uint8)
    return {
        "Kodak, grey (tuning)": {name: _grey(image) for name, image in kodak_images()},
        "held-out photos, grey": {name: _grey(image) for name, image in heldout.photos().items()},
        "shipped grey, seen": shipped(("camera", "coins", "page", "text", "clock", "moon", "brick", "grass", "gravel")),
        "shipped grey, unseen": {**shipped(("microaneurysms", "cell")), "shepp_logan_phantom": Image.fromarray(phantom)},
        "Kodak, colour (check)": dict(kodak_images()),
    }


def _save(image: Image.Image, k: int, compression: str = "auto") -> bytes:
    out = io.BytesIO()
    image.save(out, "KMQ", k=k, compression=compression)
    return out.getvalue()


def _without(function):  # noqa: ANN001, ANN202 - any call, run with the writer before KMQ 1.10
    def run():  # noqa: ANN202
        with setting(codec, "predictable", lambda codebook: False):
            return function()

    return run


def strip_methods(data: bytes) -> list[int]:
    """Each strip's strip_method byte (index_coding 1), [] for an uncoded stream."""
    header, _ = pil_kmq.decode_kmq(data)
    if header.index_coding == 0:
        return []
    start = 44 + header.extension_length + (header.codebook_stream_length or header.k * header.channels)
    (strip_height,) = struct.unpack_from(">I", data, start)
    count = -(-header.height // strip_height)
    at, methods = start + 4 + 12 * count, []
    for number in range(count):
        (length,) = struct.unpack_from(">Q", data, start + 4 + 12 * number)
        methods.append(data[at])
        at += length
    return methods


def _load(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def measure(image: Image.Image, k: int) -> dict[str, float]:
    new = _save(image, k)
    old = _without(lambda: _save(image, k))()
    near, old_near = _save(image, k, "near"), _without(lambda: _save(image, k, "near"))()
    with Image.open(io.BytesIO(new)) as decoded:
        pixels = decoded.copy()
    png, webp = io.BytesIO(), io.BytesIO()
    pixels.save(png, "PNG", optimize=True)
    pixels.save(webp, "WEBP", lossless=True, quality=100, method=6)
    save_new, save_old = best_times((lambda: _save(image, k), _without(lambda: _save(image, k))), 3)
    load_new, load_old, load_png = best_times((lambda: _load(new), lambda: _load(old), lambda: _load(png.getvalue())), 9)
    methods = strip_methods(new)
    return {
        "bytes": len(new) / len(old),
        "changed": float(new != old),
        "med_strips": sum(method == StripMethod.MED_ROWS_ZSTD for method in methods) / max(1, len(methods)),
        "webp_before": len(old) / len(webp.getvalue()),
        "webp_after": len(new) / len(webp.getvalue()),
        "png_before": len(old) / len(png.getvalue()),
        "png_after": len(new) / len(png.getvalue()),
        "save": save_new / save_old,
        "load": load_new / load_old,
        "load_png": load_new / load_png,
        "near": len(near) / len(old_near),
    }


COLUMNS = ("bytes", "med_strips", "webp_before", "webp_after", "png_before", "png_after", "save", "load", "load_png", "near")
TITLES = (
    "file ÷ without", "strips predicted", "÷ WebP-LL before", "÷ WebP-LL after", "÷ PNG (grey) before", "÷ PNG (grey) after",
    "save ÷ without", "load ÷ without", "load ÷ PNG (grey)", "near file ÷ without",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first three images of each set")
    arguments = parser.parse_args()
    summary = []
    for set_name, images in sets().items():
        chosen = dict(list(images.items())[:3]) if arguments.quick else images
        print(f"\n### {set_name}\n\n| image | K | " + " | ".join(TITLES) + " |\n|" + "---|" * (len(TITLES) + 2))
        rows: dict[int, list[dict[str, float]]] = {k: [] for k in KS}
        for name, image in chosen.items():
            for k in KS:
                row = measure(image, k)
                rows[k].append(row)
                print(f"| {name} | {k} | " + " | ".join(f"{row[column]:.3f}" for column in COLUMNS) + " |", flush=True)
        for k in KS:
            summary.append((set_name, k, rows[k]))
    print("\n### Per set and K: geometric mean (best, worst); strips predicted: mean share; files changed\n")
    print("| set | K | files changed | strips predicted | file ÷ without | ÷ WebP-LL before | ÷ WebP-LL after | ÷ PNG (grey) before | ÷ PNG (grey) after | save ÷ without | load ÷ without | load ÷ PNG (grey) | near file ÷ without |")
    print("|" + "---|" * 13)
    for set_name, k, found in summary:
        def cell(column: str) -> str:
            values = [row[column] for row in found]
            return f"{geomean(values):.3f} ({min(values):.3f}, {max(values):.3f})"

        changed = sum(int(row["changed"]) for row in found)
        share = float(np.mean([row["med_strips"] for row in found]))
        print(f"| {set_name} | {k} | {changed} of {len(found)} | {share:.2f} | " + " | ".join(cell(column) for column in ("bytes", "webp_before", "webp_after", "png_before", "png_after", "save", "load", "load_png", "near")) + " |")


if __name__ == "__main__":
    main()
