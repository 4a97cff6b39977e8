"""Small images: where a format's fixed costs (header, tables, the framing of its compressed
streams) are a large part of the file and of its load. KMQ's bytes ÷ PNG-8 squeezed by oxipng
(level 4) and ÷ WebP lossless (`method=6`), holding the very same pixels, and
`Image.open(kmq).load()` ÷ `Image.open(png8).convert("RGB")` time (PNG-8 with `optimize=True`), for

- thumbnails 16, 32, 64 and 128 pixels wide of the Kodak photos and of the drawings made for
  tuning (`rows_level.py`), at K = 4, 16, 64 (the tuning set);
- the same thumbnails of the held-out photos and graphics (`heldout.py`), and small graphics
  drawn here (2-colour codes, icons, a tile) at their exact colour count (held out: nothing
  was tuned on them).

    pip install '.[bench]'
    python benchmarks/small.py
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import heldout
import numpy as np
import oxipng
import rows_level
from common import best_time, geomean, kodak_images
from PIL import Image, ImageDraw

import pil_kmq  # noqa: F401  (registers KMQ)

WIDTHS = (16, 32, 64, 128)
KS = (4, 16, 64)
LOAD_ROUNDS, LOAD_SECONDS = 3, 0.01


def _bytes(save: object) -> int:
    buffer = io.BytesIO()
    save(buffer)  # type: ignore[operator]
    return len(buffer.getvalue())


def measure(image: Image.Image, k: int) -> tuple[int, float, float, float]:
    """(KMQ bytes, ÷ PNG-8 + oxipng, ÷ WebP lossless, load ÷ PNG-8's) of the pixels a KMQ save at k keeps."""
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=k)
    kmq = buffer.getvalue()
    with Image.open(io.BytesIO(kmq)) as opened:
        decoded = opened.convert("RGB")
    paletted = decoded.quantize(256, method=Image.Quantize.MEDIANCUT)  # exact: at most 256 colours
    assert np.array_equal(np.asarray(paletted.convert("RGB")), np.asarray(decoded))
    png = io.BytesIO()
    paletted.save(png, "PNG", optimize=True)
    squeezed = len(oxipng.optimize_from_memory(png.getvalue(), level=4))
    webp = _bytes(lambda fp: decoded.save(fp, "WEBP", lossless=True, quality=100, method=6))
    return len(kmq), len(kmq) / squeezed, len(kmq) / webp, load_ratio(kmq, png.getvalue())


def load_ratio(kmq: bytes, png: bytes) -> float:
    """KMQ's load time ÷ PNG-8's: each the best of LOAD_ROUNDS rounds, taken in turn, of enough
    loads to last LOAD_SECONDS (a thumbnail loads in tenths of a millisecond)."""
    load_kmq = lambda: Image.open(io.BytesIO(kmq)).load()  # noqa: E731
    load_png = lambda: Image.open(io.BytesIO(png)).convert("RGB")  # noqa: E731
    repeat = max(5, int(LOAD_SECONDS / max(best_time(load_png, 3), 1e-6)))
    kmq_best, png_best = math.inf, math.inf
    for _ in range(LOAD_ROUNDS):
        kmq_best = min(kmq_best, best_time(load_kmq, repeat))
        png_best = min(png_best, best_time(load_png, repeat))
    return kmq_best / png_best


def thumbnails(images: dict[str, Image.Image]) -> Iterator[tuple[int, str, Image.Image]]:
    for width in WIDTHS:
        for name, image in images.items():
            yield width, name, image.resize((width, max(1, round(width * image.height / image.width))), Image.Resampling.LANCZOS)


def drawn_small() -> dict[str, Image.Image]:
    """2-colour codes (random modules with three finder squares), icons, a tile."""
    rng = np.random.default_rng(21)
    found = {f"code-{modules}x{cell}": _code(rng, modules, cell) for modules, cell in ((21, 1), (25, 8), (33, 4))}
    for size, colours in ((16, 4), (32, 6), (64, 8)):
        found[f"icon-{size}"] = _icon(rng, size, colours)
    found["tile-8"] = _icon(rng, 8, 2)
    return found


def _code(rng: np.random.Generator, modules: int, cell: int) -> Image.Image:
    dark = rng.random((modules, modules)) < 0.5
    for top, left in ((0, 0), (0, modules - 7), (modules - 7, 0)):
        dark[top : top + 7, left : left + 7] = True
        dark[top + 1 : top + 6, left + 1 : left + 6] = False
        dark[top + 2 : top + 5, left + 2 : left + 5] = True
    return Image.fromarray(np.where(np.kron(dark, np.ones((cell, cell))) > 0, 0, 255).astype(np.uint8)).convert("RGB")


def _icon(rng: np.random.Generator, size: int, colours: int) -> Image.Image:
    palette = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(colours)]
    image = Image.new("RGB", (size, size), palette[0])
    draw = ImageDraw.Draw(image)
    for colour in palette[1:]:
        left, top = (int(v) for v in rng.integers(0, size - 4, 2))
        draw.rectangle([left, top, left + size // 4, top + size // 5], fill=colour)
    return image


def colours(image: Image.Image) -> int:
    return len(np.unique(np.asarray(image).reshape(-1, 3), axis=0))


def summary(title: str, rows: list[tuple[int, str, int, int, float, float]]) -> None:
    print(f"\n{title}\n")
    print("| width | images | KMQ ÷ PNG-8 + oxipng, geometric mean (worst) | KMQ ÷ WebP-LL, geometric mean (worst) | load ÷ PNG-8, geometric mean (worst) |")
    print("|---|---|---|---|---|")
    for width in sorted({row[0] for row in rows}):
        some = [row for row in rows if row[0] == width]
        png, webp, load = [row[4] for row in some], [row[5] for row in some], [row[6] for row in some]
        print(f"| {width} | {len(some)} | {geomean(png):.3f} ({max(png):.3f}) | {geomean(webp):.3f} ({max(webp):.3f}) | {geomean(load):.2f} ({max(load):.2f}) |")


def main() -> None:
    tuning = dict(kodak_images()) | rows_level.drawings()
    rows = [(width, name, k, *measure(image, k)) for width, name, image in thumbnails(tuning) for k in KS]
    summary("Tuning set: thumbnails of the 24 Kodak photos and 8 drawings, K = 4, 16, 64", rows)
    held = heldout.photos() | heldout.graphics()
    rows = [(width, name, k, *measure(image, k)) for width, name, image in thumbnails(held) for k in KS]
    summary("Held out: thumbnails of the 11 held-out photos and 6 graphics, K = 4, 16, 64", rows)
    print("\nHeld out: small graphics drawn here, at their exact colour count\n")
    print("| image | size | colours | KMQ bytes | ÷ PNG-8 + oxipng | ÷ WebP-LL | load ÷ PNG-8 |")
    print("|---|---|---|---|---|---|---|")
    drawn = []
    for name, image in drawn_small().items():
        n = colours(image)
        size, png, webp, load = measure(image, n)
        drawn.append((png, webp, load))
        print(f"| {name} | {image.width}x{image.height} | {n} | {size} | {png:.3f} | {webp:.3f} | {load:.2f} |")
    means = " | ".join(f"**{geomean(r[i] for r in drawn):.{3 if i < 2 else 2}f}** ({max(r[i] for r in drawn):.{3 if i < 2 else 2}f})" for i in range(3))
    print(f"| **geometric mean** (worst) | | | | {means} |")


if __name__ == "__main__":
    main()
