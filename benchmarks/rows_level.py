"""How `rows_zstd` strips are compressed: bytes and time of candidate zstd settings on drawings
made here for tuning (a bar chart, a code listing, a spreadsheet, a Voronoi label map, a sprite
sheet, a two-colour block pattern, two matplotlib figures), never on the held-out graphics of
heldout.py.

zstd picks its parameters for a level by the input's size: under 256 KB its table searches
deeper (level 17 there is btultra, search log 8) than the table for larger inputs (btopt,
search log 5, matches of 4 bytes and more), which is what a drawing's single strip of a few
hundred KB paid for. The writer's own parameters (`coding._rows_parameters`: the optimal parser
over a window that spans the rows, a shallow search, matches from 3 bytes) are compared with
the levels and with their neighbours.

    python benchmarks/rows_level.py
"""

from __future__ import annotations

import time
from functools import partial
from typing import Any, Callable

import numpy as np
import zstandard
from common import figure_image, geomean
from PIL import Image, ImageDraw

import pil_kmq
from pil_kmq import coding

KS = (16, 64, 256)


def drawings() -> dict[str, Image.Image]:
    rng = np.random.default_rng(7)
    return {"bars": _bars(rng), "code": _code(rng), "sheet": _sheet(rng), "voronoi": _voronoi(rng), "sprites": _sprites(rng), "blocks": _blocks(rng),
            "plot-hist": _plot_hist(), "scatter-barh": _scatter_barh()}


def _bars(rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (820, 460), "white")
    draw = ImageDraw.Draw(image)
    colours = [tuple(int(c) for c in rng.integers(30, 230, 3)) for _ in range(6)]
    for i, value in enumerate(rng.integers(40, 400, 24)):
        draw.rectangle([40 + i * 32, 430 - int(value), 62 + i * 32, 430], fill=colours[i % 6], outline="black")
    for y in range(30, 431, 50):
        draw.line([30, y, 800, y], fill=(200, 200, 200))
        draw.text((2, y - 6), str(430 - y), fill="black")
    return image


def _code(rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (760, 980), (30, 30, 36))
    draw = ImageDraw.Draw(image)
    words = ["def", "return", "for", "in", "if", "else", "self", "value", "items", "count", "np.array", "(", ")", ":", "=", "+"]
    palette = [(220, 220, 170), (86, 156, 214), (206, 145, 120), (181, 206, 168), (200, 200, 200)]
    for line in range(70):
        x = 10 + 24 * int(rng.integers(0, 4))
        for _ in range(int(rng.integers(2, 9))):
            word = words[int(rng.integers(0, len(words)))]
            draw.text((x, 6 + line * 14), word, fill=palette[int(rng.integers(0, len(palette)))])
            x += 8 * len(word) + 6
    return image


def _sheet(rng: np.random.Generator) -> Image.Image:
    image = Image.new("RGB", (900, 620), "white")
    draw = ImageDraw.Draw(image)
    for row in range(31):
        for column in range(9):
            box = [column * 100, row * 20, column * 100 + 100, row * 20 + 20]
            draw.rectangle(box, fill=(232, 240, 254) if row == 0 or column == 0 else "white", outline=(208, 208, 208))
            if row and column:
                draw.text((box[0] + 4, box[1] + 4), f"{rng.normal(1000, 400):.2f}", fill=(0, 0, 0) if rng.random() > 0.1 else (192, 0, 0))
    return image


def _voronoi(rng: np.random.Generator) -> Image.Image:
    sites = rng.uniform(0, 1, (40, 2)) * (700, 520)
    y, x = np.mgrid[0:520, 0:700]
    label = np.argmin((x[..., None] - sites[:, 0]) ** 2 + (y[..., None] - sites[:, 1]) ** 2, axis=2)
    palette = rng.integers(0, 256, (40, 3), dtype=np.uint8)
    return Image.fromarray(palette[label])


def _sprites(rng: np.random.Generator) -> Image.Image:
    palette = rng.integers(0, 256, (20, 3), dtype=np.uint8)
    tiles = [rng.integers(0, 20, (16, 16)) for _ in range(12)]
    sheet = np.block([[tiles[int(rng.integers(0, 12))] for _ in range(24)] for _ in range(16)])
    return Image.fromarray(palette[sheet]).resize((768, 512), Image.Resampling.NEAREST)


def _blocks(rng: np.random.Generator) -> Image.Image:
    cells = rng.random((60, 80)) < 0.4
    return Image.fromarray(np.where(cells, 0, 255).astype(np.uint8)).resize((800, 600), Image.Resampling.NEAREST).convert("RGB")


