"""psnr= with compression="auto" (the default): whether the search is run for near coded strips
or for zstd's, and what that choice costs against running both.

psnr= asks for the smallest file that reaches a PSNR. From the nearest indices of the search's
first k, the writer estimates near_rans's bytes (rows sampled one in AUTO_STEP) against zstd's
strips' real bytes, and searches near coded strips where the estimate is at most
PSNR_NEAR_MARGIN of them, zstd's above PSNR_BOTH_MARGIN, and both between, keeping the smaller
file (codec.psnr_methods). Per image and target: the first k, that ratio, what was searched,
the files of both searches (compression="near" and "zstd") as bytes near ÷ zstd, auto's file ÷
the smaller of the two, auto's save time ÷ (a psnr= zstd save) and its load time ÷ (the zstd
file's load), and auto's save time ÷ a plain `k=` save at the k it chose, best of --repeat
taken in turns. Two sets: the one the margin was chosen
on (every third Kodak photo and the drawings made for tuning, rows_level.py), and the held-out
photos and graphics of heldout.py.

    pip install '.[bench]'
    python benchmarks/psnr_auto.py
"""

from __future__ import annotations

import argparse
import io

import heldout
import numpy as np
import rows_level
from common import best_times, geomean, kodak_images
from PIL import Image
from size import load_kmq

import pil_kmq
from pil_kmq import codec, near
from pil_kmq.format import MAX_K, StripMethod
from pil_kmq.near import estimated_size
from pil_kmq.quantize import Clustering

TARGETS = (26, 32, 38, 44)


def _saved(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", **options)
    return buffer.getvalue()


def _estimate(image: Image.Image, psnr: float) -> tuple[int, float, str]:
    """The search's first k, the near_rans estimate ÷ zstd's bytes of its nearest indices, and
    the strips searched for."""
    first = Clustering(np.asarray(image), 0).at_psnr(psnr, MAX_K, narrow=False)
    coded = codec.coded(first, StripMethod.RUNS_ZSTD)
    searched = {(StripMethod.NEAR_FLAT,): "near", (StripMethod.RUNS_ZSTD,): "zstd"}.get(codec.psnr_methods(first, coded), "both")
    if not 1 < len(first.codebook) <= near.MAX_K:
        return len(first.codebook), float("nan"), searched  # near_rans is not estimated
    return len(first.codebook), estimated_size(first.indices, first.codebook, codec.AUTO_STEP) / codec._stream_length(coded), searched


def measure(image: Image.Image, psnr: float, repeat: int) -> list[object]:
    k, estimate, searched = _estimate(image, psnr)
    auto, near, zstd = (_saved(image, psnr=psnr, compression=compression) for compression in ("auto", "near", "zstd"))
    with Image.open(io.BytesIO(auto)) as opened:
        chosen = opened.kmq_header.k
    save_auto, save_zstd, save_plain = best_times([lambda: _saved(image, psnr=psnr), lambda: _saved(image, psnr=psnr, compression="zstd"), lambda: _saved(image, k=chosen)], repeat)
    load_auto, load_zstd = best_times([lambda: load_kmq(auto), lambda: load_kmq(zstd)], max(repeat, 7))
    return [k, estimate, searched, len(near) / len(zstd), len(auto) / min(len(near), len(zstd)), save_auto / save_zstd, load_auto / load_zstd, save_auto / save_plain]


def table(title: str, images: dict[str, Image.Image], repeat: int) -> None:
    print(f"\n### {title}\n")
    print("| image | psnr | first k | estimate ÷ zstd | searched | near ÷ zstd bytes | auto ÷ smaller | auto save ÷ zstd save | auto load ÷ zstd load | auto save ÷ plain save |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, image in images.items():
        for psnr in TARGETS:
            row = measure(image.convert("RGB"), psnr, repeat)
            rows.append(row)
            print(f"| {name} | {psnr} | {row[0]} | {row[1]:.3f} | {row[2]} | {row[3]:.3f} | {row[4]:.3f} | {row[5]:.2f} | {row[6]:.2f} | {row[7]:.2f} |", flush=True)
    means = [geomean(row[column] for row in rows) for column in (3, 4, 5, 6, 7)]
    worst = max(row[4] for row in rows)
    print(f"| **geometric mean** | | | | | {means[0]:.3f} | {means[1]:.3f} (worst {worst:.3f}) | {means[2]:.2f} | {means[3]:.2f} | {means[4]:.2f} (worst {max(row[7] for row in rows):.2f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="saves timed per file (loads: at least 7)")
    parser.add_argument("--held-out-only", action="store_true")
    args = parser.parse_args()
    if not args.held_out_only:
        kodak = dict(kodak_images()[::3])
        table("Tuning: every third Kodak photo", kodak, args.repeat)
        table("Tuning: the drawings made for tuning (rows_level.py)", rows_level.drawings(), args.repeat)
    table("Held out: photos (heldout.py)", heldout.photos(), args.repeat)
    table("Held out: graphics (heldout.py)", heldout.graphics(), args.repeat)


if __name__ == "__main__":
    main()
