"""Floyd–Steinberg error diffusion of an image onto a given codebook; no files.

Each pixel, in raster order, takes the entry nearest to its colour plus the error
carried to it (clamped to 0..255) and passes its own error on: 7/16 right, 3/16
down-left, 5/16 down, 1/16 down-right. Results are deterministic. Three ways, by input:

- Every pixel's colour is an entry: nothing to diffuse, so each pixel takes its colour's
  entry (the lowest index of duplicates) and the image comes back exactly.
- 1 or 3 channels, k <= 256: Pillow's C ditherer, the codebook as its palette. It looks
  colours up in a cache of 4 x 4 x 4 cells, at a cell's lowest corner, so it can pick an
  entry a few levels from the nearest; the diffusion carries the difference on. Greys
  are dithered as RGB (Pillow maps L to the grey ramp, ignoring a palette): they stay
  grey.
- Otherwise (k > 256, alpha): a numpy wavefront. Pixel (y, x) takes error only from
  pixels of smaller t = x + 2y, so all pixels of one t are done at once, each taking its
  exact nearest entry (a k-d tree): the serial result up to float32 rounding and ties.
  Memory: a float32 copy of the colour channels, 4 bytes per channel and pixel.

With alpha (the last channel, straight), pixels and entries are classed transparent (0),
partial or opaque (255); a pixel takes an entry of its own class when the codebook has
one, else the nearest by class, then distance (so with no partial entries, a partial
pixel weighs transparent and opaque ones alike). Error is diffused in the colour
channels only, and never out of a transparent pixel: its colour is not seen.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .format import MAX_K, index_dtype
from .kmeans import kd_tree
from .quantize import color_keys

# Entries of a Pillow palette, and the most that uint8 indices address.
_PALETTE_SIZE = 256
# Pixels per strip when looking colours up: bounds temporaries; a photo stops at once.
_STRIP_PIXELS = 1 << 16
# Error shares: (rows down, columns right, weight).
_SHARES = ((0, 1, 7 / 16), (1, -1, 3 / 16), (1, 0, 5 / 16), (1, 1, 1 / 16))
# A k-d tree coordinate per alpha class. Colour distances are at most 2 * 255, so with a
# step of 1024 every entry of a nearer class is nearer than any entry of a farther one.
_CLASS_STEP = 1024.0
_ALPHA_CLASS = np.full(256, _CLASS_STEP)  # partial
_ALPHA_CLASS[0], _ALPHA_CLASS[255] = 0.0, 2 * _CLASS_STEP  # transparent, opaque


def _check(image: np.ndarray, codebook: np.ndarray) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or not 1 <= image.shape[2] <= 4:
        got = f"{image.shape} {image.dtype}"
        raise ValueError(f"image must be (height, width, 1..4) uint8, not {got}")
    channels = image.shape[2]
    if codebook.dtype != np.uint8 or codebook.shape[1:] != (channels,):
        got = f"{codebook.shape} {codebook.dtype}"
        raise ValueError(f"codebook must be (k, {channels}) uint8, not {got}")
    if not 1 <= len(codebook) <= MAX_K:
        got = f"{len(codebook):,}"
        raise ValueError(f"codebook must have 1 to {MAX_K:,} entries, not {got}")


def _exact_lookup(image: np.ndarray, codebook: np.ndarray) -> np.ndarray | None:
    """Entry of each pixel's own colour (lowest index); None if one is missing."""
    height, width, channels = image.shape
    keys, first = np.unique(color_keys(codebook), return_index=True)
    indices = np.empty(height * width, dtype=index_dtype(len(codebook)))
    rows = max(1, _STRIP_PIXELS // max(1, width))
    for top in range(0, height, rows):
        pixel_keys = color_keys(image[top : top + rows].reshape(-1, channels))
        slot = np.minimum(np.searchsorted(keys, pixel_keys), len(keys) - 1)
        if not np.array_equal(keys[slot], pixel_keys):
            return None
        indices[top * width : top * width + len(slot)] = first[slot]
    return indices.reshape(height, width)


def _pillow_dither(image: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Pillow's C Floyd–Steinberg onto the codebook: 1 or 3 channels, k <= 256."""
    k = len(codebook)
    rgb = np.repeat(codebook, 3, axis=1) if codebook.shape[1] == 1 else codebook
    # Padded with copies of entry 0: even a padding entry stands for a codebook colour.
    palette = np.concatenate([rgb, np.repeat(rgb[:1], _PALETTE_SIZE - k, axis=0)])
    palette_image = Image.new("P", (1, 1))
    palette_image.putpalette(palette.tobytes())
    if image.shape[2] == 1:
        source = Image.fromarray(np.ascontiguousarray(image[:, :, 0])).convert("RGB")
    else:
        source = Image.fromarray(np.ascontiguousarray(image))
    fs = Image.Dither.FLOYDSTEINBERG
    indices = np.array(source.quantize(palette=palette_image, dither=fs), np.uint8)
    indices[indices >= k] = 0
    return indices


def _wavefront_dither(image: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Vectorized Floyd–Steinberg, a step per t = x + 2y: any channels, k and alpha."""
    height, width, channels = image.shape
    alpha = channels in (2, 4)
    colour = channels - alpha  # the channels that carry error
    entries = codebook.astype(np.float64)
    if alpha:
        entries = np.column_stack([entries, _ALPHA_CLASS[codebook[:, -1]]])
    tree = kd_tree(entries)
    entry_colour = codebook[:, :colour].astype(np.float32)
    opacities = image.reshape(-1, channels)[:, -1]
    # Working colours with a column each side and a row below: every share has a target.
    padded_width = width + 2
    work = np.zeros((height + 1, padded_width, colour), dtype=np.float32)
    work[:height, 1:-1] = image[:, :, :colour]
    work = work.reshape(-1, colour)
    shares = [(down * padded_width + right, weight) for down, right, weight in _SHARES]
    indices = np.empty(height * width, dtype=index_dtype(len(codebook)))
    rows = np.arange(height, dtype=np.intp)
    points = np.empty((min(height, (width + 1) // 2), entries.shape[1]))
    for t in range(width + 2 * height - 2):
        ys = rows[max(0, (t - width + 2) // 2) : t // 2 + 1]  # 0 <= x = t - 2y < width
        cell = ys * width + t + 1  # y * padded_width + x + 1
        pixel = ys * (width - 2) + t  # y * width + x
        value = work[cell]
        np.clip(value, 0, 255, out=value)
        point = points[: len(ys)]
        point[:, :colour] = value
        if alpha:
            opacity = opacities[pixel]
            point[:, colour] = opacity
            point[:, -1] = _ALPHA_CLASS[opacity]
        chosen = tree.query(point)[1]
        indices[pixel] = chosen
        error = value - entry_colour[chosen]
        if alpha:
            error[opacity == 0] = 0
        # One op per direction: its targets are distinct, those of two ops may not be.
        for offset, weight in shares:
            work[cell + offset] += error * np.float32(weight)
    return indices.reshape(height, width)


def floyd_steinberg(image: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """image (H, W, C) uint8, codebook (K, C) uint8 with C = 1..4, K = 1..65536 ->
    indices (H, W), uint8 when K <= 256 else uint16, every value < K."""
    _check(image, codebook)
    indices = _exact_lookup(image, codebook)
    if indices is not None:
        return indices
    if image.shape[2] in (1, 3) and len(codebook) <= _PALETTE_SIZE:
        return _pillow_dither(image, codebook)
    return _wavefront_dither(image, codebook)
