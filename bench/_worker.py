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
def running_worker(settings: Settings, group: str, timeout: float = 120) -> Iterator[None]:
    """`irtmon worker` in consumer group ``group``, stopped (SIGTERM) on exit."""
    port = free_port()
    log = open(settings.state_dir / f"{group}.log", "wb")  # noqa: SIM115
    worker = subprocess.Popen(
        [sys.executable, "-m", "irtmon", "worker"],
        cwd=REPO,
        env=settings_env(settings, worker_web_port=port, consumer_group=group),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if json.loads(r.read())["assigned"]:
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
