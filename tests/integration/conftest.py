"""The real stack for integration tests: a Kafka broker and a PostgreSQL server of our own.

The session starts one stack in a temporary state folder on free ports (sharing the repository's
jar cache), migrates its database, and stops it at the end. Set IRTMON_KAFKA_BOOTSTRAP and
IRTMON_DATABASE_URL to run the same tests against existing servers instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from kafka import TopicPartition
from kafka.admin import OffsetSpec
from kafka.errors import KafkaError, NoError

from core.db import connect, migrate
from core.settings import Settings
from irtmon import stack
from irtmon.stack import postgres
from irtmon.stack.private import private_settings, settings_env
from irtmon.stack.topics import admin_client
from schemas.topics import TOPICS
from tests.conftest import REPO, locked


def stack_settings(state_dir: Path, **overrides: object) -> Settings:
    """Settings for a private local stack in ``state_dir`` on free ports."""
    return private_settings(state_dir, REPO / ".irtmon" / "cache", **overrides)


@pytest.fixture(scope="session")
def stack_dir() -> Path:
    # Under the repository (`make clean` removes them all); as root, the PostgreSQL cluster
    # itself lives outside it, where its OS user can reach it (irtmon.stack.postgres).
    base = REPO / ".irtmon" / "test-stacks"
    base.mkdir(parents=True, exist_ok=True)
    path = base / f"session-{os.getpid()}"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def settings(stack_dir: Path) -> Iterator[Settings]:
    """A running stack with a migrated database, for the whole test session."""
    external = os.environ.get("IRTMON_KAFKA_BOOTSTRAP") and os.environ.get("IRTMON_DATABASE_URL")
    s = (
        Settings()
        if external
        else stack_settings(
            stack_dir,
            consumer_group=f"irtmon-it-{os.getpid()}",
            data_roots=[REPO / ".irtmon" / "test-data"],
            derived_dir=stack_dir / "derived",  # the stack's own (parallel sessions: -n)
            transient_retry_s=60,
        )
    )
    for root in s.data_roots:
        Path(root).mkdir(parents=True, exist_ok=True)
    try:
        stack.up(s)
        with connect(s, autocommit=True) as conn:
            migrate(conn, s.timescaledb)
        yield s
    finally:  # a stack whose migration failed is stopped too: nothing is left running
        if not external:
            stack.down(s)
            postgres.delete_cluster(s)
            shutil.rmtree(stack_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def app_settings(settings: Settings) -> Settings:
    """The stack's settings on a migrated database of their own on the same server, for the
    app tests' seeded virtual-clinic patients: the stream tests' workers score the same
    cohorts' patients (same pseudonyms, same event ids) in the stack's database, and neither
    may see the other's rows, whichever runs first. An external database
    (IRTMON_DATABASE_URL) is used as it is."""
    if not settings.local_postgres:
        return settings
    app = settings.model_copy(update={"pg_database": f"{settings.pg_database}_app"})
    postgres.create_database(app)
    with connect(app, autocommit=True) as conn:
        migrate(conn, app.timescaledb)
    return app


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    with connect(settings) as conn:
        yield conn
        conn.rollback()


def group_at_end(settings: Settings, group: str, timeout: float = 120) -> None:
    """Commit ``group``'s offsets at the current end of every registry topic, so that a worker
    of that group reads only what is published from now on.

    On a fresh broker the group coordinator (the offsets topic) appears only after the first
    request for it: retriable errors are retried until ``timeout``.
    """
    ends = {
        TopicPartition(name, p): OffsetSpec.LATEST
        for name, spec in TOPICS.items()
        for p in range(spec.partitions)
    }
    deadline = time.monotonic() + timeout
    admin = admin_client(settings)
    try:
        while True:
            try:
                result = admin.reset_group_offsets(group, ends)
                errors = {tp: r["error"] for tp, r in result.items() if r["error"] is not NoError}
            except KafkaError as err:
                if not err.retriable:
                    raise
                errors = {"coordinator": type(err)}
            if not errors:
                return
            if time.monotonic() > deadline or not all(e.retriable for e in errors.values()):
                raise AssertionError(f"offsets of {group} not committed: {errors}")
            time.sleep(0.5)
    finally:
        admin.close()


class Workers:
    """Start and stop `irtmon worker` processes on the test stack.

    The workers of one instance share a consumer group of their own, which starts at the end
    of every topic as it stood when the instance was made: they read only what the test
    publishes from then on, never events another test left on the shared broker.
    """

    def __init__(self, settings: Settings, log_dir: Path) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []
        self.group = f"{settings.consumer_group}-{uuid.uuid4().hex[:12]}"
        group_at_end(settings, self.group)

    def start(self, wait: bool = True, **extra: object) -> subprocess.Popen:
        from irtmon.stack.private import free_port

        port = free_port()
        extra.setdefault("consumer_group", self.group)
        env = settings_env(self.settings, worker_web_port=port, **extra)
        log = open(self.log_dir / f"worker-{len(self.procs)}-{port}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "irtmon", "worker"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, with its scoring processes
        )
        proc.web_port = port  # type: ignore[attr-defined]
        proc.log_path = Path(log.name)  # type: ignore[attr-defined]
        self.procs.append(proc)
        if wait:
            self.wait_assigned(proc)
        return proc

    def assigned(self, proc: subprocess.Popen) -> list[str]:
        import json
        import urllib.request

        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{proc.web_port}/health",
                timeout=2,  # type: ignore[attr-defined]
            ) as response:
                return json.loads(response.read())["assigned"]
        except OSError:
            return []

    def wait_assigned(self, proc: subprocess.Popen, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"worker exited ({proc.returncode}):\n" + proc.log_path.read_text()[-3000:]  # type: ignore[attr-defined]
                )
            if self.assigned(proc):
                return
            time.sleep(0.5)
        raise TimeoutError("worker got no partitions in time")

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the worker and wait for it; then end whatever of its process group
        is left (its scoring pool's processes, which a SIGKILL leaves orphaned), as a
        supervisor stopping the service's control group does."""
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for proc in self.procs:
            self.stop(proc)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Workers]:
    manager = Workers(settings, tmp_path)
    yield manager
    manager.stop_all()


