"""Small helpers to run, find and stop the stack's background server processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from schemas.errors import RefusedError


class StackError(RefusedError, RuntimeError):
    """The local stack could not be started, checked or stopped; the message says why."""


def pid_alive(pid: int, expect_in_cmdline: str | None = None) -> bool:
    """True if ``pid`` runs (and, if given, its command line contains ``expect_in_cmdline``)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # runs under another user (the PostgreSQL OS user)
    if expect_in_cmdline is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    if Path(f"/proc/{pid}/stat").exists():
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
        if state == "Z":  # a zombie has exited; its parent has not reaped it yet
            return False
    return expect_in_cmdline in cmdline


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` (first line), or None when absent or unreadable."""
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def live_pid(pid_file: Path, expect_in_cmdline: str) -> int | None:
    """The pid in ``pid_file`` if that process runs with ``expect_in_cmdline`` in its command
    line, else None."""
    pid = read_pid(pid_file)
    return pid if pid is not None and pid_alive(pid, expect_in_cmdline) else None


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_ports_free(ports: Iterable[int], taken: str) -> None:
    """Raise :class:`StackError` with ``taken`` (formatted with ``port``) for the first of
    ``ports`` that something on 127.0.0.1 already listens on."""
    for port in ports:
        if port_open("127.0.0.1", port):
            raise StackError(taken.format(port=port))


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    interval: float = 0.25,
    failed: Callable[[], str | None] | None = None,
) -> None:
    """Poll ``check`` until it is true; ``failed`` may report an early, fatal reason."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if failed is not None and (reason := failed()):
            raise StackError(f"{what} failed: {reason}")
        time.sleep(interval)
    raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")


def spawn_detached(
    args: Sequence[str], log_file: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a long-running process in its own session, output to ``log_file``."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    return proc


def start_server(
    args: Sequence[str],
    log_file: Path,
    pid_file: Path,
    *,
    env: dict[str, str] | None,
    ready: Callable[[], bool],
    timeout: float,
    what: str,
    exited: Callable[[subprocess.Popen], str],
) -> int:
    """Start a server detached, write its pid to ``pid_file`` and wait until ``ready``; should
    it exit meanwhile, fail at once with ``exited(process)`` as the reason. Returns its pid."""
    proc = spawn_detached(args, log_file, env=env)
    pid_file.write_text(f"{proc.pid}\n")

    def died() -> str | None:
        return None if proc.poll() is None else exited(proc)

    wait_until(ready, timeout, what, failed=died)
    return proc.pid


def stop_server(pid_file: Path, expect_in_cmdline: str, timeout: float) -> bool:
    """Stop the server recorded in ``pid_file`` if it runs and remove the pid file; True if one
    was stopped (a stale pid file is left alone)."""
    pid = live_pid(pid_file, expect_in_cmdline)
    if pid is None:
        return False
    terminate(pid, expect_in_cmdline, timeout=timeout)
    pid_file.unlink(missing_ok=True)
    return True


def terminate(pid: int, expect_in_cmdline: str, timeout: float = 30.0) -> None:
    """SIGTERM ``pid``, wait for it to exit, SIGKILL it after ``timeout``."""
    if not pid_alive(pid, expect_in_cmdline):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid, expect_in_cmdline):
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child (no-op otherwise)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
