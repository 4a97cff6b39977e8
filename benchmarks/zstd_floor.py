"""compression="auto" near codes a label map without coding its zstd strips where zstd's quick
trial puts a floor under them that near coding comes in below (`codec.auto_coded`).

A default save codes the zstd strips first, then, where the indices look drawn, estimates
near coding's bytes, codes the image near coded when the estimate is within
`codec.AUTO_NEAR_MARGIN` of zstd's, and keeps the smaller. On a label map near coding wins four
to one, yet coding the zstd strips took 40 % of its save. Where one drawn strip holds the image
(`coding.one_drawn_strip`), the writer now takes a floor under those strips from the quick
trial (`coding.ZSTD_FLOOR` x the trial's runs, and rows or, for a grey image's codebook,
MED residuals: `coding.runs_floor` and `coding.rows_floor`) and weighs near coding against that first; zstd's strips are coded only
where near coding does not come in below it. The file is the same as long as the floor is
one: a strip that zstd's real levels code below it could make the writer keep near coding
where zstd's strips were smaller.

Two tables:

1. The floor. For every image and K whose strips are one drawn strip: the real levels' bytes
   ÷ the quick trial's, runs and rows (`coding._coded_runs`, `coding._coded_rows`) and, for a
   codebook that runs from dark to light, MED residuals (`coding._coded_predicted`, compressed
   as rows are), with the least of each over trials of 2,048 bytes and more (where a floor
   can pass `codec.AUTO_MIN_BYTES`) and below. `ZSTD_FLOOR` was set on the drawings made for
   tuning, the held-out graphics and the Kodak photos that look drawn at K = 4 and 16, and
   the residuals' share (the rows') checked on both sets of drawings as grey; the generated
   label maps below were not looked at before.
2. Saves with the floor ÷ without it (`codec._zstd_floor` returning None: the writer before),
   taken in turns (best of --repeat), whether the file is byte for byte the same, whether the
   floor spared zstd's strips, and both saves ÷ Pillow's median cut + PNG save.

Sets: the drawings made for tuning (`rows_level.py`, `many_colours.py`), the held-out graphics
(`heldout.py`), both also as grey images, and label maps generated here that no choice was made on (Voronoi maps of 5 to
200 regions at 0.3 to 3 MP, discs on black as grey levels and with red specks, and a photo's
colour segmentation: scikit-image's astronaut at 8 median-cut colours, smoothed by a mode
filter). K = 4, 16, 64, 256 and each image's exact colour count (up to 4,096).

    python benchmarks/zstd_floor.py
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable

import heldout
import many_colours
import numpy as np
import rows_level
from common import best_times, kodak_images, ratio_text, setting, spread_text
from PIL import Image, ImageDraw, ImageFilter

import pil_kmq
from pil_kmq import codec, coding
from pil_kmq.format import StripMethod, bits_for_k

KS = (4, 16, 64, 256)
MAX_EXACT = 4096


def label_maps() -> dict[str, Image.Image]:
    """Label maps no choice was made on: Voronoi regions, discs, and a photo's segmentation."""
    rng = np.random.default_rng(7)
    maps = {}
    for width, height, regions in ((640, 480, 12), (1024, 768, 60), (300, 900, 5), (2000, 1500, 200)):
        seeds = rng.integers(0, (width, height), (regions, 2))
        rows, columns = np.mgrid[:height, :width]
        nearest = np.argmin((columns[..., None] - seeds[:, 0]) ** 2 + (rows[..., None] - seeds[:, 1]) ** 2, axis=-1)
        colours = rng.integers(0, 256, (regions, 3), dtype=np.uint8)
        maps[f"voronoi-{regions}"] = Image.fromarray(colours[nearest])
    discs = Image.new("L", (800, 800), 0)
    draw = ImageDraw.Draw(discs)
    for _ in range(40):
        x, y = rng.integers(0, 800, 2)
        radius = int(rng.integers(10, 90))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=int(rng.integers(1, 8)) * 30)
    maps["discs-grey"] = discs
    specks = np.asarray(discs.convert("RGB")).copy()
    specks[rng.random(specks.shape[:2]) < 0.002] = (255, 0, 0)
    maps["discs-specks"] = Image.fromarray(specks)
    import skimage.data

    photo = Image.fromarray(skimage.data.astronaut())
    maps["astronaut-segments"] = photo.quantize(8, method=Image.Quantize.MEDIANCUT).convert("RGB").filter(ImageFilter.ModeFilter(7))
    return maps


