"""One thread pool for the process: strips decoded or coded side by side, and the clustering
kernels run on parts of their points (numpy, zlib, zstd and the compiled kernels release the GIL)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import TypeVar

WORKERS = min(2, os.cpu_count() or 1)

_pool: ThreadPoolExecutor | None = None
_kept = threading.local()
T = TypeVar("T")
_POOL_PREFIX = "kmq-pool"
_pool_lock = threading.Lock()


def _shared_pool() -> ThreadPoolExecutor:
    """One pool for the process, made once: a file of many strips must not pay for a pool
    per strip."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix=_POOL_PREFIX)
        return _pool


def _forget_pool() -> None:
    global _pool
    _pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)  # a forked child has no pool threads


def in_pool() -> bool:
    """True on one of the pool's own threads, which must never wait on the pool: it could wait
    for itself."""
    return threading.current_thread().name.startswith(_POOL_PREFIX)


def run_jobs(function: Callable[..., object], jobs: Sequence[tuple[object, ...]]) -> list:
    """function(*job) for each job, in order, on the shared pool when there is more than one.
    Called from one of the pool's own threads (a job that decodes a KMQ file), the jobs run
    in that thread: waiting on the pool from inside it could wait forever."""
    if len(jobs) < 2 or WORKERS < 2 or in_pool():
        return [function(*job) for job in jobs]
    # The caller runs the first job itself while the pool runs the rest: one hand-off fewer,
    # which is most of a small image's decoding time.
    futures = [_shared_pool().submit(function, *job) for job in jobs[1:]]
    try:
        first = function(*jobs[0])
    finally:
        wait(futures)
    return [first, *(future.result() for future in futures)]


def kept_by_thread(key: Hashable, make: Callable[[], T]) -> T:
    """The calling thread's object for `key`, made by make() on its first use there: for
    objects costly to make and unsafe to share between threads (zstd contexts)."""
    objects = _kept.__dict__.setdefault("objects", {})
    if key not in objects:
        objects[key] = make()
    return objects[key]
