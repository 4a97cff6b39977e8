"""Quality: MSE of KMQ (default options, decoded from the file) against the seed article's method.

MSE is the mean over pixels of the squared RGB distance between the original and the decoded
image. The seed method's MSE comes from cache/seed_method.json (run seed_method.py first;
it is measured once, honestly, with the article's exact KMeans call).

    python benchmarks/quality.py
"""

from __future__ import annotations

import io

import numpy as np
import seed_method
from common import geomean, kodak_images, mse
from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)

KS = seed_method.KS


def kmq_mse(image: Image.Image, k: int) -> float:
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=k)
    with Image.open(buffer) as decoded:
        return mse(np.asarray(image), np.asarray(decoded))


def main() -> None:
    seed = seed_method.load()
    print("| image | K | seed MSE | KMQ MSE | ratio |")
    print("|---|---|---|---|---|")
    ratios: dict[int, list[float]] = {k: [] for k in KS}
    for name, image in kodak_images():
        for k in KS:
            reference = seed[f"{name}/{k}"]["mse"]
            ours = kmq_mse(image, k)
            ratios[k].append(ours / reference)
            print(f"| {name} | {k} | {reference:.2f} | {ours:.2f} | {ours / reference:.4f} |", flush=True)
    print()
    print("| K | geometric mean ratio | max ratio |")
    print("|---|---|---|")
    for k in KS:
        print(f"| {k} | {geomean(ratios[k]):.4f} | {max(ratios[k]):.4f} |")
    everything = [r for k in KS for r in ratios[k]]
    print(f"| all | **{geomean(everything):.4f}** | **{max(everything):.4f}** |")


if __name__ == "__main__":
    main()