def _grey(images: dict[str, Image.Image]) -> dict[str, Image.Image]:
    """The images as grey levels: their codebooks run from dark to light (MED residuals are tried)."""
    return {name: image.convert("L") for name, image in images.items()}


def _ks(image: Image.Image) -> list[int]:
    colours = len(image.getcolors(MAX_EXACT) or ())
    return [*KS, colours] if 1 < colours <= MAX_EXACT and colours not in KS else list(KS)


def _indices(image: Image.Image, k: int) -> tuple[np.ndarray, np.ndarray]:
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=k)
    return pil_kmq.decode_kmq(buffer.getvalue())[1]


# --- 1. the floor -----------------------------------------------------------------------------


Floor = tuple[str, int, int, float, int, float, int | None, float | None]


def floor_rows(images: dict[str, Image.Image], ks: Callable[[Image.Image], list[int]]) -> list[Floor]:
    """(image, k, runs' trial bytes, real ÷ trial, rows' trial bytes, real ÷ trial, and for an
    ordered codebook MED residuals' trial bytes and real ÷ trial) where one drawn strip holds the image."""
    found: list[Floor] = []
    for name, image in images.items():
        seen = set()
        for k in ks(image):
            indices, codebook = _indices(image, k)
            bits = bits_for_k(len(codebook))
            if len(codebook) in seen or not coding.one_drawn_strip(indices):
                continue  # K above the image's colours stores the same indices
            seen.add(len(codebook))
            streams = coding._runs_streams(indices, coding._run_flags(indices), bits)
            runs_trial = sum(coding._probe_size(stream) for stream in streams)
            rows = coding._packed_rows(indices, bits)
            rows_trial = coding._probe_size(rows)
            runs_real = len(coding._coded_runs(*streams, StripMethod.RUNS_ZSTD, bits))
            rows_real = len(coding._coded_rows(rows))
            med_trial = med = None
            if coding.predictable(codebook) and coding._predicted_fits(indices, bits):
                predicted = coding.residuals(indices).tobytes()
                med_trial = coding._probe_size(predicted)
                med = len(coding._coded_predicted(predicted, drawn=True)) / med_trial
            found.append((name, len(codebook), runs_trial, runs_real / runs_trial, rows_trial, rows_real / rows_trial, med_trial, med))
    return found


def print_floor(title: str, found: list[Floor]) -> None:
    print(f"\n#### {title}: real levels ÷ quick trial, one drawn strip (ZSTD_FLOOR {coding.ZSTD_FLOOR})\n")
    print("| image | k | runs' trial, bytes | runs: real ÷ trial | rows' trial, bytes | rows: real ÷ trial | residuals' trial, bytes | residuals: real ÷ trial |")
    print("|---|---|---|---|---|---|---|---|")
    for name, k, runs_trial, runs, rows_trial, rows, med_trial, med in found:
        residuals = f"{med_trial:,} | {med:.3f}" if med_trial is not None else "— | —"
        print(f"| {name} | {k} | {runs_trial:,} | {runs:.3f} | {rows_trial:,} | {rows:.3f} | {residuals} |")
    for label, test in (("2,048 bytes and more", lambda trial: trial >= codec.AUTO_MIN_BYTES), ("below 2,048", lambda trial: trial < codec.AUTO_MIN_BYTES)):
        least = []
        for what, trial_at, ratio_at in (("runs", 2, 3), ("rows", 4, 5), ("residuals", 6, 7)):
            ratios = [row[ratio_at] for row in found if row[trial_at] is not None and test(row[trial_at])]
            least.append(f"{what} {min(ratios):.3f}" if ratios else f"{what} —")  # type: ignore[type-var]
        print(f"| **least, trials of {label}** | | | {least[0]} | | {least[1]} | | {least[2]} |")
    under = [(row[0], row[1], row[2]) for row in found if row[3] < coding.ZSTD_FLOOR[0] or min(row[5], row[7] if row[7] is not None else 1) < coding.ZSTD_FLOOR[1]]
    told = ", ".join(f"{name} at {k} (runs' floor {int(coding.ZSTD_FLOOR[0] * trial):,} bytes{', under AUTO_MIN_BYTES: never used' if coding.ZSTD_FLOOR[0] * trial < codec.AUTO_MIN_BYTES else ''})" for name, k, trial in under)
    print(f"\nBelow the floor: {told or 'none'}")


