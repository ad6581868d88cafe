"""Background stream workers for the local demo: started detached, stopped by `stack down`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from core.settings import Settings
from irtmon.stack.process import (
    StackError,
    pid_alive,
    read_pid,
    spawn_detached,
    tail,
    terminate,
)

MARK = "irtmon worker"


def _dir(settings: Settings) -> Path:
    return settings.state_dir.resolve() / "workers"


def running(settings: Settings) -> dict[int, int]:
    """Web port -> pid of the local workers that run."""
    found = {}
    folder = _dir(settings)
    for pid_file in folder.glob("worker-*.pid") if folder.exists() else []:
        pid = read_pid(pid_file)
        if pid is not None and pid_alive(pid, "irtmon"):
            found[int(pid_file.stem.split("-")[1])] = pid
        else:
            pid_file.unlink(missing_ok=True)
    return found


def start(
    settings: Settings,
    count: int = 1,
    timeout: float = 120.0,
    *,
    environment: dict[str, str] | None = None,
) -> dict[int, int]:
    """Make sure ``count`` workers run (ports from IRTMON_WORKER_WEB_PORT up); wait until each
    has its partitions. Workers started now get ``environment`` (IRTMON_* settings) on top of
    this process's; those already running are left as they are."""
    folder = _dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    current = running(settings)
    spawned: dict[int, subprocess.Popen] = {}
    for i in range(count):
        port = settings.worker_web_port + i
        if port in current:
            continue
        env = {**os.environ, **(environment or {}), "IRTMON_WORKER_WEB_PORT": str(port)}
        proc = spawn_detached(
            [sys.executable, "-m", "irtmon", "worker"], folder / f"worker-{port}.log", env=env
        )
        (folder / f"worker-{port}.pid").write_text(f"{proc.pid}\n")
        current[port] = proc.pid
        spawned[port] = proc
    deadline = time.monotonic() + timeout
    for port, pid in current.items():
        while not _assigned(port):
            # a process just started may show an empty command line for a moment: ask the
            # child we spawned whether it exited, and check the command line of the others
            proc = spawned.get(port)
            if (proc.poll() is not None) if proc is not None else not pid_alive(pid, "irtmon"):
                raise StackError(
                    f"worker on port {port} exited:\n" + tail(folder / f"worker-{port}.log")
                )
            if time.monotonic() > deadline:
                raise StackError(f"worker on port {port} got no partitions in {timeout:.0f}s")
            time.sleep(0.5)
    return current


def _assigned(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return bool(json.loads(response.read())["assigned"])
    except (OSError, ValueError, KeyError):
        return False


def stop(settings: Settings) -> int:
    """Stop the local workers (SIGTERM, then SIGKILL); return how many were stopped."""
    current = running(settings)
    for port, pid in current.items():
        terminate(pid, "irtmon", timeout=30)
        (_dir(settings) / f"worker-{port}.pid").unlink(missing_ok=True)
    return len(current)
