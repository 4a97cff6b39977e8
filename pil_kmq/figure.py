"""The seed article's comparison figure: the original beside one reconstruction per K, each
captioned with its true figures.

Every reconstruction is a real KMQ encode and decode, in memory (`round_trip`), so the
file sizes, bits per pixel and PSNR shown are those of the file `Image.save` writes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .api import DEFAULT_COMPRESSION, DEFAULT_SEED
from .format import Header
from .plugin import FORMAT, KmqImageFile

ARTICLE_KS = (2, 3, 6, 16)  # the K of the article's figure
MAX_PANEL_WIDTH = 512  # default panel width: the image's, up to this
MAX_COLUMNS = 5  # panels per row before the figure wraps into rows
MARGIN = 16  # pixels around and between the cells (panel + caption)
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
CHECKER = 8  # side of the squares shown behind transparent pixels
_ROWS_AT_ONCE = 256
# Stand-ins for characters a font cannot draw (Pillow's default font has no ∞ or ×).
_FALLBACK = {"∞": "inf", "×": "x"}

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


@dataclass(frozen=True)
class RoundTrip:
    """One K of the figure: the KMQ file's bytes, its decoded image and its figures."""

    k: int  # the K asked for; header.k, the colours stored, may be fewer
    header: Header
    data: bytes
    image: Image.Image  # decoded from data
    mse: float  # mean squared error per channel value against the original

    @property
    def pixels(self) -> int:
        return self.header.width * self.header.height

    @property
    def file_bytes(self) -> int:
        return len(self.data)

    @property
    def bits_per_pixel(self) -> float:
        """File bits / pixels."""
        return 8 * self.file_bytes / self.pixels

    @property
    def original_bytes(self) -> int:
        """The article's original size: W x H x channels bytes."""
        return self.pixels * self.header.channels

    @property
    def ratio(self) -> float:
        """The article's compression ratio: compressed (file) size / original size."""
        return self.file_bytes / self.original_bytes

    @property
    def psnr(self) -> float:
        """Peak signal-to-noise ratio in dB, 10 log10(255² / MSE); infinite when lossless."""
        return math.inf if self.mse == 0 else 10 * math.log10(255**2 / self.mse)

    def caption(self) -> list[str]:
        k = (
            f"K = {self.k}"
            if self.header.k == self.k
            else f"K = {self.k} ({self.header.k} colours)"
        )
        psnr = "∞ dB (lossless)" if math.isinf(self.psnr) else f"{self.psnr:.2f} dB"
        return [
            k,
            f"{self.bits_per_pixel:.3f} bits per pixel",
            f"{self.file_bytes:,} bytes, ratio {self.ratio:.2%}",
            f"PSNR {psnr}",
        ]


def round_trip(
    image: Image.Image,
    k: int,
    *,
    seed: int = DEFAULT_SEED,
    compression: str = DEFAULT_COMPRESSION,
    dither: bool | None = None,
    psnr_loss: float | None = None,
) -> RoundTrip:
    """Save image as KMQ with k colours into memory, decode it, and measure it against image."""
    options: dict[str, object] = {"k": k, "seed": seed, "compression": compression}
    if dither is not None:
        options["dither"] = dither
    if psnr_loss is not None:
        options["psnr_loss"] = psnr_loss
    encoded = io.BytesIO()
    image.save(encoded, FORMAT, **options)
    data = encoded.getvalue()
    with Image.open(io.BytesIO(data), formats=[FORMAT]) as kmq:
        kmq.load()
        assert isinstance(kmq, KmqImageFile)
        header = kmq.kmq_header
        decoded = kmq.copy()
    return RoundTrip(k, header, data, decoded, mean_squared_error(image, decoded))


def mean_squared_error(original: Image.Image, decoded: Image.Image) -> float:
    """Mean squared error per channel value of decoded against original (in decoded's mode),
    as psnr= measures it: over all channels, alpha included, except the colour of fully
    transparent pixels, which is not seen (and which KMQ need not keep)."""
    reference = np.asarray(original.convert(decoded.mode))
    pixels = np.asarray(decoded)
    alpha = decoded.mode in ("RGBA", "LA")
    total = 0.0
    for top in range(
        0, decoded.height, _ROWS_AT_ONCE
    ):  # bounds the float64 copies' memory
        a, b = (
            _as_seen(x[top : top + _ROWS_AT_ONCE], alpha)
            for x in (reference, pixels)
        )
        total += float(np.sum(np.square(a - b)))
    return total / reference.size


def _as_seen(rows: np.ndarray, alpha: bool) -> np.ndarray:
    values = rows.astype(np.float64)
    if alpha:
        values[values[..., -1] == 0] = 0
    return values


def original_caption(image: Image.Image, stored_mode: str) -> list[str]:
    """The original's caption: its size, and its raw bytes at 8 bits per channel of the mode
    KMQ stores it in (a "P" image is stored as RGB)."""
    channels = Image.getmodebands(stored_mode)
    mode = image.mode if image.mode == stored_mode else f"{image.mode} as {stored_mode}"
    return [
        "original",
        f"{image.width} × {image.height} {mode}",
        f"{image.width * image.height * channels:,} bytes raw",
        f"{8 * channels} bits per pixel",
    ]


def comparison_figure(
    image: Image.Image,
    ks: Sequence[int],
    *,
    seed: int = DEFAULT_SEED,
    compression: str = DEFAULT_COMPRESSION,
    dither: bool | None = None,
    width: int | None = None,
    columns: int | None = None,
) -> Image.Image:
    """The figure for image and each K in ks: original and reconstructions side by side."""
    trips = [
        round_trip(image, k, seed=seed, compression=compression, dither=dither)
        for k in ks
    ]
    return draw_figure(image, trips, width=width, columns=columns)