# --- 2. saves ---------------------------------------------------------------------------------


def _without_floor() -> object:
    return setting(codec, "_zstd_floor", lambda quantized, exact, estimate, trials: None)


def save_rows(images: dict[str, Image.Image], repeat: int) -> list[tuple[str, int, bool, bool, float, float, float]]:
    """(image, k, same file, zstd spared, save with ÷ without, with ÷ median cut, without ÷ median cut)."""
    found = []
    coded_zstd = []
    original = codec.coded

    def counting(quantized: object, method: StripMethod | None, weigh: bool = True) -> codec.Coded:
        coded_zstd.append(method == StripMethod.RUNS_ZSTD)
        return original(quantized, method, weigh)  # type: ignore[arg-type]

    for name, image in images.items():
        for k in _ks(image):
            with setting(codec, "coded", counting):
                coded_zstd.clear()
                with_floor = _saved(image, k)
                spared = not any(coded_zstd)
            with _without_floor():
                without = _saved(image, k)

            def save_without(image: Image.Image = image, k: int = k) -> None:
                with _without_floor():
                    _saved(image, k)

            def median_cut(image: Image.Image = image, k: int = k) -> None:
                image.quantize(k, method=Image.Quantize.MEDIANCUT).save(io.BytesIO(), "PNG")

            functions = [lambda image=image, k=k: _saved(image, k), save_without]
            if k <= 256:
                functions.append(median_cut)
            times = best_times(functions, repeat)
            anchor = times[2] if k <= 256 else float("nan")
            found.append((name, k, with_floor == without, spared, times[0] / times[1], times[0] / anchor, times[1] / anchor))
    return found


def _saved(image: Image.Image, k: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "KMQ", k=k)
    return buffer.getvalue()


def print_saves(title: str, found: list[tuple[str, int, bool, bool, float, float, float]]) -> None:
    print(f"\n#### {title}: saves with the floor ÷ without\n")
    print("| image | K | same file | zstd's strips spared | save ÷ without | save ÷ median cut + PNG | without ÷ median cut + PNG |")
    print("|---|---|---|---|---|---|---|")
    for name, k, same, spared, ratio, with_anchor, without_anchor in found:
        print(f"| {name} | {k} | {'yes' if same else '**no**'} | {'yes' if spared else ''} | {ratio:.3f} | {ratio_text(with_anchor)} | {ratio_text(without_anchor)} |")
    spared_ratios = [row[4] for row in found if row[3]]
    other = [row[4] for row in found if not row[3]]
    anchored = [row for row in found if row[1] <= 256]
    print(f"| **geometric mean**, spared ({len(spared_ratios)}) / not ({len(other)}) | | {sum(row[2] for row in found)} of {len(found)} | | "
          f"{spread_text(spared_ratios)} / {spread_text(other)} | {spread_text(row[5] for row in anchored)} | {spread_text(row[6] for row in anchored)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"pil_kmq {pil_kmq.__version__}; ZSTD_FLOOR {coding.ZSTD_FLOOR}, AUTO_NEAR_MARGIN {codec.AUTO_NEAR_MARGIN}, AUTO_MIN_BYTES {codec.AUTO_MIN_BYTES:,}")
    tuning, held_out = {**rows_level.drawings(), **many_colours.graphics()}, heldout.graphics()
    sets = {"Drawings made for tuning": tuning,
            "Drawings made for tuning, as grey": _grey(tuning),
            "Held-out graphics": held_out,
            "Held-out graphics, as grey": _grey(held_out),
            "Label maps generated here (unseen)": label_maps()}
    kodak = dict(kodak_images())
    for title, images in sets.items():
        print_floor(title, floor_rows(images, _ks))
    print_floor("Kodak photos that look drawn", floor_rows(kodak, lambda image: [4, 16]))
    for title, images in sets.items():
        print_saves(title, save_rows(images, args.repeat))
    print("done")


if __name__ == "__main__":
    main()
