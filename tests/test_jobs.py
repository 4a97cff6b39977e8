"""The shared pool: two ways of coding one strip side by side, only where a worker is spare."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from pil_kmq import jobs

pytestmark = pytest.mark.skipif(jobs.WORKERS < 2, reason="one worker: everything runs on the calling thread")


def _thread() -> str:
    return threading.current_thread().name


def test_side_by_side_runs_the_second_on_a_spare_worker_and_returns_both_in_order() -> None:
    assert jobs.spare_worker()
    first, second = jobs.side_by_side(lambda: ("first", _thread()), lambda: ("second", _thread()))
    assert first == ("first", threading.current_thread().name)
    assert second[0] == "second" and second[1].startswith("kmq-pool")


def test_side_by_side_on_a_pool_thread_runs_both_there() -> None:
    """A strip coded on a worker must not wait on the pool it is part of."""
    first, second = jobs._shared_pool().submit(jobs.side_by_side, _thread, _thread).result(timeout=10)
    assert first == second and first.startswith("kmq-pool")


@pytest.mark.parametrize("busy", ["pool", "own thread"])
def test_side_by_side_runs_both_here_where_another_thread_is_busy(busy: str) -> None:
    """Another strip being coded, or a psnr= search on a thread of its own: a third busy
    thread on two cores would hold one of them back."""
    release = threading.Event()
    held = jobs._shared_pool().submit(release.wait, 10) if busy == "pool" else jobs.on_own_thread("kmq-test", release.wait, 10)
    try:
        assert not jobs.spare_worker()
        first, second = jobs.side_by_side(_thread, _thread)
        assert first == second == threading.current_thread().name
    finally:
        release.set()
        held.result(timeout=10)
    assert jobs.spare_worker()


@pytest.mark.parametrize("busy", ["pool", "own thread"])
@pytest.mark.parametrize("fails", [False, True])
def test_a_job_is_counted_out_before_its_caller_hears_of_it(busy: str, fails: bool) -> None:
    """A caller that has its result may at once ask whether a worker is spare: the counts are
    read in the future's callback, which runs as the result is handed over (on the job's
    thread, so not through spare_worker, which is False on a pool thread)."""
    release = threading.Event()

    def job() -> None:
        release.wait(10)
        if fails:
            raise ValueError("a job's own error")

    held = jobs._shared_pool().submit(job) if busy == "pool" else jobs.on_own_thread("kmq-test", job)
    seen: list[bool] = []
    held.add_done_callback(lambda _: seen.append(jobs._shared_pool().idle() and jobs._own_threads == 0))
    assert not jobs.spare_worker()
    release.set()
    if fails:
        with pytest.raises(ValueError, match="a job's own error"):
            held.result(timeout=10)
    else:
        held.result(timeout=10)
    assert seen == [True]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_has_a_spare_worker_whatever_ran_in_the_parent() -> None:
    """The child has none of the parent's other threads: an own thread busy as the parent
    forked (its count's lock perhaps held) must not keep the child's writer in turn for good."""
    release = threading.Event()
    held = jobs.on_own_thread("kmq-test", release.wait, 10)
    try:
        with jobs._own_lock:  # held as the parent forks
            child = os.fork()
            if child == 0:  # pragma: no cover - the child reports by its exit status
                signal.alarm(20)  # a lock left held would hang it: killed, it fails the test
                ok = jobs.spare_worker() and jobs.on_own_thread("kmq-child", lambda: 7).result(timeout=10) == 7
                os._exit(0 if ok else 1)
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        release.set()
        held.result(timeout=10)
