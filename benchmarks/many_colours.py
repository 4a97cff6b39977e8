"""Graphics above 256 colours, stored at their exact colour count, against the writer without
its two ways for them. (1) Antialiased text and shapes keep colours of their own and break
runs, so literals no longer tell a drawing from a photo: above 256 colours the writer codes the
first strip in halves by a quick trial and gives one strip to what repeats far apart. (2) The
entries of exact colours come sorted and step little: their differences are coded by zstd
(spec 6.1) where that is shorter (since codebook_order.py: an eighth shorter or more).

Graphics drawn here (none of them measured before this script: a dashboard, a window of
controls shaded by gradients, a document page, a flowchart, matplotlib line plots and a heat
map with labels), the eight drawings made for tuning (`rows_level.py`), the held-out graphics
(`heldout.py`; its UI screenshot is where (1) was found), and photos at K = 512 (a third of the
Kodak set and the package photos of `heldout.py`), which must keep a photo's strips and (until
codebook_order.py's path order) a raw codebook. Per image: strips, codebook bytes and file bytes before and now, each change's
share, save time, and both against WebP lossless (`method=6`) of the same pixels.

    pip install '.[bench]'
    python benchmarks/many_colours.py
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import heldout
import numpy as np
import rows_level
from common import best_time, figure_image, geomean, kodak_images
from PIL import Image, ImageDraw, ImageFont

import pil_kmq
from pil_kmq import codec, coding
from pil_kmq.codec import decode_bytes

PHOTO_K = 512


def _dashboard() -> Image.Image:
    image = Image.new("RGB", (1280, 800), (245, 246, 250))
    draw = ImageDraw.Draw(image)
    small, large = ImageFont.load_default(size=13), ImageFont.load_default(size=26)
    draw.rectangle((0, 0, 200, 800), fill=(33, 37, 41))
    for row, label in enumerate(["Overview", "Slides", "Stains", "Scanners", "Reports", "Users", "Settings"]):
        draw.text((24, 80 + row * 40), label, fill=(220, 220, 225) if row else (255, 200, 80), font=small)
    rng = np.random.default_rng(11)
    for card in range(8):
        x, y = 230 + card % 4 * 260, 40 + card // 4 * 150
        draw.rounded_rectangle((x, y, x + 240, y + 130), 10, fill="white", outline=(222, 226, 230))
        draw.text((x + 16, y + 14), ["Slides", "Tiles", "Errors", "Queue"][card % 4] + f" {card // 4 + 1}", fill=(90, 90, 100), font=small)
        draw.text((x + 16, y + 44), f"{rng.integers(100, 99_999):,}", fill=(20, 20, 30), font=large)
        draw.text((x + 16, y + 96), f"{rng.normal(0, 9):+.1f} % this week", fill=(40, 160, 90) if card % 3 else (200, 60, 60), font=small)
    draw.rounded_rectangle((230, 350, 1250, 780), 10, fill="white", outline=(222, 226, 230))
    for row in range(14):
        y = 370 + row * 28
        draw.line((250, y + 24, 1230, y + 24), fill=(235, 236, 240))
        for column, text in enumerate([f"slide-{row:05d}", "H&E", f"{rng.integers(1, 40)} MP", ["done", "queued", "failed"][row % 3], f"2026-11-{row + 1:02d}"]):
            draw.text((260 + column * 190, y + 4), text, fill=(50, 50, 60), font=small)
    return image


def _gradient_ui() -> Image.Image:
    """Controls shaded by gradients (a toolbar, buttons, progress bars), as many desktop themes
    draw them: every pixel of a gradient is a literal, and the controls repeat down the window."""
    image = Image.new("RGB", (1200, 860), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=14)

    def shade(box: tuple[int, int, int, int], start: tuple[int, int, int], end: tuple[int, int, int]) -> None:
        x0, y0, x1, y1 = box
        ramp = np.linspace(start, end, x1 - x0).astype(np.uint8)
        image.paste(Image.fromarray(np.repeat(ramp[None], y1 - y0, axis=0)), (x0, y0))

    shade((0, 0, 1200, 48), (70, 110, 170), (30, 50, 90))
    draw.text((16, 15), "Slide archive - 2,418 images", fill="white", font=font)
    rng = np.random.default_rng(15)
    for row in range(9):
        y = 70 + row * 88
        draw.rounded_rectangle((20, y, 1180, y + 76), 8, fill="white", outline=(210, 212, 218))
        draw.text((40, y + 12), f"slide-{rng.integers(0, 99999):05d}.kmq   H&E   {rng.integers(2, 40)} MP", fill=(30, 30, 40), font=font)
        done = int(rng.integers(80, 600))
        shade((40, y + 44, 40 + done, y + 60), (90, 200, 120), (20, 140, 70))
        draw.rectangle((40 + done, y + 44, 640, y + 60), fill=(232, 234, 238))
        for button, label in enumerate(["Open", "Export", "Delete"]):
            x = 820 + button * 115
            shade((x, y + 20, x + 100, y + 56), (245, 245, 250), (200, 205, 215))
            draw.rectangle((x, y + 20, x + 100, y + 56), outline=(170, 175, 185))
            draw.text((x + 26, y + 30), label, fill=(20, 20, 30), font=font)
    return image


def _document() -> Image.Image:
    image = Image.new("RGB", (900, 1200), "white")
    draw = ImageDraw.Draw(image)
    title, body, note = ImageFont.load_default(size=30), ImageFont.load_default(size=16), ImageFont.load_default(size=12)
    words = "palette images keep a codebook of colours and an index for every pixel which codes well when the same runs and rows come back".split()
    rng = np.random.default_rng(12)
    draw.text((70, 50), "Storing slides at small cost", fill=(10, 10, 10), font=title)
    y = 120
    for paragraph in range(6):
        for _ in range(int(rng.integers(4, 8))):
            draw.text((70, y), " ".join(rng.choice(words, 11)), fill=(30, 30, 30), font=body)
            y += 24
        y += 14
        if paragraph == 2:
            for row in range(5):
                draw.rectangle((70, y, 830, y + 26), outline=(160, 160, 160), fill=(242, 244, 248) if row == 0 else "white")
                for column in range(4):
                    draw.text((80 + column * 190, y + 5), f"{['K', 'bytes', 'PSNR', 'ms'][column]} {row}" if row == 0 else f"{rng.integers(1, 9999)}", fill=(20, 20, 20), font=note)
                y += 26
            y += 20
    return image


def _flowchart() -> Image.Image:
    def draw(figure: object) -> None:
        axes = figure.add_axes((0, 0, 1, 1))
        axes.set_xlim(0, 10)
        axes.set_ylim(0, 7)
        axes.axis("off")
        boxes = {"read": (1, 6), "histogram": (4, 6), "k-means": (7, 6), "trade": (7, 3.5), "code strips": (4, 3.5), "write": (1, 3.5), "check": (4, 1)}
        for name, (x, y) in boxes.items():
            axes.add_patch(__import__("matplotlib").patches.FancyBboxPatch((x - 0.9, y - 0.4), 1.8, 0.8, boxstyle="round,pad=0.1", facecolor="#dfe9f7", edgecolor="#34568b"))
            axes.text(x, y, name, ha="center", va="center", fontsize=12)
        for start, end in [("read", "histogram"), ("histogram", "k-means"), ("k-means", "trade"), ("trade", "code strips"), ("code strips", "write"), ("code strips", "check")]:
            (x0, y0), (x1, y1) = boxes[start], boxes[end]
            axes.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": "#555555", "shrinkA": 28, "shrinkB": 28})

    return figure_image(draw, (10, 7))


def _line_plots() -> Image.Image:
    def draw(figure: object) -> None:
        rng = np.random.default_rng(13)
        for number in range(4):
            axes = figure.add_subplot(2, 2, number + 1)
            x = np.linspace(0, 10, 400)
            for line in range(3):
                axes.plot(x, np.sin(x * (line + 1) / 2 + number) + rng.normal(0, 0.05, x.size).cumsum() / 5, label=f"series {line}")
            axes.set_title(f"run {number}")
            axes.grid(True)
            axes.legend(loc="upper right")

    return figure_image(draw, (11, 8))


def _heat_map() -> Image.Image:
    def draw(figure: object) -> None:
        axes = figure.add_subplot(1, 1, 1)
        values = np.random.default_rng(14).integers(0, 100, (12, 16))
        axes.imshow(values, cmap="viridis")
        for (row, column), value in np.ndenumerate(values):
            axes.text(column, row, str(value), ha="center", va="center", fontsize=8, color="white" if value < 50 else "black")
        axes.set_xticks(range(16))
        axes.set_yticks(range(12))

    return figure_image(draw, (10, 8))


def graphics() -> dict[str, Image.Image]:
    drawn: dict[str, Callable[[], Image.Image]] = {"dashboard": _dashboard, "gradient-ui": _gradient_ui, "document": _document, "flowchart": _flowchart, "line-plots": _line_plots, "heat-map": _heat_map}
    return {name: make() for name, make in drawn.items()}


def _saved(image: Image.Image, k: int) -> tuple[bytes, float]:
    def save() -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, "KMQ", k=k, compression="zstd")  # the zstd writer's ways, not auto's near_rans (auto.py)
        return buffer.getvalue()

    data = save()
    return data, best_time(save)


@contextmanager
def _writer(split_trial: bool, coded_codebook: bool) -> Iterator[None]:
    """The writer with either change turned off: no halves trial (SPLIT_COST infinite), or
    every codebook stored raw."""
    cost, encode = coding.SPLIT_COST, codec.encode_codebook
    coding.SPLIT_COST = cost if split_trial else float("inf")
    codec.encode_codebook = encode if coded_codebook else (lambda codebook: None)
    try:
        yield
    finally:
        coding.SPLIT_COST, codec.encode_codebook = cost, encode


def _strips(data: bytes) -> int:
    header, _ = decode_bytes(data)
    if header.index_coding == 0:
        return 0
    start = header.index_stream_offset
    return len(coding.parse_table(data[start:], header.height, header.width, header.bits_per_index, header.index_stream_length).lengths)


def measure(kind: str, name: str, image: Image.Image, k: int) -> tuple[str, float, float, float, float]:
    data, seconds = _saved(image, k)
    with _writer(split_trial=False, coded_codebook=True):
        whole_strips, _ = _saved(image, k)
    with _writer(split_trial=True, coded_codebook=False):
        raw_codebook, _ = _saved(image, k)
    with _writer(split_trial=False, coded_codebook=False):
        before, before_seconds = _saved(image, k)
    webp = io.BytesIO()
    image.save(webp, "WEBP", lossless=True, quality=100, method=6)
    header, _ = decode_bytes(data)
    ratios = (len(data) / len(before), len(data) / len(whole_strips), len(data) / len(raw_codebook), seconds / before_seconds)
    print(
        f"| {kind} | {name} | {image.width}x{image.height} | {header.k} | {_strips(before)} → {_strips(data)} | {header.raw_codebook_length:,} → {header.codebook_length:,} "
        f"| {len(before):,} | {len(data):,} | {ratios[0]:.3f} | {ratios[1]:.3f} | {ratios[2]:.3f} | {ratios[3]:.2f} | {len(before) / len(webp.getvalue()):.3f} | {len(data) / len(webp.getvalue()):.3f} |",
        flush=True,
    )
    return (kind, *ratios)


def main() -> None:
    print("| kind | image | size | K | strips (before → now) | codebook bytes (raw → stored) | bytes before | bytes now | now ÷ before | ÷ without the halves trial | ÷ with a raw codebook | save time now ÷ before | before ÷ WebP-LL | now ÷ WebP-LL |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    sets = {"new graphic": graphics(), "tuning drawing": rows_level.drawings(), "held-out graphic": heldout.graphics()}
    for kind, images in sets.items():
        for name, image in images.items():
            colours = len(image.getcolors(1 << 24) or ())
            if colours > 256:
                results.append(measure(kind, name, image, colours))
    photos = dict(list(kodak_images())[::3]) | heldout.photos()
    for name, image in photos.items():
        results.append(measure("photo", name, image, PHOTO_K))
    print("\n| kind | images | bytes now ÷ before, geometric mean (smallest, largest) | save time now ÷ before, geometric mean (largest) |")
    print("|---|---|---|---|")
    for kind in dict.fromkeys(result[0] for result in results):
        ratios = [result[1] for result in results if result[0] == kind]
        times = [result[4] for result in results if result[0] == kind]
        print(f"| {kind} | {len(ratios)} | {geomean(ratios):.3f} ({min(ratios):.3f}, {max(ratios):.3f}) | {geomean(times):.2f} ({max(times):.2f}) |")


if __name__ == "__main__":
    main()
