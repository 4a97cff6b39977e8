"""Every Pillow mode either round-trips as the spec's channel layouts say, or is refused by name.

Alpha rule: fully transparent pixels stay exactly transparent and fully opaque ones exactly
opaque at any k >= 2; an image with <= k colours (alpha included) comes back exactly.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from conftest import SAMPLES, colours, kmq_bytes
from PIL import Image

import pil_kmq
from pil_kmq.quantize import cluster, color_keys, histogram


@pytest.fixture(scope="module")
def cutout() -> Image.Image:
    """The IHC slide with a transparent background and soft edges (samples/ihc-cutout.png)."""
    with Image.open(SAMPLES / "ihc-cutout.png") as image:
        image.load()
        return image


@pytest.fixture(scope="module")
def present() -> Image.Image:
    """A real RGBA clip-art picture with antialiased edges: matplotlib's sample data."""
    cbook = pytest.importorskip("matplotlib.cbook")
    with Image.open(cbook.get_sample_data("Minduka_Present_Blue_Pack.png", asfileobj=False)) as image:
        image.load()
        return image


def decoded(image: Image.Image, **options: object) -> Image.Image:
    with Image.open(io.BytesIO(kmq_bytes(image, **options))) as result:
        result.load()
        return result


def alpha_classes_kept(original: np.ndarray, result: np.ndarray) -> bool:
    alpha, kept = original[..., -1], result[..., -1]
    return bool((kept[alpha == 0] == 0).all() and (kept[alpha == 255] == 255).all())


@pytest.mark.parametrize("k", [2, 3, 16, 256, 1000])
def test_rgba_keeps_transparent_and_opaque_pixels_exact(cutout: Image.Image, k: int) -> None:
    result = decoded(cutout, k=k)
    assert result.mode == "RGBA" and result.kmq_header.channels == 4 and result.kmq_header.k <= k
    assert alpha_classes_kept(np.asarray(cutout), np.asarray(result))


def visible_error(original: np.ndarray, result: np.ndarray) -> float:
    """Mean squared error as seen: colour premultiplied by alpha, alpha included."""

    def seen(pixels: np.ndarray) -> np.ndarray:
        pixels = pixels.reshape(-1, 4).astype(np.float64)
        return np.concatenate([pixels[:, :3] * pixels[:, 3:] / 255, pixels[:, 3:]], axis=1)

    return float(((seen(original) - seen(result)) ** 2).sum(axis=1).mean())


def unconstrained_rgba(image: np.ndarray, k: int) -> np.ndarray:
    """Plain k-means on RGBA, alpha classes not kept: the error floor the constraint costs against."""
    hist = histogram(image)
    codebook, color_index = cluster(hist, k, 0)
    return codebook[color_index[np.searchsorted(hist.keys, color_keys(image.reshape(-1, 4)))]].reshape(image.shape)


@pytest.mark.parametrize("k", [8, 16, 64, 256])
def test_keeping_alpha_exact_costs_little_visible_error(cutout: Image.Image, present: Image.Image, k: int) -> None:
    """On a cut-out photo and real clip art: within 1.5x the error of unconstrained RGBA k-means
    (measured 0.9-1.35x), while that one moves opaque and transparent pixels' alpha."""
    for image in (np.asarray(cutout), np.asarray(present)):
        result = np.asarray(decoded(Image.fromarray(image), k=k))
        assert alpha_classes_kept(image, result)
        assert visible_error(image, result) <= 1.5 * visible_error(image, unconstrained_rgba(image, k))


def test_fully_transparent_pixels_share_one_entry(cutout: Image.Image) -> None:
    _, (indices, codebook) = pil_kmq.decode_kmq(kmq_bytes(cutout, k=16))
    transparent = np.asarray(cutout)[..., 3] == 0
    assert len(np.unique(indices[transparent])) == 1
    assert codebook[indices[transparent][0]].tolist() == [0, 0, 0, 0]


