"""The monitoring app run in the background for the local demo; stopped by `stack down`."""

from __future__ import annotations

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
    port_open,
    read_pid,
    spawn_detached,
    tail,
    terminate,
)


def _pid_file(settings: Settings) -> Path:
    return settings.state_dir.resolve() / "app" / "app.pid"


def running(settings: Settings) -> int | None:
    pid = read_pid(_pid_file(settings))
    return pid if pid is not None and pid_alive(pid, "streamlit") else None


def start(settings: Settings, port: int = 8501, timeout: float = 90.0) -> int:
    """Start `irtmon app` on 127.0.0.1:``port`` unless it runs; wait for its health check."""
    launched = launch(settings, port)
    if isinstance(launched, int):
        return launched
    return wait_ready(settings, launched, port, timeout)


def launch(settings: Settings, port: int = 8501) -> int | subprocess.Popen:
    """Start `irtmon app` on 127.0.0.1:``port`` without waiting for it (see :func:`wait_ready`);
    returns the pid of the app that already runs, or the process just started."""
    pid = running(settings)
    if pid is not None:
        return pid
    if port_open("127.0.0.1", port):
        raise StackError(f"port {port} is already taken; pass another --app-port")
    folder = _pid_file(settings).parent
    folder.mkdir(parents=True, exist_ok=True)
    return spawn_detached(
        [sys.executable, "-m", "irtmon", "app", "--port", str(port)],
        folder / "app.log",
        env=dict(os.environ),
    )


def wait_ready(
    settings: Settings, proc: subprocess.Popen, port: int = 8501, timeout: float = 90.0
) -> int:
    """Wait until the app ``proc`` answers its health check on ``port``; returns its pid."""
    folder = _pid_file(settings).parent
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError("the app exited:\n" + tail(folder / "app.log"))
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2):
                break
        except OSError:
            time.sleep(0.5)
    else:
        raise StackError(f"the app did not answer on port {port} in {timeout:.0f}s")
    _pid_file(settings).write_text(f"{proc.pid}\n")  # `irtmon app` execs streamlit: same pid
    return proc.pid


def stop(settings: Settings) -> bool:
    pid = running(settings)
    if pid is None:
        return False
    terminate(pid, "streamlit", timeout=20)
    _pid_file(settings).unlink(missing_ok=True)
    return True
