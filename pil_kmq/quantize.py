"""Colour clustering: pixels in, a uint8 codebook and one index per pixel out. Knows nothing of files."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.cluster import KMeans

# Distances computed per block in nearest_index: bounds its int32 temporaries to ~32 MiB.
_DISTANCE_BLOCK = 1 << 23


class Quantized(NamedTuple):
    """The article's pair: `indices` (one per pixel) and the `codebook` they point into."""

    indices: np.ndarray
    codebook: np.ndarray


def unique_colors(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct colours of (N, C) uint8 pixels: (colors, inverse, counts), colors sorted."""
    channels = pixels.shape[1]
    keys = np.zeros(pixels.shape[0], dtype=np.uint32)
    for channel in range(channels):  # pack up to 4 channels into one sortable key
        keys <<= 8
        keys |= pixels[:, channel]
    unique_keys, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    shifts = np.arange(channels - 1, -1, -1, dtype=np.uint32) * 8
    colors = ((unique_keys[:, None] >> shifts) & 0xFF).astype(np.uint8)
    return colors, inverse.ravel(), counts


def nearest_index(colors: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Index of each colour's nearest codebook entry (squared distance, ties to the lowest index)."""
    colors_i = colors.astype(np.int32)
    book_i = codebook.astype(np.int32)
    book_norm = (book_i**2).sum(axis=1)
    rows = max(1, _DISTANCE_BLOCK // len(codebook))
    result = np.empty(len(colors), dtype=np.intp)
    for start in range(0, len(colors), rows):
        block = colors_i[start : start + rows]
        # |c - b|^2 - |c|^2 = |b|^2 - 2 c.b: same argmin, exact in int32 (|.| <= 4 * 255^2 * 2)
        distance = book_norm[None, :] - 2 * (block @ book_i.T)
        result[start : start + rows] = np.argmin(distance, axis=1)  # argmin keeps the first tie
    return result


def _kmeans_codebook(colors: np.ndarray, counts: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means over the colour histogram (same objective as over all pixels), rounded to uint8."""
    model = KMeans(n_clusters=k, n_init=1, max_iter=300, random_state=seed)
    model.fit(colors.astype(np.float64), sample_weight=counts.astype(np.float64))
    return np.clip(np.rint(model.cluster_centers_), 0, 255).astype(np.uint8)


def quantize(pixels: np.ndarray, k: int, seed: int = 0) -> Quantized:
    """Cluster (N, C) uint8 pixels into at most k colours; lossless when they have <= k colours.

    Returns indices (N,) uint16 and the codebook (K, C) uint8 with K <= k: entries no pixel
    uses after the final nearest-colour assignment are dropped, as they would only cost bits.
    """
    colors, inverse, counts = unique_colors(pixels)
    if len(colors) <= k:
        return Quantized(inverse.astype(np.uint16), colors)
    codebook = _kmeans_codebook(colors, counts, k, seed)
    color_index = nearest_index(colors, codebook)
    used, color_index = np.unique(color_index, return_inverse=True)
    return Quantized(color_index.ravel()[inverse].astype(np.uint16), codebook[used])
