"""What rows stored a byte an index would save a drawing of 2 to 16 colours.

A `rows_zstd` strip packs 1, 2 or 4 bits an index at k <= 16 (spec 7.2, "Rows"), so zstd's
matches, whole bytes, find a repeated glyph or edge only where it falls at the same place
within a byte: with 4-bit indices, at an even number of pixels from where it was before.
Antialiased text set at arbitrary positions rarely does. This script measures, for the
default save's files, how much smaller they would be if each strip stored as runs or rows
(`runs_zstd`, `rows_zstd`) were stored as rows of one byte an index through the same zstd
parameters, where that is smaller: a bound on what such a strip method could gain (no format
has it; the choice here is made after compressing both, not by a trial).

Three sets: the drawings made for tuning (`rows_level.py`), the held-out graphics
(`heldout.py`) and graphics made only here, for this measurement (text in DejaVu Sans at two
sizes, a terminal in DejaVu Sans Mono, a table and a route map drawn by matplotlib).

    python benchmarks/byte_rows.py
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import heldout
import numpy as np
import rows_level
import zstandard
from common import figure_image, geomean
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


def _prose(size: int, shape: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng(11 + size)
    words = ("the archive keeps every slide as a codebook of colours and one index a pixel so that "
             "a reader needs only a table look-up to show it again at full size").split()
    image = Image.new("RGB", shape, (252, 252, 248))
    draw = ImageDraw.Draw(image)
    font, step = _font("DejaVuSans.ttf", size), int(size * 1.45)
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
    rng = np.random.default_rng(12)
    image = Image.new("RGB", (900, 560), (18, 20, 24))
    draw = ImageDraw.Draw(image)
    font = _font("DejaVuSansMono.ttf", 13)
    colours = [(200, 200, 200), (120, 200, 120), (230, 180, 90), (110, 160, 230)]
    for line in range(33):
        text = f"$ kmq convert scans/{int(rng.integers(0, 9999)):04d}.tif -k {16 << int(rng.integers(0, 5))} --psnr {rng.uniform(30, 44):.1f}"
        draw.text((8, 6 + line * 16.6), text, fill=colours[line % 4], font=font)
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


def _strips(data: bytes) -> tuple[api.Header, np.ndarray, list[tuple[int, int]]]:
    """The header, the (height, width) indices and each strip's (method, length) of a KMQ file."""
    header, quantized = api.decode_kmq(data)
    indices = quantized.indices.reshape(header.height, header.width)
    if header.index_coding == 0:
        return header, indices, []
    stream = data[header.index_stream_offset : header.index_stream_offset + header.index_stream_length]
    count = coding.strip_count(header.height, struct.unpack_from(">I", stream)[0])
    lengths = [struct.unpack_from(">Q", stream, 4 + 12 * i)[0] for i in range(count)]
    at, found = 4 + 12 * count, []
    for length in lengths:
        found.append((stream[at], length))
        at += length
    return header, indices, found


def byte_rows_saving(data: bytes) -> tuple[int, int]:
    """(bytes saved, strips changed) with rows of one byte an index where smaller than a zstd strip."""
    header, indices, strips = _strips(data)
    strip_height = -(-header.height // max(1, len(strips)))
    saved = changed = 0
    for number, (method, length) in enumerate(strips):
        if method not in ZSTD_METHODS:
            continue
        rows = indices[number * strip_height : (number + 1) * strip_height].astype(np.uint8).tobytes()
        compressor = zstandard.ZstdCompressor(compression_params=coding._rows_parameters(len(rows)))
        wide = 1 + len(compressor.compress(rows))
        if wide < length:
            saved, changed = saved + length - wide, changed + 1
    return saved, changed


def webp_bytes(data: bytes) -> int:
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data)) as opened:
        opened.convert("RGB").save(buffer, "WEBP", lossless=True, quality=100, method=6)
    return len(buffer.getvalue())


def main() -> None:
    sets = {"tuning drawings": rows_level.drawings(), "held-out graphics": heldout.graphics(), "fresh graphics": fresh()}
    print("| set | K | byte rows: file ÷ now, geo (best) | files changed | KMQ ÷ WebP-LL now | with byte rows |")
    print("|---|---|---|---|---|---|")
    details = []
    for name, images in sets.items():
        for k in KS:
            ratios, now, wide, changed = [], [], [], 0
            for image_name, image in images.items():
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, "KMQ", k=k)
                data = buffer.getvalue()
                saved, strips = byte_rows_saving(data)
                webp = webp_bytes(data)
                ratios.append((len(data) - saved) / len(data))
                now.append(len(data) / webp)
                wide.append((len(data) - saved) / webp)
                changed += strips > 0
                if saved:
                    details.append(f"| {name} | {image_name} | {k} | {len(data):,} | {len(data) - saved:,} | {ratios[-1]:.3f} | {now[-1]:.3f} | {wide[-1]:.3f} |")
            print(f"| {name} | {k} | {geomean(ratios):.3f} ({min(ratios):.3f}) | {changed} of {len(images)} | {geomean(now):.3f} | {geomean(wide):.3f} |", flush=True)
    print("\n| set | image | K | KMQ bytes | with byte rows | ÷ now | ÷ WebP-LL now | with byte rows |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(details))


if __name__ == "__main__":
    main()
