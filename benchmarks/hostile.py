"""Memory and CPU time of every read path on files built to cost a careless decoder gigabytes
or minutes (fuzz/hostile.py), each read in a fresh process: peak resident memory above the
interpreter's baseline (VmHWM), CPU seconds, and what the read raised.

    python benchmarks/hostile.py                  # the table, for this checkout
    PYTHONPATH=/other/checkout python benchmarks/hostile.py --label other
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    # name: (maker, arguments, (width, height, channels, k))
    "one strip": ("one_strip_image", [9459, 9459, 4, 257], (9459, 9459, 4, 257)),
    "wide row": ("one_wide_row", [150_000_000], (150_000_000, 1, 3, 1)),
    "tiny strips": ("many_tiny_strips", [70_000], (8, 70_000, 3, 256)),
    "one rows strip": ("one_rows_strip_image", [9459, 9459, 4, 257], (9459, 9459, 4, 257)),
    "tall rows": ("tall_rows_strip", [40_000_000, 2], (1, 40_000_000, 3, 2)),
}
ENTRIES = ("verify", "load", "parser", "decode_kmq", "read_rows(0, 1)", "iter_rows", "kmq info")

def measure(maker: str, arguments: list[int], entry: str, scratch: Path) -> dict[str, object]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "fuzz" / "hostile.py"), maker, json.dumps(arguments), entry, str(scratch / "f.kmq")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800, env=environment, check=False, cwd=scratch)
    lines = result.stdout.strip().splitlines()
    if result.returncode or not lines:
        return {"peak": 0, "cpu": 0.0, "outcome": f"exit {result.returncode}", "size": 0}
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="this checkout")
    args = parser.parse_args()
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"kmq-hostile-{os.getpid()}"
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"Hostile files, {args.label}: peak RSS above the interpreter's baseline (MB), CPU seconds\n")
    print("| file | bytes | read | peak MB | bound MB | CPU s | outcome |")
    print("|---|---|---|---|---|---|---|")
    for maker, arguments, (width, height, channels, k) in CASES.values():
        what = f"{width:,} x {height:,}, {channels} channels, k = {k}"
        # Pillow keeps RGB as 4 bytes a pixel, and a pointer (8 bytes) to every row: a
        # 1 x 40,000,000 image.new takes 458 MB, most of it the row pointers.
        pillow_bytes = width * height * (1 if channels == 1 else 4) + 8 * height
        index_bytes = width * height * (1 if k <= 256 else 2)
        row_bytes = width * channels
        piece = 1 << 20  # pixels decoded at a time
        bounds = {  # MB: what the caller asked for, plus 64 MB
            "verify": 0, "kmq info": 0, "load": 1.25 * pillow_bytes, "parser": 1.25 * pillow_bytes, "decode_kmq": 1.25 * index_bytes,
            "read_rows(0, 1)": 1.25 * row_bytes, "iter_rows": 1.25 * row_bytes if width > piece else 0,
        }
        for entry in ENTRIES:
            found = measure(maker, arguments, entry, scratch)
            bound = bounds[entry] / 2**20 + 64
            print(
                f"| {what} | {found['size']:,} | {entry} | {found['peak'] / 2**20:,.0f} | {bound:,.0f} | "
                f"{found['cpu']:.2f} | {found['outcome']} |"
            )

if __name__ == "__main__":
    main()
