"""Rate-optimized indices: psnr_loss= for a k= save, and psnr= as the smallest file."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import SAMPLES, kmq_bytes
from PIL import Image

import pil_kmq
from pil_kmq import rate
from pil_kmq.quantize import Quantized, psnr_for_mse, quantize


def psnr(original: np.ndarray, result: np.ndarray) -> float:
    return psnr_for_mse(float(((original.astype(np.float64) - result) ** 2).mean()))


def reference_scan(pixels: np.ndarray, nearest: np.ndarray, codebook: np.ndarray, threshold: float) -> np.ndarray:
    """The rule pixel by pixel, in pixel order: a pixel takes the index chosen for the pixel
    before it when that adds at most threshold squared error, except at a segment's start."""
    flat, own = pixels.reshape(-1, pixels.shape[-1]).astype(np.int64), nearest.reshape(-1)
    colors = codebook.astype(np.int64)
    chosen = own.copy()
    for j in range(1, len(own)):
        if j % rate.SEGMENT == 0:
            continue
        extra = ((flat[j] - colors[chosen[j - 1]]) ** 2).sum() - ((flat[j] - colors[own[j]]) ** 2).sum()
        if extra <= threshold:
            chosen[j] = chosen[j - 1]
    return chosen.reshape(nearest.shape)


@pytest.mark.parametrize("shape", [(40, 37), (1, 700), (700, 1), (3, 300)])
def test_scan_follows_the_rule_pixel_by_pixel(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    pixels = (rng.normal(128, 30, (*shape, 3)).clip(0, 255)).astype(np.uint8)
    indices, codebook = quantize(pixels, 12, 0)
    trader = rate.Trader(pixels, Quantized(indices, codebook))
    for threshold in (0.0, 50.0, 400.0):
        traded, added = trader._apply(threshold)
        assert np.array_equal(traded, reference_scan(pixels, indices, codebook, threshold))
        colors = codebook.astype(np.int64)
        real = ((pixels - colors[traded]) ** 2).sum() - ((pixels - colors[indices]) ** 2).sum()
        assert added >= real  # the padding of the last segment may only add to it


@pytest.mark.parametrize("loss", [0.25, 0.5, 1.0])
def test_psnr_loss_makes_smaller_files_within_the_loss(parrot: Image.Image, loss: float) -> None:
    pixels = np.asarray(parrot)
    plain = pil_kmq.compress_image(pixels, k=32)
    traded = pil_kmq.compress_image(pixels, k=32, psnr_loss=loss)
    assert np.array_equal(plain.codebook, traded.codebook)
    before, after = psnr(pixels, plain.codebook[plain.indices]), psnr(pixels, traded.codebook[traded.indices])
    assert before - loss <= after < before
    assert len(pil_kmq.encode_kmq(*traded)) < len(pil_kmq.encode_kmq(*plain)) * (1 - loss / 10)


def test_psnr_loss_through_pillow_and_zero_is_the_plain_save(ihc: Image.Image) -> None:
    assert kmq_bytes(ihc, k=16, psnr_loss=0) == kmq_bytes(ihc, k=16)
    traded = kmq_bytes(ihc, k=16, psnr_loss=0.5)
    assert len(traded) < len(kmq_bytes(ihc, k=16))
    with Image.open(io.BytesIO(traded)) as image:
        assert image.kmq_header.k == 16


def test_an_exact_image_stays_exact(palette_image: Image.Image) -> None:
    rgb = palette_image.convert("RGB")
    with Image.open(io.BytesIO(kmq_bytes(rgb, k=16, psnr_loss=3))) as image:
        assert image.tobytes() == rgb.tobytes()


def test_alpha_classes_stay_exact_under_any_loss() -> None:
    with Image.open(SAMPLES / "ihc-cutout.png") as cutout:
        original = np.asarray(cutout)
        data = kmq_bytes(cutout, k=8, psnr_loss=6)
    with Image.open(io.BytesIO(data)) as result:
        alpha = np.asarray(result)[..., 3]
    assert (alpha[original[..., 3] == 0] == 0).all() and (alpha[original[..., 3] == 255] == 255).all()


@pytest.mark.parametrize("target", [28.0, 34.0, 40.0])
def test_psnr_gives_a_file_no_larger_than_the_smallest_k(ihc: Image.Image, target: float) -> None:
    pixels = np.asarray(ihc)
    smallest_k = pil_kmq.compress_image(pixels, psnr=target, compression="none")
    best = pil_kmq.compress_image(pixels, psnr=target)
    assert psnr(pixels, best.codebook[best.indices]) >= target
    assert len(pil_kmq.encode_kmq(*best)) <= len(pil_kmq.encode_kmq(*smallest_k))


def test_psnr_with_dither_keeps_the_smallest_k(ihc: Image.Image) -> None:
    pixels = np.asarray(ihc)
    dithered = pil_kmq.compress_image(pixels, psnr=32, dither=True)
    assert len(dithered.codebook) == len(pil_kmq.compress_image(pixels, psnr=32, compression="none").codebook)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 16, "psnr_loss": -1}, "psnr_loss must be a number of dB from 0 up"),
        ({"k": 16, "psnr_loss": float("nan")}, "psnr_loss must be a number of dB from 0 up"),
        ({"k": 16, "psnr_loss": float("inf")}, "psnr_loss must be a number of dB from 0 up"),
        ({"k": 16, "psnr_loss": "0.5"}, "psnr_loss must be a number of dB from 0 up"),
        ({"k": 16, "psnr_loss": True}, "psnr_loss must be a number of dB from 0 up"),
        ({"psnr": 30, "psnr_loss": 0.5}, "psnr_loss applies to k= without dither"),
        ({"k": 16, "dither": True, "psnr_loss": 0.5}, "psnr_loss applies to k= without dither"),
    ],
)
def test_bad_psnr_loss_raises_valueerror_before_writing(parrot: Image.Image, options: dict[str, object], message: str) -> None:
    out = io.BytesIO()
    with pytest.raises(ValueError, match=message):
        parrot.save(out, "KMQ", **options)
    assert out.getvalue() == b""


def test_trading_is_deterministic(parrot: Image.Image) -> None:
    assert kmq_bytes(parrot, k=24, psnr_loss=0.7) == kmq_bytes(parrot, k=24, psnr_loss=0.7)


@pytest.mark.parametrize(("mode", "k"), [("L", 12), ("LA", 12), ("RGB", 1000)])
def test_psnr_loss_for_grey_and_two_byte_indices(parrot: Image.Image, mode: str, k: int) -> None:
    image = parrot.convert(mode)
    pixels = np.asarray(image)
    plain = pil_kmq.compress_image(pixels, k=k)
    traded = pil_kmq.compress_image(pixels, k=k, psnr_loss=0.5)
    assert traded.indices.dtype == plain.indices.dtype
    before = psnr(pixels, np.asarray(pil_kmq.reconstruct_image(*plain), dtype=np.float64))
    after = psnr(pixels, np.asarray(pil_kmq.reconstruct_image(*traded), dtype=np.float64))
    assert before - 0.5 <= after < before
