"""Why zstd: the same strips (run flags + literals, as pil_kmq codes them) compressed by each
candidate codec, against PNG-8 holding the very same pixels.

Sizes are whole files (strip payloads + codebook + header); decode time is decompressing the
strips only, against Image.open(png8).convert("RGB") in full, so it flatters no codec.

    python benchmarks/codecs.py
"""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Callable

import numpy as np
import zstandard
from common import best_time, geomean, kodak_images
from PIL import Image

import pil_kmq
from pil_kmq.bitpack import pack_indices
from pil_kmq.coding import ZLIB_LEVEL, ZSTD_LEVEL, _run_flags, strip_height_for

KS = (16, 64, 256)
_LZMA = {"format": lzma.FORMAT_RAW, "filters": [{"id": lzma.FILTER_LZMA2, "preset": 6}]}
CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    f"zstd {ZSTD_LEVEL}": (zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress, zstandard.ZstdDecompressor().decompress),
    f"zlib {ZLIB_LEVEL}": (lambda data: zlib.compress(data, ZLIB_LEVEL), zlib.decompress),
    "lzma 6": (lambda data: lzma.compress(data, **_LZMA), lambda data: lzma.decompress(data, **_LZMA)),
    "bz2 9": (lambda data: bz2.compress(data, 9), bz2.decompress),
}


def streams(indices: np.ndarray) -> list[bytes]:
    """Flags and literals of every strip, uncompressed."""
    height, width = indices.shape
    rows = strip_height_for(width, height)
    out = []
    for top in range(0, height, rows):
        strip = indices[top : top + rows]
        flags = _run_flags(strip)
        out += [np.packbits(flags).tobytes(), pack_indices(strip.ravel()[~flags], 8)]
    return out


def main() -> None:
    sizes: dict[str, list[float]] = {name: [] for name in CODECS}
    decode: dict[str, list[float]] = {name: [] for name in CODECS}
    for _, image in kodak_images():
        for k in KS:
            indices, codebook = pil_kmq.compress_image(np.asarray(image), k)
            png8 = io.BytesIO()
            Image.fromarray(codebook[indices]).quantize(len(codebook), dither=Image.Dither.NONE).save(png8, "PNG", optimize=True)
            png_bytes = png8.getvalue()
            png_time = best_time(lambda: Image.open(io.BytesIO(png_bytes)).convert("RGB"), 5)
            raw = streams(indices)
            for name, (compress, decompress) in CODECS.items():
                coded = [compress(part) for part in raw]
                sizes[name].append((sum(map(len, coded)) + codebook.size + 48) / len(png_bytes))
                decode[name].append(best_time(lambda: [decompress(part) for part in coded], 5) / png_time)
    print("| codec | file bytes ÷ PNG-8 (geo, max) | strip decompression time ÷ PNG-8 full decode (geo) |")
    print("|---|---|---|")
    for name in CODECS:
        print(f"| {name} | {geomean(sizes[name]):.3f} ({max(sizes[name]):.3f}) | {geomean(decode[name]):.2f} |")


if __name__ == "__main__":
    main()
