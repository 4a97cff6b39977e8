"""The shared pool: two ways of coding one strip side by side, only where the pool is idle."""

from __future__ import annotations

import threading

import pytest

from pil_kmq import jobs

pytestmark = pytest.mark.skipif(jobs.WORKERS < 2, reason="one worker: everything runs on the calling thread")


def _thread() -> str:
    return threading.current_thread().name


def test_side_by_side_runs_the_second_on_an_idle_worker_and_returns_both_in_order() -> None:
    first, second = jobs.side_by_side(lambda: ("first", _thread()), lambda: ("second", _thread()))
    assert first == ("first", threading.current_thread().name)
    assert second[0] == "second" and second[1].startswith("kmq-pool")


def test_side_by_side_on_a_pool_thread_runs_both_there() -> None:
    """A strip coded on a worker (one of many strips) must not wait on the pool it is part of."""
    names = jobs.run_jobs(lambda _: jobs.side_by_side(_thread, _thread), [(0,), (1,)])
    for first, second in names:
        assert first == second


def test_side_by_side_runs_both_here_where_the_pool_is_not_idle() -> None:
    """Another strip is being coded: a third busy thread on two cores would hold it back."""
    release = threading.Event()
    pool = jobs._shared_pool()
    held = pool.submit(release.wait, 10)
    try:
        assert not pool.idle()
        first, second = jobs.side_by_side(_thread, _thread)
        assert first == second == threading.current_thread().name
    finally:
        release.set()
        held.result(timeout=10)


def test_the_pool_counts_its_jobs_out_before_their_callers_hear_of_them_failed_or_not() -> None:
    """A caller that has its results may at once ask whether the pool is idle."""

    def fail() -> None:
        raise ValueError("a job's own error")

    pool = jobs._shared_pool()
    for _ in range(50):
        with pytest.raises(ValueError, match="a job's own error"):
            jobs.side_by_side(lambda: None, fail)
        assert pool.idle()
        pool.submit(lambda: None).result(timeout=10)
        assert pool.idle()
