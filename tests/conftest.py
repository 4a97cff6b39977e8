"""Shared fixtures: the real images in samples/ and helpers to build KMQ bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SPEC = ROOT / "spec" / "kmq.md"


def kmq_bytes(image: Image.Image, **options: object) -> bytes:
    """The bytes Image.save writes for this image as KMQ."""
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", **options)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def ihc() -> Image.Image:
    """227 x 303 RGB crop of an IHC-stained tissue slide: the article's image size."""
    with Image.open(SAMPLES / "ihc.png") as image:
        return image.convert("RGB")


@pytest.fixture(scope="session")
def parrot() -> Image.Image:
    """100 x 100 RGB crop of Kodak image 23: the article's worked example size."""
    with Image.open(SAMPLES / "kodim23.png") as image:
        return image.convert("RGB")


@pytest.fixture(scope="session")
def parrot_kmq(parrot: Image.Image) -> bytes:
    return kmq_bytes(parrot, k=16)


@pytest.fixture(scope="session")
def palette_image() -> Image.Image:
    """96 x 64 mode "P" image with 12 colours, from Kodak image 3."""
    with Image.open(SAMPLES / "kodim03-p12.png") as image:
        image.load()
        return image


def colours(image: Image.Image) -> int:
    return len(np.unique(np.asarray(image).reshape(image.size[0] * image.size[1], -1), axis=0))


def failing_output(exception: BaseException):  # type: ignore[no-untyped-def]
    """A stand-in for pil_kmq.atomic.open_partial whose file takes half the data, then raises."""
    from pil_kmq import atomic

    real_open = atomic.open_partial

    def open_partial(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        handle, name = real_open(*args, **kwargs)  # type: ignore[arg-type]
        real_write = handle.write

        def write(data: bytes) -> int:
            real_write(data[: len(data) // 2])
            raise exception

        handle.write = write  # type: ignore[method-assign]
        return handle, name

    return open_partial