def test_rgba_with_at_most_k_colours_is_lossless_hidden_colours_included() -> None:
    pixels = np.array([[[255, 0, 0, 255], [0, 255, 0, 0], [9, 9, 9, 0], [1, 2, 3, 128]]], dtype=np.uint8)
    image = Image.fromarray(pixels)
    assert np.array_equal(np.asarray(decoded(image, k=4)), pixels)


@pytest.mark.parametrize("k", [1, 2])
def test_tiny_k_with_alpha(cutout: Image.Image, k: int) -> None:
    result = np.asarray(decoded(cutout, k=k))
    assert len(np.unique(result.reshape(-1, 4), axis=0)) <= k
    if k == 2:
        assert alpha_classes_kept(np.asarray(cutout), result)


def test_la_round_trip_keeps_alpha_classes(cutout: Image.Image) -> None:
    la = cutout.convert("LA")
    result = decoded(la, k=8)
    assert result.mode == "LA" and result.kmq_header.channels == 2
    assert alpha_classes_kept(np.asarray(la), np.asarray(result))


def test_palette_with_transparency_is_exact_when_it_has_at_most_k_colours(palette_image: Image.Image) -> None:
    image = palette_image.copy()
    image.info["transparency"] = 3  # palette entry 3 is fully transparent, as in a GIF
    result = decoded(image, k=16)
    assert result.mode == "RGBA"
    assert result.tobytes() == image.convert("RGBA").tobytes()


def test_pa_is_exact_when_it_has_at_most_k_colours(palette_image: Image.Image) -> None:
    image = palette_image.convert("PA")
    alpha = Image.fromarray(np.where(np.arange(96)[None, :] < 48, 0, 255).astype(np.uint8).repeat(64, axis=0))
    image.putalpha(alpha)
    result = decoded(image, k=32)
    assert result.mode == "RGBA" and result.tobytes() == image.convert("RGBA").tobytes()


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_colour_key_transparency_of_l_and_rgb_is_kept(parrot: Image.Image, mode: str) -> None:
    image = parrot.convert(mode)
    key = image.getpixel((0, 0))
    image.info["transparency"] = key
    result = decoded(image, k=16)
    assert result.mode == mode + "A" if mode == "L" else result.mode == "RGBA"
    assert np.asarray(result)[0, 0, -1] == 0


def test_premultiplied_alpha_is_converted_with_a_warning(cutout: Image.Image) -> None:
    with pytest.warns(UserWarning, match="straight alpha"):
        result = decoded(cutout.convert("RGBa"), k=16)
    assert result.mode == "RGBA"


def test_modes_without_alpha_raise_no_warning(parrot: Image.Image) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for mode in ("RGB", "L", "1", "P"):
            decoded(parrot.convert(mode), k=4)


def test_mode_1_round_trip_gives_the_same_pixels(parrot: Image.Image) -> None:
    bilevel = parrot.convert("1")
    result = decoded(bilevel, k=2)
    assert result.mode == "L" and result.convert("1").tobytes() == bilevel.tobytes()


def test_numpy_api_gives_segmentation_labels_and_codebook(cutout: Image.Image) -> None:
    indices, codebook = pil_kmq.compress_image(np.asarray(cutout), k=6)
    assert indices.shape == (cutout.height, cutout.width) and codebook.shape[1] == 4
    assert np.array_equal(pil_kmq.reconstruct_image(indices, codebook)[..., 3] == 0, np.asarray(cutout)[..., 3] == 0)


def test_rgba_with_more_than_256_colours_round_trips(cutout: Image.Image) -> None:
    result = decoded(cutout, k=4096)
    assert result.kmq_header.k > 256 and colours(result) == result.kmq_header.k
    assert alpha_classes_kept(np.asarray(cutout), np.asarray(result))


def test_bilevel_image_with_a_transparent_colour_keeps_it(parrot: Image.Image) -> None:
    bilevel = parrot.convert("1")
    bilevel.info["transparency"] = 0
    result = decoded(bilevel, k=4)
    assert result.mode == "LA"
    assert np.array_equal(np.asarray(result), np.asarray(bilevel.convert("LA")))
