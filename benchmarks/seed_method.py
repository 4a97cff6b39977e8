"""The seed article's method, measured once per Kodak image and K, cached in cache/seed_method.json.

    KMeans(n_clusters=K, n_init="auto", max_iter=300, random_state=42) fitted on all pixels,
    centroids rounded to uint8, each pixel shown as the rounded centroid of its label.

The full run takes tens of minutes (K=256 fits take ~half a minute each); results are kept
so the quality benchmark can compare against them. `python benchmarks/seed_method.py`
fills the cache; entries already there are not measured again.
"""

from __future__ import annotations

import json
import time

import numpy as np
from common import CACHE, kodak_images, mse
from sklearn.cluster import KMeans

KS = (2, 16, 64, 256)
PATH = CACHE / "seed_method.json"


def seed_method(pixels: np.ndarray, k: int) -> np.ndarray:
    """The article's compress_image + reconstruct_image, centroids rounded to uint8."""
    model = KMeans(n_clusters=k, n_init="auto", max_iter=300, random_state=42).fit(pixels)
    codebook = np.clip(np.rint(model.cluster_centers_), 0, 255).astype(np.uint8)
    return codebook[model.labels_]


def load() -> dict[str, dict[str, float]]:
    return json.loads(PATH.read_text()) if PATH.exists() else {}


def main() -> None:
    CACHE.mkdir(exist_ok=True)
    results = load()
    for name, image in kodak_images():
        pixels = np.asarray(image).reshape(-1, 3)
        for k in KS:
            key = f"{name}/{k}"
            if key in results:
                continue
            start = time.perf_counter()
            decoded = seed_method(pixels, k)
            seconds = time.perf_counter() - start
            results[key] = {"mse": mse(pixels, decoded), "seconds": seconds}
            PATH.write_text(json.dumps(results, indent=1, sort_keys=True))
            print(f"{key:14} mse {results[key]['mse']:9.3f}  {seconds:7.2f} s", flush=True)


if __name__ == "__main__":
    main()
