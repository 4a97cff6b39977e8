"""A fuzzing campaign over every read entry point, with memory capped and time measured.

Files are made by the field-aware mutator (mutate.py) from the seed corpus, every checksum
re-computed, and each is read every way a client reads one: Image.open + load, verify,
ImageFile.Parser, decode_kmq, stream.open_kmq with a row range and iter_rows, and the CLI's
`kmq info` and `kmq decode`. A worker process does the reading under an address-space cap
(RLIMIT_AS); a failure is an exception other than Pillow's conventional ones, a CLI error
that is not one line, a file slower than --max-seconds, or the worker running out of its
cap or dying.

    python fuzz/campaign.py --files 20000 --seed 1          # prints the figures as JSON
    python fuzz/campaign.py --files 6000 --seed 31 --only flat   # a new path's seeds alone
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from hostile import _status

MAX_PIXELS = 1 << 24  # the limit the readers are given: 16 megapixels (64 MB as RGBA)


def read_every_way(path: Path, scratch: Path) -> list[str]:
    """Read the file every way; the problems found (empty: none)."""
    from PIL import Image, ImageFile
    from targets import ALLOWED

    import pil_kmq
    from pil_kmq import cli, stream

    data = path.read_bytes()
    problems = []

    def attempt(name: str, action: object) -> None:
        try:
            action()  # type: ignore[operator]
        except ALLOWED:
            pass
        except Exception as error:  # noqa: BLE001 - what we are looking for
            problems.append(f"{name}: {type(error).__name__}: {error}"[:300])

    def load() -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.load()

    def verify() -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()

    def parser() -> None:
        feeder = ImageFile.Parser()
        for start in range(0, len(data), 1000):
            feeder.feed(data[start : start + 1000])
        feeder.close().close()

    def rows() -> None:
        with stream.open_kmq(path, max_pixels=MAX_PIXELS) as reader:
            height = reader.shape[0]
            reader.read_rows(height // 2, height)
            for _ in reader.iter_rows():
                pass

    attempt("load", load)
    attempt("verify", verify)
    attempt("parser", parser)
    attempt("decode_kmq", lambda: pil_kmq.decode_kmq(data, max_pixels=MAX_PIXELS))
    attempt("stream", rows)
    for arguments in (["info", str(path)], ["decode", str(path), str(scratch / "out.png")]):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            status = cli.main(arguments)
        text = stderr.getvalue()
        if status not in (0, 1) or "Traceback" in text or "KMQ_DEBUG" in text or text.count("\n") > 3:
            problems.append(f"kmq {arguments[0]}: exit {status}: {text.strip()[:300]}")
    return problems


def worker(cap: int) -> None:
    """Read file paths from stdin; print one JSON line per file."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS // 2  # Pillow errors at twice its limit
    warnings.simplefilter("ignore")
    limit = _status("VmSize") + cap
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    scratch = Path(tempfile.mkdtemp(prefix="kmq-campaign-"))
    for line in sys.stdin:
        path = Path(line.strip())
        start = time.perf_counter()
        try:
            problems = read_every_way(path, scratch)
        except MemoryError:
            problems = ["MemoryError: over the address-space cap"]
        seconds = time.perf_counter() - start
        print(json.dumps({"file": str(path), "seconds": seconds, "problems": problems, "peak": _status("VmHWM")}), flush=True)


def campaign(files: int, seed: int, cap: int, max_seconds: float, keep: Path | None, only: str = "") -> dict[str, object]:
    from make_corpus import seeds
    from mutate import mutate

    rng = random.Random(seed)
    corpus = [data for name, data in seeds().items() if only in name]  # `only`: a new path's seeds
    if not corpus:
        raise SystemExit(f"no seed file's name holds {only!r}")
    failures: list[dict[str, object]] = []
    slowest = (0.0, "")
    peak = 0
    with tempfile.TemporaryDirectory(prefix="kmq-fuzz-") as folder:
        process = _start_worker(cap)
        for number in range(files):
            data = mutate(rng.choice(corpus), rng)
            path = Path(folder) / f"{number:06d}.kmq"
            path.write_bytes(data)
            assert process.stdin is not None and process.stdout is not None
            try:
                process.stdin.write(f"{path}\n")
                process.stdin.flush()
                answer = process.stdout.readline()
            except BrokenPipeError:
                answer = ""
            if not answer:  # the worker died on this file
                failures.append({"file": number, "problems": [f"worker died (exit {process.wait()})"]})
                _keep(keep, number, data)
                process = _start_worker(cap)
                continue
            result = json.loads(answer)
            peak = max(peak, result["peak"])
            if result["seconds"] > slowest[0]:
                slowest = (result["seconds"], str(number))
            if result["seconds"] > max_seconds:
                result["problems"].append(f"took {result['seconds']:.2f} s")
            if result["problems"]:
                failures.append({"file": number, "problems": result["problems"]})
                _keep(keep, number, data)
            path.unlink()
        assert process.stdin is not None
        process.stdin.close()
        process.wait()
    return {
        "files": files,
        "seed": seed,
        "failures": len(failures),
        "failed": failures[:20],
        "slowest_seconds": round(slowest[0], 3),
        "slowest_file": slowest[1],
        "peak_rss_mb": round(peak / 2**20, 1),
        "cap_mb": cap // 2**20,
    }


def _start_worker(cap: int) -> subprocess.Popen[str]:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--cap-mb", str(cap // 2**20)]
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment)


def _keep(folder: Path | None, number: int, data: bytes) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"failure-{number:06d}.kmq").write_bytes(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cap-mb", type=int, default=1024, help="address space a worker may add (default 1024)")
    parser.add_argument("--max-seconds", type=float, default=5.0, help="slower files fail (default 5)")
    parser.add_argument("--keep", type=Path, help="folder for the files that failed")
    parser.add_argument("--only", default="", help="mutate only the seeds whose name holds this (e.g. flat)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.cap_mb * 2**20)
        return
    start = time.perf_counter()
    report = campaign(args.files, args.seed, args.cap_mb * 2**20, args.max_seconds, args.keep, args.only)
    report["wall_seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
