"""`byte_rows_zstd` strips (KMQ 1.9): rows of whole bytes, for drawings of 2 to 16 colours.

A `rows_zstd` strip packs 1, 2 or 4 bits an index at k <= 16 (spec 7.2, "Rows"), so zstd's
matches, whole bytes, find a repeated glyph or edge only where it falls at the same place
within a byte: with 4-bit indices, at an even number of pixels from where it was before.
Antialiased text set at arbitrary positions rarely does. `byte_rows_zstd` stores the rows a
byte an index; near coding (`compression="near"`, the smallest files) takes it where a sample
of the rows codes under `coding.BYTE_ROWS_MARGIN` x that way (`coding._rows_either_way`). The
default's zstd strips do not try it (the sample's cost), but a strip of at most 16,384 pixels
(tried every way) may have it.

Sets: the drawings made for tuning the rows (`rows_level.py`) and text drawings made here,
on which the margin was set; the held-out graphics (`heldout.py`) and graphics made here
(text in DejaVu Sans at two sizes, a terminal in DejaVu Sans Mono, a matplotlib table and
route map), on which whole-byte rows were first measured; and, with `--unseen`, graphics
made after the margin was set (a bold caption sheet, serif and oblique text, an annotated
scatter plot).

- the margin: for every strip near coding stores as packed rows at k <= 16 with the method
  off (BYTE_ROWS_MARGIN 0: no sample either), whole bytes ÷ packed, zstd's bytes, of the sample
  and of the whole strip;
- the writer: `compression="near"` saves at K = 2, 4, 8, 16 with the method ÷ without it
  (BYTE_ROWS_MARGIN 0; a strip of at most 16,384 pixels would still try it, none here), and
  the bound a choice after compressing every runs or rows strip both ways would reach; save
  and load times in turns (best of 3 and 5); KMQ ÷ WebP lossless before and after.

    python benchmarks/byte_rows.py
"""

from __future__ import annotations

import argparse
import io
import struct
from collections.abc import Callable
from pathlib import Path

import heldout
import numpy as np
import rows_level
from common import best_times, figure_image, geomean, setting
from PIL import Image, ImageDraw, ImageFont

import pil_kmq  # noqa: F401 - registers KMQ
from pil_kmq import api, coding
from pil_kmq.format import StripMethod

KS = (2, 4, 8, 16)
ZSTD_METHODS = (StripMethod.RUNS_ZSTD, StripMethod.ROWS_ZSTD)


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def fresh() -> dict[str, Image.Image]:
    """Graphics no other script makes, and no parameter was chosen on."""
    return {"text-13px": _prose(13, (780, 900)), "text-21px": _prose(21, (900, 700)), "terminal": _terminal(), "table": _table(), "routes": _routes()}


