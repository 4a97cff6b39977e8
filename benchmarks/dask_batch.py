"""Batch conversion on Dask: the 24 Kodak images converted by a LocalCluster of 1 then 2
worker processes (one thread each), beside the local process pool with -j 1 and -j 2, all in
the same run, alternated, best of --repeat runs each. Every run writes fresh outputs.

For the cluster, "convert" is the batch alone (run_on_dask, the cluster up, its workers
fresh: they import pil_kmq on their first file as the pool's processes do) and "total" adds
starting and closing the cluster, which is what `kmq convert --dask local` costs. For the
pool both are run_jobs(jobs, workers=N), which starts and stops its processes.

    python benchmarks/dask_batch.py              # k=256 and psnr=35, best of 3
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import KODAK

from pil_kmq import batch

WORKERS = (1, 2)
OPTIONS = {"k=256": batch.save_options(k=256), "psnr=35": batch.save_options(psnr=35)}


def timed_pool(jobs: list[batch.Job], workers: int) -> tuple[float, float]:
    start = time.perf_counter()
    results = batch.run_jobs(jobs, workers=workers)
    seconds = time.perf_counter() - start
    check(results)
    return seconds, seconds


def timed_dask(jobs: list[batch.Job], workers: int) -> tuple[float, float]:
    start = time.perf_counter()
    with batch.dask_client("local", workers=workers, quiet=True) as client:
        client.wait_for_workers(workers)
        begun = time.perf_counter()
        results = batch.run_on_dask(jobs, client)
        converted = time.perf_counter() - begun
    total = time.perf_counter() - start
    check(results)
    return converted, total


def timed_dask_trimming(jobs: list[batch.Job], workers: int) -> tuple[float, float]:
    """As timed_dask, the workers given Dask's default MALLOC_TRIM_THRESHOLD_ (65536), which
    dask_client("local") leaves out: what `dask worker` gives a real cluster's workers."""
    os.environ["MALLOC_TRIM_THRESHOLD_"] = "65536"  # inherited by the spawned workers
    try:
        return timed_dask(jobs, workers)
    finally:
        del os.environ["MALLOC_TRIM_THRESHOLD_"]


def check(results: list[batch.Result]) -> None:
    failed = [r for r in results if r.status != batch.Status.CONVERTED]
    if failed:
        raise SystemExit(f"not converted: {failed[0]}")


RUNNERS: dict[str, Callable[[list[batch.Job], int], tuple[float, float]]] = {
    "local, -j N (-j 1: in process)": timed_pool,
    "Dask LocalCluster, N workers": timed_dask,
    "the same, MALLOC_TRIM_THRESHOLD_=65536": timed_dask_trimming,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--options", nargs="+", choices=list(OPTIONS), default=list(OPTIONS)
    )
    parser.add_argument(
        "--no-trim",
        action="store_true",
        help="leave out the rows of workers given MALLOC_TRIM_THRESHOLD_",
    )
    args = parser.parse_args()
    if len(KODAK) != 24:
        raise SystemExit(f"expected the 24 Kodak images, found {len(KODAK)}")
    scratch = Path(tempfile.mkdtemp(prefix="kmq-dask-bench-"))
    runs = itertools.count()
    runners = {
        name: runner
        for name, runner in RUNNERS.items()
        if not (args.no_trim and runner is timed_dask_trimming)
    }
    try:
        print(
            "| options | path | N | convert s | total s | speed-up, N = 1 ÷ N = 2 (convert, total) |"
        )
        print("|---|---|---|---|---|---|")
        for label in args.options:
            best: dict[tuple[str, int], tuple[float, float]] = {}
            for _ in range(args.repeat):
                for name, runner in runners.items():
                    for workers in WORKERS:
                        out = scratch / str(next(runs))
                        jobs = batch.plan_jobs(KODAK, out, OPTIONS[label])
                        times = runner(jobs, workers)
                        shutil.rmtree(out)
                        old = best.get((name, workers), (float("inf"), float("inf")))
                        best[(name, workers)] = (
                            min(old[0], times[0]),
                            min(old[1], times[1]),
                        )
            for name in runners:
                one, two = best[(name, 1)], best[(name, 2)]
                for workers in WORKERS:
                    convert, total = best[(name, workers)]
                    speed_up = (
                        f"{one[0] / two[0]:.2f}×, {one[1] / two[1]:.2f}×"
                        if workers == 2
                        else ""
                    )
                    print(
                        f"| {label} | {name} | {workers} | {convert:.2f} | {total:.2f} | {speed_up} |",
                        flush=True,
                    )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
