"""One thread pool for the process: strips decoded or coded side by side, and the clustering
kernels run on parts of their points (numpy, zlib, zstd and the compiled kernels release the GIL)."""

from __future__ import annotations

import functools
import os
import queue
import threading
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, wait
from typing import ParamSpec, TypeVar

WORKERS = min(2, os.cpu_count() or 1)

T = TypeVar("T")
U = TypeVar("U")
P = ParamSpec("P")
_POOL_PREFIX = "kmq-pool"
_kept = threading.local()


class _Pool:
    """WORKERS daemon threads taking jobs from one queue. Not concurrent.futures' pool, whose
    threads the interpreter joins at exit: a Ctrl-C that lands in numba's compiler or cache
    loader can leave one of its locks held, a pool job then waits for it for good, and so did
    the process at exit (a second Ctrl-C did not help). Daemon threads let it exit."""

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future, Callable[..., object], tuple[object, ...], dict[str, object]]] = queue.SimpleQueue()
        self._pending, self._lock = 0, threading.Lock()
        for number in range(workers):
            threading.Thread(target=self._work, name=f"{_POOL_PREFIX}_{number}", daemon=True).start()

    def submit(self, function: Callable[..., T], *args: object, **kwargs: object) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            self._pending += 1
        self._jobs.put((future, function, args, kwargs))
        return future

    def idle(self) -> bool:
        """Whether no job is queued or running (a hint: others may submit meanwhile)."""
        return self._pending == 0

    def _work(self) -> None:
        while True:
            future, function, args, kwargs = self._jobs.get()
            self._run(future, function, args, kwargs)
            del future, function, args, kwargs  # hold nothing of a finished job while waiting for the next

    def _run(self, future: Future, function: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        if future.set_running_or_notify_cancel():
            _settle(future, function, args, kwargs, self._finished)
        else:
            self._finished()

    def _finished(self) -> None:
        with self._lock:
            self._pending -= 1


def _settle(future: Future, function: Callable[..., object], args: tuple[object, ...], kwargs: dict[str, object], counted_out: Callable[[], None]) -> None:
    """function's result or error handed to `future`, the job counted out first: a caller that
    has its result may at once ask spare_worker()."""
    try:
        result = function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - handed to the caller, as concurrent.futures does
        counted_out()
        future.set_exception(error)
    else:
        counted_out()
        future.set_result(result)


_pool: _Pool | None = None
_pool_lock = threading.Lock()
_own_threads = 0  # on_own_thread's jobs running: each keeps a core busy
_own_lock = threading.Lock()


def _shared_pool() -> _Pool:
    """One pool for the process, made once: a file of many strips must not pay for a pool
    per strip."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _Pool(WORKERS)
        return _pool


def _forget_threads() -> None:
    """In a forked child, which has none of the parent's other threads: no pool, no own threads
    busy, and a new lock for their count (the parent's may have been held as it forked)."""
    global _pool, _own_threads, _own_lock
    _pool, _own_threads, _own_lock = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)


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
        wait(futures)  # every job ends before any error (the caller's or a pool job's) is seen
    except Exception:
        wait(futures)
        raise
    except BaseException:  # Ctrl-C, in the caller's job or while it waits for the pool's
        abandon(futures)
        raise
    return [first, *(future.result() for future in futures)]


def spare_worker() -> bool:
    """Whether a second way of coding a strip may run on the pool beside this thread: two
    workers, this not one of the pool's threads, and nothing else busy (no job queued or
    running on the pool, no thread of on_own_thread's, such as a psnr= search beside this one):
    a third busy thread on two cores held a grey photo's second strip back, 1.24 x its save."""
    return WORKERS > 1 and not in_pool() and _own_threads == 0 and _shared_pool().idle()


def side_by_side(first: Callable[[], T], second: Callable[[], U]) -> tuple[T, U]:
    """first() on this thread while the pool runs second(), where a worker is spare
    (spare_worker); else both here, in turn."""
    if not spare_worker():
        return first(), second()
    one, other = run_jobs(_called, [(first,), (second,)])
    return one, other


def _called(function: Callable[[], object]) -> object:
    return function()


# How long an interrupted caller waits for the jobs it leaves running: enough for any job to
# end (a strip, a part of a clustering), so that none is still running as the interpreter
# shuts down (a thread in numba's code then crashed the process), not forever.
INTERRUPTED_WAIT_SECONDS = 5.0


def abandon(futures: Sequence[Future]) -> None:
    """After a Ctrl-C: jobs not started are dropped, running ones waited for a few seconds at
    most (one may wait for good on a lock the interrupt left held). They write only into
    arrays of the call being abandoned."""
    for future in futures:
        future.cancel()
    wait(futures, timeout=INTERRUPTED_WAIT_SECONDS)


def caused_by_interrupt(error: BaseException) -> bool:
    """Whether a Ctrl-C caused this error: numba's dispatcher, interrupted, can raise a
    SystemError ("returned a result with an exception set") whose cause is the KeyboardInterrupt."""
    seen: BaseException | None = error
    for _ in range(16):  # a chain, not a cycle
        if seen is None:
            return False
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def interrupts_kept(function: Callable[P, T]) -> Callable[P, T]:
    """function, raising a Ctrl-C that numba's dispatcher turned into a SystemError as the
    KeyboardInterrupt it was (a notebook showed 'SystemError: CPUDispatcher(...) returned a
    result with an exception set' for an interrupted save)."""

    @functools.wraps(function)
    def kept(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return function(*args, **kwargs)
        except SystemError as error:
            if caused_by_interrupt(error):
                raise KeyboardInterrupt from error
            raise

    return kept


def on_own_thread(name: str, function: Callable[..., T], *args: object) -> Future[T]:
    """function(*args) on a daemon thread of its own (see _Pool for why daemon)."""
    global _own_threads
    future: Future[T] = Future()
    with _own_lock:
        _own_threads += 1

    def counted_out() -> None:
        global _own_threads
        with _own_lock:
            _own_threads -= 1

    def run() -> None:
        future.set_running_or_notify_cancel()
        _settle(future, function, args, {}, counted_out)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def kept_by_thread(key: Hashable, make: Callable[[], T]) -> T:
    """The calling thread's object for `key`, made by make() on its first use there: for
    objects costly to make and unsafe to share between threads (zstd contexts)."""
    objects = _kept.__dict__.setdefault("objects", {})
    if key not in objects:
        objects[key] = make()
    return objects[key]
