"""Readers built on Pillow read .kmq files unchanged once pil_kmq is imported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES
from PIL import Image


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    pixels = {}
    for name in ("ihc-k16-zstd", "ihc-cutout-k16", "ihc-gray-k6"):
        with Image.open(SAMPLES / "expected" / f"{name}.png") as image:
            pixels[name] = np.asarray(image)
    return pixels


@pytest.mark.parametrize("name", ["ihc-k16-zstd", "ihc-cutout-k16", "ihc-gray-k6"])
def test_imageio_v3_imread(name: str, expected: dict[str, np.ndarray]) -> None:
    iio = pytest.importorskip("imageio.v3")
    assert np.array_equal(iio.imread(SAMPLES / f"{name}.kmq"), expected[name])


def test_imageio_v3_imwrite_by_extension_with_options(tmp_path: Path, expected: dict[str, np.ndarray]) -> None:
    iio = pytest.importorskip("imageio.v3")
    target = tmp_path / "out.kmq"
    iio.imwrite(target, expected["ihc-k16-zstd"], extension=".kmq", k=16)
    with Image.open(target) as image:
        assert image.format == "KMQ" and np.array_equal(np.asarray(image), expected["ihc-k16-zstd"])


@pytest.mark.parametrize("name", ["ihc-k16-zstd", "ihc-cutout-k16", "ihc-gray-k6"])
def test_matplotlib_pyplot_imread(name: str, expected: dict[str, np.ndarray]) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    assert np.array_equal(plt.imread(SAMPLES / f"{name}.kmq"), expected[name])

