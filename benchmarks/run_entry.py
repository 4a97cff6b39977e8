"""Rate-optimized indices for runs: a run's entry chosen among the next pixels' nearest entries.

With `psnr_loss` (and `psnr`), zstd's and zlib's strips store a pixel whose index repeats the
one before it as a run flag, almost free. The scan (`rate.scan`) cuts each segment of pixels
into runs whose pixels each add at most a threshold T to their squared error. Before, a run took
its first pixel's own nearest entry (`rate.LOOKAHEAD` = 1); now it takes, of the nearest
entries of its first LOOKAHEAD pixels, the one that the most pixels take: a run can start on
the colour the pixels after it need.

Per image and K: file bytes with LOOKAHEAD ÷ with 1 at equal PSNR (each over psnr_loss = 0.25,
0.5, 1, 2 dB: the mean difference of log bytes, interpolated linearly in PSNR, over the PSNR
range both cover; "—" where they cover none in common), and the time of the four saves (Pillow's
`save`, the files a user gets: where the nearest indices look drawn and code smaller, both keep
the plain save), best of --repeat, the two taken in turns. Sets: the Kodak photos (where LOOKAHEAD was
chosen, on every third), the held-out photos and graphics (`heldout.py`), never tuned on.
`--sweep` instead compares LOOKAHEAD = 2, 4, 8 and 16 with 1 on every third Kodak photo (how
LOOKAHEAD was chosen).

    pip install '.[bench]'
    python benchmarks/run_entry.py [--sweep]
"""

from __future__ import annotations

import argparse
import io
from contextlib import AbstractContextManager

import heldout
import numpy as np
from common import best_times, geomean, kodak_images, setting
from PIL import Image

import pil_kmq  # noqa: F401  (registers KMQ)
from pil_kmq import rate
from pil_kmq.quantize import psnr_for_mse

KS = (16, 64, 256)
LOSSES = (0.25, 0.5, 1.0, 2.0)


def lookahead(value: int) -> AbstractContextManager[None]:
    """The scan with runs' entries chosen among `value` pixels' nearest entries."""
    return setting(rate, "LOOKAHEAD", value)


def _saved(image: Image.Image, k: int, loss: float) -> bytes:
    """The file a user's save writes (Pillow's `save`, the default compression)."""
    out = io.BytesIO()
    image.save(out, "KMQ", k=k, psnr_loss=loss)
    return out.getvalue()


def _curve(image: Image.Image, k: int, value: int) -> list[tuple[float, int]]:
    """(PSNR, file bytes) at each loss, with runs' entries chosen among `value` pixels' entries."""
    pixels = np.asarray(image).astype(np.float64)
    points = []
    with lookahead(value):
        for loss in LOSSES:
            data = _saved(image, k, loss)
            with Image.open(io.BytesIO(data)) as saved:
                decoded = np.asarray(saved.convert("RGB")).astype(np.float64)
            points.append((psnr_for_mse(float(((pixels - decoded) ** 2).mean())), len(data)))
    return points


def _saves(image: Image.Image, k: int, value: int) -> None:
    with lookahead(value):
        for loss in LOSSES:
            _saved(image, k, loss)


def bytes_at_equal_psnr(now: list[tuple[float, int]], before: list[tuple[float, int]]) -> float | None:
    """exp(mean of log(now bytes) - log(before bytes)) over the PSNR range both curves cover;
    None where they cover none in common (a drawing whose loss changes almost nothing)."""
    if now == before:  # an image kept exact (at most K colours) at every loss
        return 1.0
    now_sorted, before_sorted = sorted(now), sorted(before)
    low, high = max(now_sorted[0][0], before_sorted[0][0]), min(now_sorted[-1][0], before_sorted[-1][0])
    if high <= low:
        return None
    grid = np.linspace(low, high, 32)

    def log_bytes(curve: list[tuple[float, int]]) -> np.ndarray:
        return np.interp(grid, [p for p, _ in curve], np.log([b for _, b in curve]))

    return float(np.exp(np.mean(log_bytes(now_sorted) - log_bytes(before_sorted))))


def measure(image: Image.Image, k: int, repeat: int, value: int | None = None) -> tuple[float | None, float, float]:
    """(bytes with LOOKAHEAD (or `value`) ÷ with 1 at equal PSNR, save time ÷ with 1, the PSNR
    range's middle)."""
    value = rate.LOOKAHEAD if value is None else value
    image = image.convert("RGB")
    now, before = _curve(image, k, value), _curve(image, k, 1)
    time_now, time_before = best_times([lambda: _saves(image, k, value), lambda: _saves(image, k, 1)], repeat)
    middle = float(np.median([p for p, _ in now]))
    return bytes_at_equal_psnr(now, before), time_now / time_before, middle


def run(title: str, images: list[tuple[str, Image.Image]], repeat: int) -> None:
    print(f"\n### {title}\n")
    print("| image | " + " | ".join(f"K = {k}: bytes ÷ before (at PSNR) | save ÷ before" for k in KS) + " |")
    print("|---|" + "---|---|" * len(KS))
    results = {k: [] for k in KS}
    for name, image in images:
        cells = []
        for k in KS:
            ratio, save, middle = measure(image, k, repeat)
            results[k].append((ratio, save))
            cells += ["—" if ratio is None else f"{ratio:.3f} ({middle:.1f} dB)", f"{save:.2f}"]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    means = []
    for k in KS:
        ratios = [ratio for ratio, _ in results[k] if ratio is not None]
        saves = [save for _, save in results[k]]
        bytes_cell = f"**{geomean(ratios):.3f}** (worst {max(ratios):.3f})" if ratios else "—"
        means += [bytes_cell, f"**{geomean(saves):.2f}** (worst {max(saves):.2f})"]
    print("| **geometric mean** | " + " | ".join(means) + " |")


def sweep(images: list[tuple[str, Image.Image]], repeat: int) -> None:
    print("\n| LOOKAHEAD | " + " | ".join(f"K = {k}: bytes ÷ 1's | save ÷ 1's" for k in KS[1:]) + " |")
    print("|---|" + "---|---|" * len(KS[1:]))
    for value in (2, 4, 8, 16):
        cells = []
        for k in KS[1:]:
            ratios, saves = zip(*[measure(image, k, repeat, value)[:2] for _, image in images], strict=True)
            cells += [f"{geomean(ratios):.3f} (worst {max(ratios):.3f})", f"{geomean(saves):.2f}"]
        print(f"| {value} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="saves timed per variant (best kept)")
    parser.add_argument("--limit", type=int, default=0, help="images per set (0: all)")
    parser.add_argument("--sweep", action="store_true", help="LOOKAHEAD 2, 4, 8, 16 against 1 on every third Kodak photo, K = 64 and 256")
    args = parser.parse_args()
    limit = args.limit or None
    if args.sweep:
        print("Every third Kodak photo; psnr_loss = " + ", ".join(map(str, LOSSES)) + " dB")
        sweep(kodak_images()[::3][:limit], args.repeat)
        return
    print(f"LOOKAHEAD = {rate.LOOKAHEAD} against 1; psnr_loss = {', '.join(map(str, LOSSES))} dB")
    run("Kodak photos (tuning)", kodak_images()[:limit], args.repeat)
    run("Held-out photos (never tuned on)", list(heldout.photos().items())[:limit], args.repeat)
    run("Held-out graphics (never tuned on)", list(heldout.graphics().items())[:limit], args.repeat)


if __name__ == "__main__":
    main()
