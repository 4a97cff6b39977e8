"""Seed corpus for fuzz_decode.py: the small golden files and spec vectors, once in each
harness mode (raw, checksums mended, strips recoded), so the fuzzer starts from valid files
of every layout."""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BLOCK = re.compile(r"^```kmq-(?:vector|invalid) (\S+).*?\n(.*?)^```", re.MULTILINE | re.DOTALL)
MAX_SEED_BYTES = 20_000


def seeds() -> dict[str, bytes]:
    found = {}
    for path in sorted((ROOT / "samples").glob("*.kmq")):
        if path.stat().st_size <= MAX_SEED_BYTES:
            found[path.stem] = path.read_bytes()
    for match in BLOCK.finditer((ROOT / "spec" / "kmq.md").read_text(encoding="utf-8")):
        text = " ".join(line.split("#")[0] for line in match.group(2).splitlines())
        found[f"vector-{match.group(1)}"] = bytes.fromhex(text)
    return found


def main(target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        (target / f"{name}-raw").write_bytes(b"\x00" + data)
        (target / f"{name}-fixcrc").write_bytes(b"\x01" + data)
        (target / f"{name}-recode").write_bytes(b"\x02" + b"\x00" * 8 + data)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "corpus")
