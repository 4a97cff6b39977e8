"""Rewrite the golden KMQ files and their expected pixels in samples/.

Run only when the bytes on disk are meant to change, together with spec/kmq.md:
    python samples/regenerate.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)

HERE = Path(__file__).parent

# (golden file, source image, Pillow mode it is saved from, k)
GOLDEN = [
    ("ihc-k2.kmq", "ihc.png", "RGB", 2),
    ("ihc-k16.kmq", "ihc.png", "RGB", 16),
    ("ihc-gray-k6.kmq", "ihc.png", "L", 6),
    ("kodim23-k1.kmq", "kodim23.png", "RGB", 1),
    ("kodim23-k16.kmq", "kodim23.png", "RGB", 16),
    ("kodim23-k256.kmq", "kodim23.png", "RGB", 256),
    ("kodim03-p12-k16.kmq", "kodim03-p12.png", "P", 16),
]


def expected_path(golden: str) -> Path:
    """The lossless PNG holding the pixels a golden file must decode to."""
    return HERE / "expected" / golden.replace(".kmq", ".png")


def main() -> None:
    (HERE / "expected").mkdir(exist_ok=True)
    for golden, source, mode, k in GOLDEN:
        with Image.open(HERE / source) as image:
            image.convert(mode).save(HERE / golden, k=k, seed=0, compression="none")
        with Image.open(HERE / golden) as decoded:
            decoded.save(expected_path(golden), optimize=True)
        print(golden, (HERE / golden).stat().st_size, "bytes")


if __name__ == "__main__":
    main()