def _prose(size: int, shape: tuple[int, int], font_name: str = "DejaVuSans.ttf", seed: int | None = None) -> Image.Image:
    rng = np.random.default_rng(11 + size if seed is None else seed)
    words = ("the archive keeps every slide as a codebook of colours and one index a pixel so that "
             "a reader needs only a table look-up to show it again at full size").split()
    image = Image.new("RGB", shape, (252, 252, 248))
    draw = ImageDraw.Draw(image)
    font, step = _font(font_name, size), int(size * 1.45)
    for line in range((shape[1] - 40) // step):
        x = 30 + (size if line % 7 == 0 else 0)
        for word in rng.choice(words, 40):
            width = draw.textlength(word + " ", font=font)
            if x + width > shape[0] - 30:
                break
            draw.text((x, 20 + line * step), word, fill=(25, 25, 25), font=font)
            x += width
    return image


def _terminal() -> Image.Image:
    colours = [(200, 200, 200), (120, 200, 120), (230, 180, 90), (110, 160, 230)]

    def line(rng: np.random.Generator, number: int) -> tuple[str, tuple[int, int, int]]:
        text = f"$ kmq convert scans/{int(rng.integers(0, 9999)):04d}.tif -k {16 << int(rng.integers(0, 5))} --psnr {rng.uniform(30, 44):.1f}"
        return text, colours[number % 4]

    return _monospace((900, 560), (18, 20, 24), 13, (8, 6, 16.6), 33, 12, line)


def _monospace(shape: tuple[int, int], paper: tuple[int, int, int], size: int, place: tuple[float, float, float], lines: int, seed: int, line: Callable[[np.random.Generator, int], tuple[str, tuple[int, int, int]]]) -> Image.Image:
    """Lines of DejaVu Sans Mono at `size` pixels: line(rng, number) gives each one's text and
    colour; `place` is (left, top, line pitch)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", shape, paper)
    draw = ImageDraw.Draw(image)
    font = _font("DejaVuSansMono.ttf", size)
    left, top, pitch = place
    for number in range(lines):
        text, colour = line(rng, number)
        draw.text((left, top + number * pitch), text, fill=colour, font=font)
    return image


def _table() -> Image.Image:
    rng = np.random.default_rng(13)

    def draw(figure: object) -> None:
        axes = figure.add_axes((0.02, 0.02, 0.96, 0.96))  # type: ignore[attr-defined]
        axes.set_axis_off()
        cells = [[f"{value:,.1f}" for value in row] for row in rng.normal(500, 200, (18, 7))]
        table = axes.table(cellText=cells, colLabels=[f"site {i}" for i in range(7)], loc="center")
        table.scale(1, 1.3)

    return figure_image(draw, (8, 6))


def _routes() -> Image.Image:
    rng = np.random.default_rng(14)

    def draw(figure: object) -> None:
        axes = figure.add_axes((0, 0, 1, 1))  # type: ignore[attr-defined]
        axes.set_facecolor((0.95, 0.94, 0.90))
        for route in range(9):
            points = np.cumsum(rng.normal(0, 1, (30, 2)), axis=0)
            axes.plot(*points.T, linewidth=1 + route % 4, color=f"C{route}")
            axes.annotate(f"line {route + 1}", points[-1], fontsize=9)
        axes.set_xticks([])
        axes.set_yticks([])

    return figure_image(draw, (8, 6))


def _strips(data: bytes) -> tuple[api.Header, np.ndarray, list[tuple[int, int, np.ndarray]]]:
    """The header, the (height, width) indices and each strip's (method, length, its rows'
    indices) of a KMQ file."""
    header, quantized = api.decode_kmq(data)
    indices = quantized.indices.reshape(header.height, header.width)
    if header.index_coding == 0:
        return header, indices, []
    stream = data[header.index_stream_offset : header.index_stream_offset + header.index_stream_length]
    strip_height = struct.unpack_from(">I", stream)[0]
    count = coding.strip_count(header.height, strip_height)
    lengths = [struct.unpack_from(">Q", stream, 4 + 12 * i)[0] for i in range(count)]
    at, found = 4 + 12 * count, []
    for number, length in enumerate(lengths):
        found.append((stream[at], length, indices[number * strip_height : (number + 1) * strip_height]))
        at += length
    return header, indices, found


def byte_rows_saving(data: bytes) -> int:
    """Bytes saved storing every runs_zstd or rows_zstd strip of a file as rows of whole bytes
    where that codes smaller (the bound of a choice made after compressing both)."""
    header, _, strips = _strips(data)
    saved = 0
    for method, length, rows in strips:
        if method not in ZSTD_METHODS:
            continue
        wide = len(coding._coded_rows(coding._packed_rows(rows, header.bits_per_index, StripMethod.BYTE_ROWS_ZSTD), StripMethod.BYTE_ROWS_ZSTD))
        saved += max(0, length - wide)
    return saved


def margin_rows(data: bytes) -> list[tuple[float, float]]:
    """(sample, whole strip) ratios, whole bytes ÷ packed, of a file's rows_zstd strips."""
    header, _, strips = _strips(data)
    found = []
    for method, _, rows in strips:
        if method != StripMethod.ROWS_ZSTD:
            continue
        ratios = []
        for part in (coding._sampled_rows(rows), rows):
            wide = coding._coded_rows(coding._packed_rows(part, header.bits_per_index, StripMethod.BYTE_ROWS_ZSTD), StripMethod.BYTE_ROWS_ZSTD)
            ratios.append(len(wide) / len(coding._coded_rows(coding._packed_rows(part, header.bits_per_index))))
        found.append((ratios[0], ratios[1]))
    return found


def tuning_text() -> dict[str, Image.Image]:
    """Antialiased text drawn to set the margin: a serif page, a two-column sans page, a
    monospace listing and a labelled bar chart."""
    return {"serif-15px": _prose(15, (820, 760), "DejaVuSerif.ttf", 21), "columns-11px": _columns(), "listing-15px": _listing(), "labelled-bars": _labelled_bars()}


def unseen() -> dict[str, Image.Image]:
    """Graphics made after the margin was set: a bold caption sheet, a serif page at 18
    pixels, an oblique sans page at 12, a matplotlib scatter with annotations."""
    return {"bold-17px": _prose(17, (840, 640), "DejaVuSans-Bold.ttf", 31), "serif-18px": _prose(18, (760, 820), "DejaVuSerif.ttf", 32),
            "oblique-12px": _prose(12, (700, 700), "DejaVuSans-Oblique.ttf", 33), "annotated-scatter": _annotated_scatter()}


def _columns() -> Image.Image:
    image = Image.new("RGB", (900, 700), "white")
    left, right = _prose(11, (440, 700), "DejaVuSans.ttf", 22), _prose(11, (440, 700), "DejaVuSans.ttf", 23)
    image.paste(left, (0, 0))
    image.paste(right, (460, 0))
    return image


def _listing() -> Image.Image:
    names = ["codebook", "indices", "strip", "rows", "width", "bits", "frame", "payload"]

    def line(rng: np.random.Generator, number: int) -> tuple[str, tuple[int, int, int]]:
        indent = 4 * int(rng.integers(0, 4))
        text = " " * indent + f"{rng.choice(names)} = {rng.choice(names)}[{int(rng.integers(0, 99))}] + {rng.choice(names)}"
        return text, (40, 40, 120) if number % 5 else (150, 30, 30)

    return _monospace((820, 700), (250, 250, 250), 15, (10, 8, 19), 36, 24, line)


