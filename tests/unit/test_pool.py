"""The worker's CPU pool survives a scoring process that dies (segfault, OOM kill)."""

from __future__ import annotations

import asyncio
import os
import sys
import types

import pytest

from streams.pool import CpuPool, ScoringCrashedError


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
