"""A worker process for a benchmark: started on a private stack, ready once it has partitions."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from core.settings import Settings
from irtmon.stack.private import free_port, settings_env

REPO = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running_worker(
    settings: Settings, group: str, timeout: float = 120, *, warm: bool = False
) -> Iterator[None]:
    """`irtmon worker` in consumer group ``group``, stopped (SIGTERM) on exit.

    ``warm``: start its CPU processes and their imports at once (IRTMON_WORKER_WARM_START) and
    wait until they are up, so that the first event is timed as every later one.
    """
    port = free_port()
    path = settings.state_dir / f"{group}.log"
    log = open(path, "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "irtmon", "worker"],
        cwd=REPO,
        env=settings_env(
            settings, worker_web_port=port, consumer_group=group, worker_warm_start=warm
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if json.loads(r.read())["assigned"] and (
                        not warm or b"CPU processes started" in path.read_bytes()
                    ):
                        break
            except OSError:
                pass
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start; see {log.name}")
            time.sleep(0.5)
        yield
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        log.close()
