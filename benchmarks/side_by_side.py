"""Two ways of coding one drawn strip, coded side by side on the pool's two workers.

Where one strip holds a drawing (`coding.one_drawn_strip`), the second core sat idle while
the writer coded that strip, and on some images it coded it twice in turn:

- a grey drawing's strip whose MED residuals the quick trial puts within `coding.MED_DRAWN` of
  the way it took (rows or runs) is compressed both ways at the real levels, the smaller kept
  (`coding._predicted_or`): two optimal parses of a drawing's rows, most of a grey chart's
  save;
- `compression="auto"` codes zstd's strips and then, where its estimate of near coding is
  within `codec.AUTO_NEAR_MARGIN` of their bytes, near codes the image and keeps the smaller
  (`codec.auto_coded`; a label map spared by zstd's floor, `zstd_floor.py`, is not coded twice).

Now the two ways run side by side (`jobs.side_by_side`, only where a worker is spare,
`jobs.spare_worker`: beside other strips a third busy thread on two cores held a strip back;
elsewhere in turn, as before): the residuals beside the
other way; near coding beside zstd's strips where auto_coded is likely to weigh it against
them, its estimate within the margin of `codec.AUTO_TRIAL_SHARE` x the quick trial's bytes
(`codec._near_likely`); where that guess is wrong, near coding was done for nothing. The file
cannot change: the choice is made as before, only sooner.

Saves with ÷ without (both ways in turn, near coding only once zstd's bytes call for it: the
writer before), taken in turns (best of --repeat); whether the file is byte for byte the same;
what ran side by side (residuals, near coding kept or not; "residuals" counts a strip whose
two ways were both coded, side by side or, no worker being spare, in turn); and both saves ÷
Pillow's median cut + PNG save. Sets: the drawings made for tuning (`rows_level.py`,
`many_colours.py`), the held-out graphics (`heldout.py`), both also as grey images, the label
maps of `zstd_floor.py`, K = 4, 16, 64, 256 and each image's exact colour count (up to 4,096);
and every third Kodak photo, colour and grey, at K = 16 and 256, whose strips are more than
one. Then `compression="near"` at K = 2, 4, 8, 16 on the drawings: where near coding stores a
strip's rows, a sample of them is compressed packed and in whole bytes (`coding._rows_either_way`),
now side by side ("two ways", which counts a grey codebook's residuals too).

    python benchmarks/side_by_side.py
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import heldout
import many_colours
import rows_level
import zstd_floor
from common import best_times, kodak_images, ratio_text, saved_kmq, setting, spread_text
from med_rows import strip_methods
from PIL import Image

import pil_kmq
from pil_kmq import codec, coding
from pil_kmq.format import StripMethod

SLOW = 1.2  # a save above this x median cut's is a loss the speed targets name

Row = tuple[str, int, bool, str, float, float, float]  # image, k, same file, side by side, with ÷ without, with ÷ median cut, without ÷ median cut


@contextmanager
def _without() -> Iterator[None]:
    """The writer before: both ways in turn, near coding only once zstd's bytes call for it."""
    with ExitStack() as stack:
        stack.enter_context(setting(coding, "side_by_side", lambda first, second: (first(), second())))
        stack.enter_context(setting(codec, "_near_likely", lambda quantized, exact, estimate, trials: False))
        yield


def _what_ran(image: Image.Image, k: int, compression: str) -> tuple[bytes, str]:
    """The file saved with both ways side by side, and what ran so."""
    ran: list[str] = []

    def counted(owner: object, label: str) -> Callable[..., object]:
        original = owner.side_by_side  # type: ignore[attr-defined]

        def count(first: Callable[[], object], second: Callable[[], object]) -> object:
            ran.append(label)
            return original(first, second)

        return count

    with setting(coding, "side_by_side", counted(coding, "residuals" if compression == "auto" else "two ways")), setting(codec, "side_by_side", counted(codec, "near")):
        saved = saved_kmq(image, k, compression)
    if "near" in ran:
        kept = bool({StripMethod.NEAR_FLAT, StripMethod.NEAR_RANS} & set(strip_methods(saved)))
        ran[ran.index("near")] = "near, kept" if kept else "near, not kept"
    return saved, " + ".join(sorted(set(ran)))


