"""MED residuals of a drawing's strip (`coding.MED_DRAWN`): what coding both ways buys.

A drawing's strip whose codebook runs from dark to light (a grey drawing, a grey label map) is
tried as MED residuals too (`coding._predicted_or`): where zstd's quick trial codes the
residuals in under `MED_DRAWN[0]` x the way the trial took (rows or runs), they are stored;
from there up to `MED_DRAWN[1]` x, both are compressed at their real levels and the smaller
kept; above, the residuals are not coded. Compressing both is a drawing's rows' optimal parse
twice: most of a grey chart's save.

Per image and K, one drawn strip (`coding.one_drawn_strip`), a codebook that runs from dark to
light: the trial's ratio (residuals ÷ the way taken), both ways' real bytes, and which is
smaller. Then, per set, the strips' bytes under the writer's bounds and under one threshold t
(residuals where the ratio is under t, no second coding), ÷ the smallest of the two ways, and
how many strips are coded twice. Sets: the drawings made for tuning (`rows_level.py`,
`many_colours.py`) and the held-out graphics (`heldout.py`), as grey images, and the label
maps of `zstd_floor.py` as grey. K = 4, 16, 64, 256 and each image's exact grey levels.

    python benchmarks/med_drawn.py
"""

from __future__ import annotations

import io

import heldout
import many_colours
import numpy as np
import rows_level
import zstd_floor
from common import geomean
from PIL import Image

import pil_kmq
from pil_kmq import coding
from pil_kmq.format import StripMethod, bits_for_k

THRESHOLDS = (0.8, 0.9, 1.0, 1.1)

Strip = tuple[str, int, str, float, int, int]  # image, k, way taken, trial ratio, residuals' bytes, that way's bytes


def strips(images: dict[str, Image.Image]) -> list[Strip]:
    found: list[Strip] = []
    for name, image in images.items():
        grey = image.convert("L")
        colours = len(grey.getcolors(256) or ())
        seen = set()
        for k in sorted({4, 16, 64, 256, colours}):
            buffer = io.BytesIO()
            grey.save(buffer, "KMQ", k=k)
            indices, codebook = pil_kmq.decode_kmq(buffer.getvalue())[1]
            bits = bits_for_k(len(codebook))
            if len(codebook) in seen or not coding.one_drawn_strip(indices) or not coding.predictable(codebook):
                continue
            seen.add(len(codebook))
            flags = coding._run_flags(indices)
            streams = coding._runs_streams(indices, flags, bits)
            runs_trial = sum(coding._probe_size(stream) for stream in streams)
            rows = coding._packed_rows(indices, bits)
            rows_trial = coding._probe_size(rows)
            few = coding._few_literals(flags)
            take_rows = rows_trial < (1.0 if few else coding.ROWS_REPEAT) * runs_trial
            trial = rows_trial if take_rows else runs_trial
            predicted = coding.residuals(indices).tobytes()
            ratio = coding._probe_size(predicted) / trial
            med = len(coding._coded_predicted(predicted, drawn=True))
            other = len(coding._coded_rows(rows)) if take_rows else len(coding._coded_runs(*streams, StripMethod.RUNS_ZSTD, bits))
            found.append((name, len(codebook), "rows" if take_rows else "runs", ratio, med, other))
    return found


def chosen(strip: Strip, sure: float, margin: float) -> tuple[int, bool]:
    """(bytes stored, coded both ways) under bounds (sure, margin)."""
    _, _, _, ratio, med, other = strip
    if ratio >= margin:
        return other, False
    if ratio < sure:
        return med, False
    return min(med, other), True


def report(title: str, found: list[Strip]) -> None:
    print(f"\n#### {title}\n")
    print("| image | k | way the trial took | residuals' trial ÷ its trial | residuals' bytes | its bytes | residuals ÷ it |")
    print("|---|---|---|---|---|---|---|")
    for name, k, way, ratio, med, other in found:
        print(f"| {name} | {k} | {way} | {ratio:.3f} | {med:,} | {other:,} | {med / other:.3f} |")
    best = [min(strip[4], strip[5]) for strip in found]
    policies = {f"writer's bounds {coding.MED_DRAWN}": coding.MED_DRAWN, **{f"one threshold {t}": (t, t) for t in THRESHOLDS},
                "the bounds before 1af171e, (0.8, 1.1)": (0.8, 1.1), "both ways below 1.1, none stored unchecked": (0.0, 1.1),
                "no residuals": (0.0, 0.0)}
    print("\n| rule | bytes ÷ the smaller way (geometric mean, worst) | total bytes ÷ the smaller ways' | strips coded both ways |")
    print("|---|---|---|---|")
    for label, (sure, margin) in policies.items():
        picks = [chosen(strip, sure, margin) for strip in found]
        ratios = [size / low for (size, _), low in zip(picks, best, strict=True)]
        print(f"| {label} | {geomean(ratios):.4f} ({max(ratios):.3f}) | {sum(size for size, _ in picks) / sum(best):.4f} | {sum(both for _, both in picks)} of {len(found)} |")


def main() -> None:
    print(f"pil_kmq {pil_kmq.__version__}; MED_DRAWN {coding.MED_DRAWN}")
    sets = {"Drawings made for tuning, as grey": {**rows_level.drawings(), **many_colours.graphics()},
            "Held-out graphics, as grey": heldout.graphics(),
            "Label maps of zstd_floor.py, as grey": zstd_floor.label_maps()}
    for title, images in sets.items():
        report(title, strips(images))
    print("done")


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
