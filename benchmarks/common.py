"""Shared helpers of the benchmark scripts: the Kodak set, the mosaic, matplotlib figures as images, MSE, timing, the WebP lossless anchor, and a setting of pil_kmq changed for a block."""

from __future__ import annotations

import io
import math
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT.parent / "shared" / "bench"
KODAK = sorted((BENCH / "kodak").glob("kodim*.png"))
CACHE = Path(__file__).resolve().parent / "cache"
T = TypeVar("T")


def kodak_images() -> list[tuple[str, Image.Image]]:
    """The 24 Kodak images as loaded RGB images, by name."""
    if not KODAK:
        sys.exit(f"no Kodak images in {BENCH / 'kodak'}: the benchmarks need ../shared beside the project")
    images = []
    for path in KODAK:
        with Image.open(path) as image:
            images.append((path.stem, image.convert("RGB")))
    return images


def mosaic(path: Path | None = None) -> Image.Image:
    """The 4608 x 2560 (11.8 MP) mosaic of the Kodak set, made once by ../shared/bench/make_mosaic.py."""
    path = path or CACHE / "mosaic.png"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(BENCH / "make_mosaic.py"), str(path)], check=True)
    with Image.open(path) as image:
        return image.convert("RGB")


def figure_image(draw: Callable[[object], None], size: tuple[float, float]) -> Image.Image:
    """An RGB image of a matplotlib figure (size in inches at 100 dpi) that draw fills."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=size, dpi=100)
    draw(figure)
    figure.canvas.draw()
    image = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())).convert("RGB")
    plt.close(figure)
    return image


def mse(original: np.ndarray, decoded: np.ndarray) -> float:
    """Mean over pixels of the squared RGB distance."""
    difference = original.astype(np.int32) - decoded.astype(np.int32)
    return float((difference * difference).sum(axis=-1).mean())


@contextmanager
def setting(owner: object, name: str, value: object) -> Iterator[None]:
    """owner.name (a module's constant the writer reads as it runs) set to value within the block."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def saved_kmq(image: Image.Image, k: int, compression: str = "auto") -> bytes:
    """The KMQ file of image.save(..., k=k, compression=compression)."""
    out = io.BytesIO()
    image.save(out, "KMQ", k=k, compression=compression)
    return out.getvalue()


def timed(function: Callable[[], T]) -> tuple[T, float]:
    """function()'s result and the seconds it took."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def webp_lossless_of(kmq: bytes) -> int:
    """WebP lossless bytes (`method=6`, libwebp's greatest effort) of the pixels a KMQ file holds."""
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(kmq)) as image:
        image.save(buffer, "WEBP", lossless=True, quality=100, method=6)
    return len(buffer.getvalue())


def best_time(function: Callable[[], object], repeat: int = 3) -> float:
    """The fastest of `repeat` runs, in seconds."""
    return best_times((function,), repeat)[0]


def best_times(functions: Sequence[Callable[[], object]], repeat: int = 3) -> list[float]:
    """The fastest of `repeat` runs of each function, in seconds, the functions run in turns,
    so that a ratio of two sees both under the same conditions (clock, caches, other work)
    rather than one block of runs and then another."""
    best = [math.inf] * len(functions)
    for _ in range(repeat):
        for at, function in enumerate(functions):
            start = time.perf_counter()
            function()
            best[at] = min(best[at], time.perf_counter() - start)
    return best


def jxl_lossless(image: Image.Image) -> bytes:
    """JPEG XL lossless at libjxl's greatest effort (pillow-jxl-plugin, in the bench extra):
    the smallest lossless anchor a user can pick from Pillow today."""
    import io

    import pillow_jxl  # noqa: F401  (registers JXL)

    out = io.BytesIO()
    image.save(out, "JXL", lossless=True, effort=9)
    return out.getvalue()


def geomean(values: Iterable[float]) -> float:
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values))


def ratio_text(value: float) -> str:
    """A ratio for a table, "—" where there is none (NaN)."""
    return "—" if value != value else f"{value:.3f}"


def spread_text(values: Iterable[float]) -> str:
    """Geometric mean (least-most) for a table, "—" for no values."""
    values = list(values)
    return f"{geomean(values):.3f} ({min(values):.3f}-{max(values):.3f})" if values else "—"