def _plot_hist() -> Image.Image:
    """Antialiased lines, markers, a legend and a histogram: thousands of colours."""

    def draw(figure: Any) -> None:
        axes = figure.subplots(1, 2)
        t = np.linspace(0, 6, 150)
        for s in range(3):
            axes[0].plot(t, np.cos(t * (1 + s / 4)) + s, marker="o" if s == 0 else None, markersize=3, label=f"run {s}")
        axes[0].legend()
        axes[0].grid(True)
        axes[0].set_xlabel("time")
        axes[1].hist(np.random.default_rng(11).normal(0, 1, 800), bins=20, color="C3")
        axes[1].set_title("distribution")

    return figure_image(draw, (8.5, 4.8))


def _scatter_barh() -> Image.Image:
    def draw(figure: Any) -> None:
        rng = np.random.default_rng(5)
        axes = figure.subplots(2, 1)
        axes[0].scatter(rng.uniform(0, 1, 150), rng.uniform(0, 1, 150), c=rng.integers(0, 5, 150), cmap="tab10", s=12)
        axes[0].grid(True)
        axes[1].barh(range(8), rng.integers(2, 30, 8), color=[f"C{i}" for i in range(8)])
        axes[1].set_title("by region")

    return figure_image(draw, (7, 7))


Setting = Callable[[int], zstandard.ZstdCompressionParameters]


def settings() -> dict[str, Setting]:
    """Candidates, each the parameters for rows of a given size: a level (zstd's table for the
    input's size), the level's table for large inputs whatever the size, the writer's
    parameters and the same with one of them changed."""
    candidates: dict[str, Setting] = {str(level): partial(_level, level) for level in (15, 16, 17)}
    candidates["17 (large-input table)"] = lambda size: zstandard.ZstdCompressionParameters.from_level(17, write_content_size=True)
    candidates["writer's"] = coding._rows_parameters
    for name, change in (("search 4, target 256 (before)", {"search_log": 4, "target_length": 256}), ("search 4", {"search_log": 4}),
                         ("search 7", {"search_log": 7}), ("target 256", {"target_length": 256}), ("target 4096", {"target_length": 4096}),
                         ("min match 4", {"min_match": 4}), ("btultra", {"strategy": zstandard.STRATEGY_BTULTRA}),
                         ("btultra2", {"strategy": zstandard.STRATEGY_BTULTRA2}), ("btultra2, search 7", {"strategy": zstandard.STRATEGY_BTULTRA2, "search_log": 7})):
        candidates[f"writer's, {name}"] = partial(_changed, change)
    return candidates


def _level(level: int, size: int) -> zstandard.ZstdCompressionParameters:
    return zstandard.ZstdCompressionParameters.from_level(level, source_size=size, write_content_size=True)


def _changed(change: dict[str, int], size: int) -> zstandard.ZstdCompressionParameters:
    fields = ("window_log", "chain_log", "hash_log", "search_log", "min_match", "target_length", "strategy")
    writer = coding._rows_parameters(size)
    return zstandard.ZstdCompressionParameters(**({name: getattr(writer, name) for name in fields} | change), write_content_size=True)


def compressed(rows: bytes, setting: Setting) -> tuple[int, float]:
    """(bytes, best of 5 seconds)."""
    compressor = zstandard.ZstdCompressor(compression_params=setting(len(rows)))
    best, size = np.inf, 0
    for _ in range(5):
        start = time.perf_counter()
        size = len(compressor.compress(rows))
        best = min(best, time.perf_counter() - start)
    return size, best


def main() -> None:
    candidates = settings()
    sizes: dict[str, list[float]] = {name: [] for name in candidates}
    times: dict[str, list[float]] = {name: [] for name in candidates}
    print("| drawing | K | rows bytes | " + " | ".join(f"{name}: bytes, ms" for name in candidates) + " |")
    print("|---|---|---|" + "---|" * len(candidates))
    for name, image in drawings().items():
        for k in KS:
            quantized = pil_kmq.compress_image(np.asarray(image), k=k)
            bits = max(1, int(np.ceil(np.log2(max(2, len(quantized.codebook))))))
            rows = coding._packed_rows(quantized.indices, bits)
            cells = []
            for setting_name, setting in candidates.items():
                size, seconds = compressed(rows, setting)
                sizes[setting_name].append(size)
                times[setting_name].append(seconds)
                cells.append(f"{size:,}, {seconds * 1000:.1f}")
            print(f"| {name} | {k} ({len(quantized.codebook)}) | {len(rows):,} | " + " | ".join(cells) + " |")
    reference = "17"
    print()
    print("| setting | bytes ÷ level 17 (worst) | time ÷ level 17 (worst) |")
    print("|---|---|---|")
    for name in candidates:
        size_ratios = [a / b for a, b in zip(sizes[name], sizes[reference])]
        time_ratios = [a / b for a, b in zip(times[name], times[reference])]
        print(f"| {name} | {geomean(size_ratios):.4f} ({max(size_ratios):.4f}) | {geomean(time_ratios):.3f} ({max(time_ratios):.3f}) |")


if __name__ == "__main__":
    main()
