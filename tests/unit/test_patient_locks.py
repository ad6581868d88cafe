"""Concurrent scoring keeps one patient's events in order: the per-patient locks."""

from __future__ import annotations

import asyncio
import random

from streams.agents._loop import PatientLocks


def test_one_patient_in_order_patients_overlap() -> None:
    locks = PatientLocks()
    done: list[tuple[bytes, int]] = []
    running: set[bytes] = set()
    overlap = []

    async def handle(key: bytes, n: int) -> None:
        async with locks.hold(key):
            assert key not in running  # never two events of one patient at once
            running.add(key)
            overlap.append(len(running))
            await asyncio.sleep(random.uniform(0, 0.01))
            running.discard(key)
            done.append((key, n))

    async def main() -> None:
        random.seed(3)
        messages = [(b"psn-a" if i % 3 else b"psn-b", i) for i in range(30)]
        # handed out in offset order to concurrent actors, as faust does
        await asyncio.gather(*(handle(k, n) for k, n in messages))

    asyncio.run(main())
    for key in (b"psn-a", b"psn-b"):
        order = [n for k, n in done if k == key]
        assert order == sorted(order)
    assert max(overlap) == 2  # the two patients did overlap
    assert len(locks) == 0  # nothing left behind


def test_the_setting_and_the_cli_option() -> None:
    from typer.testing import CliRunner

    from core.settings import Settings
    from irtmon.cli import app

    assert Settings().worker_concurrency == 1
    assert Settings(worker_concurrency=4).worker_concurrency == 4
    result = CliRunner().invoke(app, ["worker", "--concurrency", "0"])
    assert result.exit_code != 0
