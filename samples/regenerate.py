"""Rewrite the golden KMQ files and their expected pixels in samples/.

Writes the files that are missing; `--all` rewrites every one. Run --all only when the
bytes on disk are meant to change, together with spec/kmq.md:
    python samples/regenerate.py [--all]
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)

HERE = Path(__file__).parent

# (golden file, source image, Pillow mode it is saved from, k, compression)
GOLDEN = [
    ("ihc-k2.kmq", "ihc.png", "RGB", 2, "none"),
    ("ihc-k16.kmq", "ihc.png", "RGB", 16, "none"),
    ("ihc-gray-k6.kmq", "ihc.png", "L", 6, "none"),
    ("kodim23-k1.kmq", "kodim23.png", "RGB", 1, "none"),
    ("kodim23-k16.kmq", "kodim23.png", "RGB", 16, "none"),
    ("kodim23-k256.kmq", "kodim23.png", "RGB", 256, "none"),
    ("kodim03-p12-k16.kmq", "kodim03-p12.png", "P", 16, "none"),
    ("ihc-k16-zstd.kmq", "ihc.png", "RGB", 16, "zstd"),
    ("ihc-k256-zlib.kmq", "ihc.png", "RGB", 256, "zlib"),
    ("ihc-gray-k6-zstd.kmq", "ihc.png", "L", 6, "zstd"),
    ("kodim03-p12-k16-zstd.kmq", "kodim03-p12.png", "P", 16, "zstd"),
    ("kodim23-k1000.kmq", "kodim23.png", "RGB", 1000, "none"),
    ("kodim23-k1000-zstd.kmq", "kodim23.png", "RGB", 1000, "zstd"),
]


def expected_path(golden: str) -> Path:
    """The lossless PNG holding the pixels a golden file must decode to."""
    return HERE / "expected" / golden.replace(".kmq", ".png")


def main() -> None:
    (HERE / "expected").mkdir(exist_ok=True)
    for golden, source, mode, k, compression in GOLDEN:
        if (HERE / golden).exists() and "--all" not in sys.argv:
            continue  # golden files change only on purpose: --all rewrites every one
        with Image.open(HERE / source) as image:
            image.convert(mode).save(HERE / golden, k=k, seed=0, compression=compression)
        with Image.open(HERE / golden) as decoded:
            decoded.save(expected_path(golden), optimize=True)
        print(golden, (HERE / golden).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