def _labelled_bars() -> Image.Image:
    rng = np.random.default_rng(25)

    def draw(figure: object) -> None:
        axes = figure.add_axes((0.25, 0.08, 0.7, 0.88))  # type: ignore[attr-defined]
        values = rng.integers(5, 90, 22)
        axes.barh([f"category number {i}" for i in range(22)], values, color="C0")
        for i, value in enumerate(values):
            axes.text(value + 1, i, f"{value} units", va="center", fontsize=8)

    return figure_image(draw, (9, 7))


def _annotated_scatter() -> Image.Image:
    rng = np.random.default_rng(34)

    def draw(figure: object) -> None:
        axes = figure.add_axes((0.08, 0.08, 0.9, 0.9))  # type: ignore[attr-defined]
        points = rng.normal(0, 1, (40, 2))
        axes.scatter(*points.T, c=rng.integers(0, 4, 40), cmap="tab10", s=30)
        for i, (x, y) in enumerate(points):
            axes.annotate(f"sample {i:02d}", (x, y), fontsize=7)

    return figure_image(draw, (8, 6))


def _saved(image: Image.Image, k: int) -> bytes:
    """A near coded save: what tries whole-byte rows."""
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=k, compression="near")
    return buffer.getvalue()


def _load(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()


def writer_rows(name: str, images: dict[str, Image.Image], details: list[str]) -> list[tuple[str, ...]]:
    rows = []
    for k in KS:
        now, bound, save, load, webp_before, webp_after, changed = [], [], [], [], [], [], 0
        for image_name, image in images.items():
            rgb = image.convert("RGB")
            with setting(coding, "BYTE_ROWS_MARGIN", 0.0):
                before = _saved(rgb, k)
            after = _saved(rgb, k)
            webp = webp_bytes(after)

            def save_before(rgb: Image.Image = rgb, k: int = k) -> bytes:
                with setting(coding, "BYTE_ROWS_MARGIN", 0.0):
                    return _saved(rgb, k)

            saves = best_times((save_before, lambda: _saved(rgb, k)), 3)
            loads = best_times((lambda: _load(before), lambda: _load(after)), 5)
            now.append(len(after) / len(before))
            bound.append((len(before) - byte_rows_saving(before)) / len(before))
            save.append(saves[1] / saves[0])
            load.append(loads[1] / loads[0])
            webp_before.append(len(before) / webp)
            webp_after.append(len(after) / webp)
            if after != before:
                changed += 1
                details.append(f"| {name} | {image_name} | {k} | {len(before):,} | {len(after):,} | {now[-1]:.3f} | {bound[-1]:.3f} | {save[-1]:.2f} | {load[-1]:.2f} | {webp_before[-1]:.3f} | {webp_after[-1]:.3f} |")
        rows.append((name, str(k), f"{geomean(now):.3f} ({min(now):.3f})", f"{geomean(bound):.3f}", f"{changed} of {len(images)}", f"{geomean(save):.2f} ({max(save):.2f})",
                     f"{geomean(load):.2f} ({max(load):.2f})", f"{geomean(webp_before):.3f}", f"{geomean(webp_after):.3f}"))
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
    return rows


def webp_bytes(data: bytes) -> int:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data)) as opened:
        opened.convert("RGB").save(buffer, "WEBP", lossless=True, quality=100, method=6)
    return len(buffer.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unseen", action="store_true", help="only the graphics made after the margin was set")
    args = parser.parse_args()
    if args.unseen:
        sets = {"unseen graphics": unseen()}
    else:
        sets = {"tuning drawings": rows_level.drawings(), "tuning text": tuning_text(), "held-out graphics": heldout.graphics(), "fresh graphics": fresh()}
    print("| set | image | K | sample: whole bytes ÷ packed | whole strip |")
    print("|---|---|---|---|---|")
    for name, images in sets.items():
        for image_name, image in images.items():
            for k in KS:
                with setting(coding, "BYTE_ROWS_MARGIN", 0.0):
                    data = _saved(image.convert("RGB"), k)
                for sample, whole in margin_rows(data):
                    print(f"| {name} | {image_name} | {k} | {sample:.3f} | {whole:.3f} |", flush=True)
    print(f"\nBYTE_ROWS_MARGIN {coding.BYTE_ROWS_MARGIN}\n")
    print("| set | K | file ÷ without byte_rows_zstd, geo (best) | bound | files changed | save ÷ without (worst) | load ÷ without (worst) | KMQ ÷ WebP-LL before | after |")
    print("|---|---|---|---|---|---|---|---|---|")
    details: list[str] = []
    for name, images in sets.items():
        writer_rows(name, images, details)
    print("\n| set | image | K | bytes before | after | ÷ before | bound | save ÷ | load ÷ | ÷ WebP-LL before | after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(details))


if __name__ == "__main__":
    main()