def rows(images: dict[str, Image.Image], ks: Callable[[Image.Image], list[int]], repeat: int, compression: str = "auto") -> list[Row]:
    found = []
    for name, image in images.items():
        for k in ks(image):
            saved, ran = _what_ran(image, k, compression)
            with _without():
                same = saved_kmq(image, k, compression) == saved

            def without(image: Image.Image = image, k: int = k) -> None:
                with _without():
                    saved_kmq(image, k, compression)

            def median_cut(image: Image.Image = image, k: int = k) -> None:
                image.quantize(k, method=Image.Quantize.MEDIANCUT).save(io.BytesIO(), "PNG")

            functions = [lambda image=image, k=k: saved_kmq(image, k, compression), without]
            if k <= 256:
                functions.append(median_cut)
            times = best_times(functions, repeat)
            anchor = times[2] if k <= 256 else float("nan")
            found.append((name, k, same, ran, times[0] / times[1], times[0] / anchor, times[1] / anchor))
    return found


def print_rows(title: str, found: list[Row]) -> None:
    print(f"\n#### {title}\n")
    print("| image | K | same file | side by side | save ÷ without | save ÷ median cut + PNG | without ÷ median cut + PNG |")
    print("|---|---|---|---|---|---|---|")
    for name, k, same, ran, ratio, with_anchor, without_anchor in found:
        print(f"| {name} | {k} | {'yes' if same else '**no**'} | {ran} | {ratio:.3f} | {ratio_text(with_anchor)} | {ratio_text(without_anchor)} |")
    anchored = [row for row in found if row[1] <= 256]
    slow_with = sum(row[5] > SLOW for row in anchored)
    slow_without = sum(row[6] > SLOW for row in anchored)
    print(f"| **all** ({len(found)}) | | {sum(row[2] for row in found)} of {len(found)} | | {spread_text(row[4] for row in found)} | "
          f"{spread_text(row[5] for row in anchored)}, {slow_with} above {SLOW} | {spread_text(row[6] for row in anchored)}, {slow_without} above {SLOW} |")
    for label in ("residuals", "two ways", "near, kept", "near, not kept", ""):
        chosen = [row[4] for row in found if (label in row[3] if label else not row[3])]
        if chosen:
            print(f"| {label or 'nothing side by side'} ({len(chosen)}) | | | | {spread_text(chosen)} | | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(f"pil_kmq {pil_kmq.__version__}; MED_DRAWN {coding.MED_DRAWN}, AUTO_NEAR_MARGIN {codec.AUTO_NEAR_MARGIN}")
    tuning, held_out = {**rows_level.drawings(), **many_colours.graphics()}, heldout.graphics()
    sets = {"Drawings made for tuning": tuning,
            "Drawings made for tuning, as grey": zstd_floor._grey(tuning),
            "Held-out graphics": held_out,
            "Held-out graphics, as grey": zstd_floor._grey(held_out),
            "Label maps generated by zstd_floor.py": zstd_floor.label_maps()}
    for title, images in sets.items():
        print_rows(title, rows(images, zstd_floor._ks, args.repeat))
    photos = dict(kodak_images()[::3])
    for title, images in {"Kodak photos, every third": photos, "Kodak photos, every third, as grey": zstd_floor._grey(photos)}.items():
        print_rows(title, rows(images, lambda image: [16, 256], args.repeat))
    for title, images in {"Drawings made for tuning, compression=\"near\"": tuning, "Held-out graphics, compression=\"near\"": held_out}.items():
        print_rows(title, rows(images, lambda image: [2, 4, 8, 16], args.repeat, "near"))
    print("done")


if __name__ == "__main__":
    main()