def wait_for(check: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture(scope="session")
def cohort(settings: Settings) -> Path:
    """A small virtual-clinic cohort (3 patients, test size) inside the workers' data roots
    (kept there between sessions; generated by one session at a time)."""
    from clinic import generate_cohort

    out = Path(settings.data_roots[0]) / "cohort-seed7"
    with locked(out.with_name(out.name + ".lock")):
        if not (out / "cohort.json").exists():
            generate_cohort(out, 3, 7, "test", key="integration-cohort-key-0123456789")
    return out


@pytest.fixture(scope="session")
def cohort_v2(settings: Settings) -> Path:
    """A small story-v2 cohort (every lesion; test size) inside the workers' data roots: seed
    298 draws a non-responder with two lesions and a hyperprogression with five lesions at
    baseline, one of them going against the course (a dissociated response), and two new
    lesions during follow-up."""
    from clinic import generate_cohort

    out = Path(settings.data_roots[0]) / "cohort-v2-seed298"
    with locked(out.with_name(out.name + ".lock")):
        if not (out / "cohort.json").exists():
            generate_cohort(
                out, 2, 298, "test", key="integration-cohort-v2-key-0123456789", story="v2"
            )
    return out


@pytest.fixture(scope="session")
def pathology_model(settings: Settings, stack_dir: Path) -> Path:
    """A small pathology MIL model trained here, registered and promoted in the test database
    (plumbing only: 6 patients; the accuracy targets are checked by the pathology tests)."""
    out = stack_dir / "pathology-run"
    env = settings_env(settings, models_dir=stack_dir / "models")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "irtmon",
            "train",
            "pathology",
            "--out",
            str(out),
            "--patients",
            "6",
            "--seed",
            "3",
            "--max-epochs",
            "30",
            "--patience",
            "10",
            "--workers",
            "1",
            "--register",
            "--promote",
            "--version",
            "it-1",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "SELECT path FROM model_registry WHERE name = 'pathology-mil' AND promoted"
        ).fetchone()
    assert row is not None
    return Path(row[0])
