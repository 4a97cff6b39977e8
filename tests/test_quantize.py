"""Clustering rules: nearest rounded colour (ties to the lowest index), lossless when <= k colours."""

from __future__ import annotations

import numpy as np
import pytest

from pil_kmq import compress_image, reconstruct_image
from pil_kmq.quantize import nearest_index, quantize, unique_colors


def brute_force_nearest(colours: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    distance = ((colours[:, None, :].astype(np.int64) - codebook[None, :, :]) ** 2).sum(axis=2)
    return np.argmin(distance, axis=1)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("seed", range(3))
def test_nearest_index_matches_brute_force_with_ties_to_lowest(channels: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    # A coarse grid of values makes exact ties and duplicate entries common.
    codebook = (rng.integers(0, 4, (40, channels)) * 64).astype(np.uint8)
    colours = (rng.integers(0, 9, (500, channels)) * 32).clip(0, 255).astype(np.uint8)
    assert np.array_equal(nearest_index(colours, codebook), brute_force_nearest(colours, codebook))


@pytest.mark.parametrize("k", [2, 5, 16])
def test_every_pixel_gets_its_nearest_stored_colour(k: int) -> None:
    rng = np.random.default_rng(k)
    pixels = rng.integers(0, 256, (3000, 3)).astype(np.uint8)
    indices, codebook = quantize(pixels, k, seed=0)
    assert len(codebook) <= k
    assert np.array_equal(indices, brute_force_nearest(pixels, codebook))


def test_image_with_at_most_k_colours_is_stored_exactly() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (7, 3)).astype(np.uint8)
    image = pixels[np.random.default_rng(2).integers(0, 7, (20, 30))]
    indices, codebook = compress_image(image, k=7)
    assert np.array_equal(reconstruct_image(indices, codebook), image)


def test_k1_gives_one_colour_the_weighted_mean() -> None:
    image = np.array([[[0, 0, 0], [100, 50, 10]], [[100, 50, 10], [100, 50, 10]]], np.uint8)
    indices, codebook = compress_image(image, k=1)
    assert codebook.tolist() == [[75, 38, 8]]  # rint of the mean (75, 37.5, 7.5)
    assert not indices.any()


def test_unused_codebook_entries_are_dropped() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (2000, 3)).astype(np.uint8)
    indices, codebook = quantize(pixels, 64, seed=0)
    assert set(np.unique(indices)) == set(range(len(codebook)))


def test_same_seed_same_result_different_seed_may_differ(parrot: object) -> None:
    image = np.asarray(parrot)
    first = compress_image(image, k=16, seed=5)
    again = compress_image(image, k=16, seed=5)
    assert np.array_equal(first.indices, again.indices)
    assert np.array_equal(first.codebook, again.codebook)


def test_unique_colors_round_trips() -> None:
    pixels = np.random.default_rng(4).integers(0, 4, (100, 4)).astype(np.uint8)
    colours, inverse, counts = unique_colors(pixels)
    assert np.array_equal(colours[inverse], pixels)
    assert counts.sum() == 100


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4, 5), np.uint8), "shape"),
        (np.zeros((0, 4, 3), np.uint8), "shape"),
    ],
)
def test_compress_image_rejects_bad_arrays(image: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compress_image(image, k=4)
