"""The real stack for integration tests: a Kafka broker and a PostgreSQL server of our own.

The session starts one stack in a temporary state folder on free ports (sharing the repository's
jar cache), migrates its database, and stops it at the end. Set IRTMON_KAFKA_BOOTSTRAP and
IRTMON_DATABASE_URL to run the same tests against existing servers instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from irtmon import stack
from irtmon.db import connect, migrate
from irtmon.settings import Settings
from tests.conftest import REPO, free_port


def stack_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for a private local stack in ``state_dir`` on free ports."""
    values: dict[str, object] = {
        "state_dir": state_dir,
        "cache_dir": REPO / ".irtmon" / "cache",
        "kafka_port": free_port(),
        "kafka_controller_port": free_port(),
        "pg_port": free_port(),
        "kafka_heap": "384m",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Under the repository, not /tmp's 0700 pytest folders: the PostgreSQL OS user must
    # traverse it when the tests run as root.
    base = REPO / ".irtmon" / "test-stacks"
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    path = base / f"session-{os.getpid()}"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def settings(stack_dir: Path) -> Iterator[Settings]:
    """A running stack with a migrated database, for the whole test session."""
    external = os.environ.get("IRTMON_KAFKA_BOOTSTRAP") and os.environ.get("IRTMON_DATABASE_URL")
    s = Settings() if external else stack_settings(stack_dir)
    stack.up(s)
    with connect(s, autocommit=True) as conn:
        migrate(conn, s.timescaledb)
    yield s
    if not external:
        stack.down(s)
        shutil.rmtree(stack_dir, ignore_errors=True)


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    with connect(settings) as conn:
        yield conn
        conn.rollback()
