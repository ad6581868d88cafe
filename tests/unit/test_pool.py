"""The worker's CPU pool survives a scoring process that dies (segfault, OOM kill) and stops
one that runs past its time limit."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import types

import pytest

from streams.pool import CpuPool, ScoringCrashedError, ScoringTimeLimitError


def score(arg: str) -> str:
    if arg == "crash":
        os._exit(139)  # what a native decoder's segfault looks like to the pool
    return arg.upper()


def test_a_crashing_event_is_refused_and_the_next_one_scored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Streamlit's AppTest (earlier in a full session) leaves a page script as __main__, which
    # spawned children would run again; a worker's __main__ is irtmon's, which they skip
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    pool = CpuPool(1)

    async def scenario() -> tuple[str, str]:
        before = await pool.run(score, "good")
        with pytest.raises(ScoringCrashedError, match="died on this event 2 times"):
            await pool.run(score, "crash")
        after = await pool.run(score, "next")
        return before, after

    try:
        assert asyncio.run(scenario()) == ("GOOD", "NEXT")
        assert pool.replaced == 2
    finally:
        pool.shutdown()


def pid(_: object) -> int:
    return os.getpid()


def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_a_task_past_the_time_limit_is_killed_and_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from models.exceptions import LimitExceededError
    from streams.failures import is_transient

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    pool = CpuPool(1, time_limit_s=5.0)

    async def scenario() -> tuple[int, int, float, BaseException]:
        before = await pool.run(pid, None)  # the process is up before the clock starts
        started = time.monotonic()
        with pytest.raises(ScoringTimeLimitError) as info:
            await pool.run(sleep_for, 120.0)
        elapsed = time.monotonic() - started
        after = await pool.run(pid, None)
        return before, after, elapsed, info.value

    try:
        before, after, elapsed, err = asyncio.run(scenario())
    finally:
        pool.shutdown()
    assert 5.0 <= elapsed < 20.0
    assert "time limit task_time_limit_s of 5 s" in str(err)
    assert before != after  # the stuck process was killed and replaced
    assert (pool.replaced, pool.timed_out) == (1, 1)
    # a dead letter, never a retry: not a TimeoutError, a project error naming the limit
    assert isinstance(err, LimitExceededError) and not isinstance(err, TimeoutError)
    assert not is_transient(err)


def test_a_fast_task_is_not_limited_and_a_bad_limit_refused() -> None:
    assert CpuPool(1).time_limit_s == 600.0
    assert CpuPool(1, time_limit_s=None).time_limit_s is None
    with pytest.raises(ValueError, match="time_limit_s must be positive"):
        CpuPool(1, time_limit_s=0)


def own_pid() -> int:
    return os.getpid()


def test_warm_starts_every_process_before_the_first_event(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import multiprocessing

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    before = {p.pid for p in multiprocessing.active_children()}
    pool = CpuPool(2)
    try:
        pids = asyncio.run(pool.warm(own_pid))
        started = {p.pid for p in multiprocessing.active_children()} - before
        assert len(pids) == 2 and set(pids) <= started and os.getpid() not in pids
        assert len(started) == 2  # both processes run now, ahead of any event
        assert asyncio.run(pool.run(pid, None)) in started  # and score in the warm processes
        assert pool.replaced == 0
    finally:
        pool.shutdown()


def test_kill_ends_every_process_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before a worker leaves by ``os._exit`` (an outage past the retry window) it kills its
    scoring processes, which would otherwise outlive it, orphaned."""
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    pool = CpuPool(2)
    pids = asyncio.run(pool.warm(own_pid))
    assert len(set(pids)) == 2
    pool.kill()
    deadline = time.monotonic() + 10
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        for p in list(alive):
            try:
                os.kill(p, 0)
            except ProcessLookupError:
                alive.discard(p)
        time.sleep(0.1)
    assert not alive
    pool.shutdown()  # nothing left to shut down: no error
