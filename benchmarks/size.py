"""File size and decode speed: KMQ against PNG-8, WebP lossless and JPEG XL lossless holding the very same pixels.

For each Kodak image and K: save KMQ (default options, and each other compression for
comparison: "near" holds the same pixels in near_rans strips), decode it, then write those decoded pixels as PNG-8 (Pillow, optimize=True;
the decoded image has at most K colours, so quantize(K) of it is exact), as WebP
lossless (lossless=True, method=6) and as JPEG XL lossless (effort=9; needs the bench extra). Decode time: Image.open(kmq).load() against
Image.open(png8).convert("RGB"), alternated, best of --repeat.

    python benchmarks/size.py
"""

from __future__ import annotations

import argparse
import io
import time

from common import geomean, jxl_lossless, kodak_images
from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)

KS = (16, 64, 256)
METHODS = ("auto", "zlib", "none", "near")  # auto: the default


def encode(image: Image.Image, k: int, compression: str) -> bytes:
    out = io.BytesIO()
    image.save(out, "KMQ", k=k, compression=compression)
    return out.getvalue()


def anchors(decoded: Image.Image) -> tuple[bytes, bytes, bytes]:
    colours = len(decoded.getcolors(1 << 24) or [])
    png8, webp = io.BytesIO(), io.BytesIO()
    paletted = decoded.quantize(colours, dither=Image.Dither.NONE)
    assert paletted.convert("RGB").tobytes() == decoded.tobytes(), "PNG-8 must hold the very same pixels"
    paletted.save(png8, "PNG", optimize=True)
    decoded.save(webp, "WEBP", lossless=True, quality=100, method=6)  # libwebp's greatest effort
    return png8.getvalue(), webp.getvalue(), jxl_lossless(decoded)


def load_kmq(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.load()


def load_png8(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as image:
        image.convert("RGB")


def decode_times(kmq: bytes, png8: bytes, repeat: int) -> tuple[float, float]:
    ours, theirs = [], []
    for _ in range(repeat):
        for runner, data, times in ((load_kmq, kmq, ours), (load_png8, png8, theirs)):
            start = time.perf_counter()
            runner(data)
            times.append(time.perf_counter() - start)
    return min(ours), min(theirs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {}
    print(
        "| image | K | KMQ bytes | PNG-8 bytes | WebP-LL bytes | KMQ/PNG-8 | KMQ/WebP | zlib/PNG-8 | none/PNG-8 | KMQ load ms | PNG-8 load ms | load ratio "
        "| near bytes | near/PNG-8 | near/WebP | near load ms | near load ratio | JXL bytes | KMQ/JXL | near/JXL |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, image in kodak_images():
        for k in KS:
            files = {method: encode(image, k, method) for method in METHODS}
            with Image.open(io.BytesIO(files["auto"])) as decoded:
                decoded.load()
                png8, webp, jxl = anchors(decoded)
            ours, theirs = decode_times(files["auto"], png8, args.repeat)
            near, png_again = decode_times(files["near"], png8, args.repeat)
            figures = {
                "png": len(files["auto"]) / len(png8),
                "webp": len(files["auto"]) / len(webp),
                "zlib": len(files["zlib"]) / len(png8),
                "none": len(files["none"]) / len(png8),
                "load": ours / theirs,
                "near_png": len(files["near"]) / len(png8),
                "near_webp": len(files["near"]) / len(webp),
                "near_load": near / png_again,
                "jxl": len(files["auto"]) / len(jxl),
                "near_jxl": len(files["near"]) / len(jxl),
            }
            for key, value in figures.items():
                rows.setdefault(f"{key}/{k}", []).append(value)
                rows.setdefault(f"{key}/all", []).append(value)
            print(
                f"| {name} | {k} | {len(files['auto']):,} | {len(png8):,} | {len(webp):,} | {figures['png']:.3f} | "
                f"{figures['webp']:.3f} | {figures['zlib']:.3f} | {figures['none']:.3f} | {ours * 1000:.2f} | "
                f"{theirs * 1000:.2f} | {figures['load']:.2f} | {len(files['near']):,} | {figures['near_png']:.3f} | {figures['near_webp']:.3f} | "
                f"{near * 1000:.2f} | {figures['near_load']:.2f} | {len(jxl):,} | {figures['jxl']:.3f} | {figures['near_jxl']:.3f} |",
                flush=True,
            )
    print()
    print(
        "| K | KMQ/PNG-8 geo (max) | KMQ/WebP-LL geo (max) | zlib strips/PNG-8 geo | uncoded/PNG-8 geo | load time ratio geo "
        "| near/PNG-8 geo (max) | near/WebP-LL geo (max) | near load ratio geo | KMQ/JXL geo (max) | near/JXL geo (max) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for k in (*KS, "all"):
        def cell(key: str) -> str:
            values = rows[f"{key}/{k}"]
            return f"{geomean(values):.3f} ({max(values):.3f})"
        label = "**all**" if k == "all" else str(k)
        print(
            f"| {label} | {cell('png')} | {cell('webp')} | {geomean(rows[f'zlib/{k}']):.3f} | {geomean(rows[f'none/{k}']):.3f} | {geomean(rows[f'load/{k}']):.2f} "
            f"| {cell('near_png')} | {cell('near_webp')} | {geomean(rows[f'near_load/{k}']):.2f} | {cell('jxl')} | {cell('near_jxl')} |"
        )


if __name__ == "__main__":
    main()
