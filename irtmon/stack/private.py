"""Private stacks for tests and benchmarks: own state folder, free loopback ports, shared jars."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from core.settings import Settings
from irtmon.stack.postgres import PRIVATE_MARK


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
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
