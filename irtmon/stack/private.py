"""Private stacks for tests and benchmarks: own state folder, free loopback ports, shared jars."""

from __future__ import annotations

import os
import random
import socket
import tempfile
import time
from pathlib import Path

from core.settings import Settings
from irtmon.stack.postgres import PRIVATE_MARK

_RESERVED_FOR_S = 6 * 3600.0
_LOWEST = 20_000


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses now and that no other caller on this machine
    was given in the last hours.

    A port from ``bind(port 0)`` is free only until the kernel hands it out again, which it
    does to the next ``bind(0)`` of any process and as the local port of outgoing connections:
    in CI a test picked its app port that way and, minutes later, found it taken. So the port is
    drawn below the kernel's ephemeral range (``ip_local_port_range``), where the kernel hands
    out nothing on its own, and reserved by creating a file named for it (``O_EXCL``), so that
    parallel test processes never share one. Reservations older than six hours lapse.
    """
    low = _ephemeral_low()
    if low - _LOWEST < 1000:
        return _kernel_port()
    folder = Path(tempfile.gettempdir()) / f"irtmon-ports-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    _prune_once(folder)
    draw = random.SystemRandom()
    for _ in range(500):
        port = draw.randrange(_LOWEST, low)
        if _reserve(folder / str(port)) and _bindable(port):
            return port
    return _kernel_port()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


_pruned: set[Path] = set()


def _prune_once(folder: Path) -> None:
    """Remove lapsed reservations, once per process, so the folder does not grow for ever."""
    if folder in _pruned:
        return
    _pruned.add(folder)
    now = time.time()
    for mark in folder.iterdir():
        try:
            if now - mark.stat().st_mtime >= _RESERVED_FOR_S:
                mark.unlink()
        except OSError:
            pass


def _reserve(mark: Path) -> bool:
    try:
        os.close(os.open(mark, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        try:
            if time.time() - mark.stat().st_mtime < _RESERVED_FOR_S:
                return False
            mark.touch()  # lapsed: taken over (two takers in the same instant are not guarded)
            return True
        except OSError:
            return False


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _kernel_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_settings(state_dir: Path, cache_dir: Path, **overrides: object) -> Settings:
    """Settings for a stack of its own in ``state_dir`` on free ports.

    The folder is marked private: when it is gone, its PostgreSQL cluster (kept outside it when
    running as root, see :func:`irtmon.stack.postgres.cluster_root`) is pruned by the next start
    of any local server.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / PRIVATE_MARK).touch()
    values: dict[str, object] = {
        "state_dir": state_dir,
        "cache_dir": cache_dir,
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
        "pg_port": free_port(),
        "kafka_heap": "384m",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def settings_env(settings: Settings, **extra: object) -> dict[str, str]:
    """Environment for a subprocess (worker, CLI) that must use the same stack as ``settings``."""
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("IRTMON_")}
    values = settings.model_dump(exclude_none=True)
    values.update(extra)
    for name, value in values.items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = json.dumps([str(v) for v in value])
        env[f"IRTMON_{name.upper()}"] = str(value)
    return env