def draw_figure(
    image: Image.Image,
    trips: Sequence[RoundTrip],
    *,
    width: int | None = None,
    columns: int | None = None,
) -> Image.Image:
    """Draw the original and the round trips as captioned panels of `width` pixels (default:
    the image's, up to 512), `columns` to a row (default: one row of up to 5, else balanced rows)."""
    if not trips:
        raise ValueError("the figure needs at least one K")
    panel_width = min(image.width, MAX_PANEL_WIDTH) if width is None else width
    if panel_width < 1:
        raise ValueError(
            f"width must be a positive number of pixels, not {panel_width}"
        )
    panel_height = max(1, round(image.height * panel_width / image.width))
    panels = [_panel(image, panel_width, panel_height)] + [
        _panel(trip.image, panel_width, panel_height) for trip in trips
    ]
    font = ImageFont.load_default(size=max(12, min(22, round(panel_width / 20))))
    captions = [
        _drawable(line, font) for line in original_caption(image, trips[0].image.mode)
    ]
    captions_per_panel = [captions] + [
        [_drawable(line, font) for line in trip.caption()] for trip in trips
    ]
    count = len(panels)
    if columns is None:
        rows = math.ceil(count / MAX_COLUMNS)
        columns = math.ceil(count / rows)
    columns = max(1, min(columns, count))
    rows = math.ceil(count / columns)

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = round(measure.textbbox((0, 0), "Ag", font=font)[3] * 1.35)
    text_width = max(
        measure.textlength(line, font=font)
        for lines in captions_per_panel
        for line in lines
    )
    lines = max(len(lines) for lines in captions_per_panel)
    cell_width = max(panel_width, math.ceil(text_width))
    cell_height = panel_height + MARGIN // 2 + lines * line_height

    figure = Image.new(
        "RGB",
        (
            columns * cell_width + (columns + 1) * MARGIN,
            rows * cell_height + (rows + 1) * MARGIN,
        ),
        BACKGROUND,
    )
    draw = ImageDraw.Draw(figure)
    for index, (panel, caption) in enumerate(
        zip(panels, captions_per_panel, strict=True)
    ):
        row, column = divmod(index, columns)
        left = MARGIN + column * (cell_width + MARGIN)
        top = MARGIN + row * (cell_height + MARGIN)
        figure.paste(panel, (left + (cell_width - panel_width) // 2, top))
        y = top + panel_height + MARGIN // 2
        for line in caption:
            draw.text(
                (left + (cell_width - draw.textlength(line, font=font)) / 2, y),
                line,
                font=font,
                fill=TEXT,
            )
            y += line_height
    return figure


def comparison_table(image: Image.Image, trips: Sequence[RoundTrip]) -> str:
    """The figure's numbers as a text table: the original, then one row per K."""
    _, size, raw, _ = original_caption(image, trips[0].image.mode)
    lines = [
        f"original: {size.replace('×', 'x')}, {raw}",
        f"{'K':>6} {'colours':>8} {'bytes':>12} {'bits/pixel':>11} {'ratio':>8} {'PSNR dB':>8}",
    ]
    for trip in trips:
        psnr = "inf" if math.isinf(trip.psnr) else f"{trip.psnr:.2f}"
        lines.append(
            f"{trip.k:>6} {trip.header.k:>8} {trip.file_bytes:>12,} {trip.bits_per_pixel:>11.3f} {trip.ratio:>8.2%} {psnr:>8}"
        )
    return "\n".join(lines)


def _panel(image: Image.Image, width: int, height: int) -> Image.Image:
    """The image in RGB at the panel's size: Lanczos when shrinking, nearest when enlarging
    (so each stored colour stays one flat colour); one with alpha over a checkerboard."""
    transparent = "A" in image.getbands() or "transparency" in image.info
    panel = image.convert("RGBA" if transparent else "RGB")
    if panel.size != (width, height):
        enlarge = width > image.width
        resample = Image.Resampling.NEAREST if enlarge else Image.Resampling.LANCZOS
        panel = panel.resize((width, height), resample)
    if transparent:
        panel = Image.alpha_composite(_checkerboard(width, height), panel).convert(
            "RGB"
        )
    return panel


def _checkerboard(width: int, height: int) -> Image.Image:
    """Light grey and white squares of CHECKER pixels, as image editors show transparency."""
    y, x = np.indices((height, width))
    light = ((y // CHECKER + x // CHECKER) % 2).astype(np.uint8) * 51 + 204
    return Image.fromarray(light, "L").convert("RGBA")


def _drawable(text: str, font: Font) -> str:
    """text with each character the font lacks replaced by its stand-in."""
    for char, stand_in in _FALLBACK.items():
        if char in text and not _has_glyph(font, char):
            text = text.replace(char, stand_in)
    return text


def _has_glyph(font: Font, char: str) -> bool:
    return _rendered(font, char) != _rendered(
        font, "\uffff"
    )  # a non-character: no font has it


def _rendered(font: Font, text: str) -> bytes:
    canvas = Image.new(
        "L",
        (4 * int(font.size if isinstance(font, ImageFont.FreeTypeFont) else 16), 64),
    )
    ImageDraw.Draw(canvas).text((0, 0), text, font=font, fill=255)
    return canvas.tobytes()
