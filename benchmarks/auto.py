"""compression="auto" (the default) on graphics, at their exact colour count and at K = 16, 64,
256: where the writer codes near_rans strips instead of zstd's, and what that costs.

A k= save is coded with zstd's strips; when those take AUTO_MIN_BYTES or more and the indices
look drawn (few literals) or keep the image exactly in more than AUTO_PNG8_K colours, rows
sampled one in AUTO_STEP estimate its near_rans bytes, and at most AUTO_NEAR_MARGIN of zstd's
it is coded near_rans (in a photo's strips, unweighed; one strip where mostly flat) and the
smaller kept ("—": not estimated). Per image: colours, K (entries), zstd's bytes, the estimate and near_rans's real
bytes (compression="near") ÷ zstd's, what auto chose, its file ÷ zstd's, its save time ÷
zstd's (best of 7, taken in turns), the estimate's share of a zstd save, and loads of both ÷
PNG's (PNG-8, or PNG-24 above 256 entries, `optimize=True`) of the same pixels. Two sets: the
drawings made for tuning (`rows_level.py`, `many_colours.py`), where the margin was chosen,
and the held-out graphics of `heldout.py`, on which the margin was not tuned (the pixel art
among them showed the first estimate's flaw: benchmarks/README.md).

    pip install '.[bench]'
    python benchmarks/auto.py
"""

from __future__ import annotations

import io
from collections.abc import Callable

import heldout
import many_colours
import numpy as np
import rows_level
from common import best_time, geomean, saved_kmq
from size import load_kmq, load_png8
from PIL import Image

import pil_kmq
from pil_kmq import codec, near
from pil_kmq.api import Exact, compress_image
from pil_kmq.format import StripMethod

REPEAT = 7
KS = (16, 64, 256)  # lossy saves, besides each image's exact colours


def _colours(image: Image.Image) -> int:
    pixels = np.asarray(image).reshape(-1, 3)
    return len(np.unique(pixels.view(np.dtype((np.void, 3)))))


def _png(image: Image.Image, colours: int) -> bytes:
    out = io.BytesIO()
    (image.quantize(colours, method=Image.Quantize.MEDIANCUT) if colours <= 256 else image).save(out, "PNG", optimize=True)
    return out.getvalue()


def _alternated(first: Callable[[], object], second: Callable[[], object]) -> tuple[float, float]:
    """The best of REPEAT runs of each, taken in turns: a noisy machine slows both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEAT):
        for function, kept in zip((first, second), times, strict=True):
            kept.append(best_time(function, 1))
    return min(times[0]), min(times[1])


def measure(name: str, image: Image.Image, k: int | None) -> list[str] | None:
    """One row: at the image's exact colour count where k is None."""
    image = image.convert("RGB")
    colours = _colours(image)
    k = colours if k is None else k
    if k > near.MAX_K:
        return None
    zstd, auto, nearest = (saved_kmq(image, k, c) for c in ("zstd", "auto", "near"))
    quantized = compress_image(np.asarray(image), k, compression="zstd")
    exact = isinstance(quantized, Exact)
    estimate = near.estimated_size(quantized.indices, quantized.codebook, codec.AUTO_STEP)
    zstd_stream = sum(len(part) for part in codec.coded(quantized, StripMethod.RUNS_ZSTD).index_stream[1])
    chose = "zstd" if auto == zstd else "near_rans"
    save_zstd, save_auto = _alternated(lambda: saved_kmq(image, k, "zstd"), lambda: saved_kmq(image, k, "auto"))
    probe = best_time(lambda: near.estimated_size(quantized.indices, quantized.codebook, codec.AUTO_STEP), REPEAT)
    with Image.open(io.BytesIO(zstd)) as decoded:
        png = _png(decoded.convert("RGB"), len(quantized.codebook))  # the same pixels
    png_load = best_time(lambda: load_png8(png), REPEAT * 2)
    loads = [best_time(lambda data=data: load_kmq(data), REPEAT * 2) / png_load for data in (zstd, auto)]
    gated = not codec.auto_estimates(quantized, exact, zstd_stream)
    estimated, share = ("—", "—") if gated else (f"{estimate / zstd_stream:.3f}", f"{probe / save_zstd:.1%}")
    return [name, f"{image.width}x{image.height}", str(colours), str(len(quantized.codebook)), f"{len(zstd):,}", estimated, f"{len(nearest) / len(zstd):.3f}", chose,
            f"{len(auto) / len(zstd):.3f}", f"{save_auto / save_zstd:.2f}", share, f"{loads[0]:.2f}", f"{loads[1]:.2f}"]


def table(title: str, images: dict[str, Image.Image], k: int | None = None) -> None:
    print(f"\n### {title}{'' if k is None else f', K = {k}'}\n")
    print("| image | size | colours | K | zstd bytes | estimate ÷ zstd | near ÷ zstd | auto chose | auto ÷ zstd bytes | auto save ÷ zstd save | estimate's share of a zstd save | zstd load ÷ PNG | auto load ÷ PNG |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = [row for name, image in images.items() if (row := measure(name, image, k)) is not None]
    for row in rows:
        print("| " + " | ".join(row) + " |", flush=True)
    mean = [geomean(float(row[i]) for row in rows) for i in (8, 9, 11, 12)]
    print(f"| **geometric mean** | | | | | | | | **{mean[0]:.3f}** | **{mean[1]:.2f}** | | **{mean[2]:.2f}** | **{mean[3]:.2f}** |")


def main() -> None:
    print(f"compression=\"auto\" (AUTO_STEP {codec.AUTO_STEP}, AUTO_NEAR_MARGIN {codec.AUTO_NEAR_MARGIN}, AUTO_MIN_BYTES {codec.AUTO_MIN_BYTES:,}); pil_kmq {pil_kmq.__version__}")
    sets = {"Drawings made for tuning": {**rows_level.drawings(), **many_colours.graphics()},
            "Held-out graphics (the margin was not tuned on them; the pixel art, see above)": heldout.graphics()}
    for k in (None, *KS):
        for title, images in sets.items():
            table(title, images, k)
    print("done")


if __name__ == "__main__":
    main()
