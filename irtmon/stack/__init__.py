"""The local stack: a real Kafka broker and a real PostgreSQL server, run by irtmon itself,
and, with ``--with-pacs``, a loopback Orthanc PACS with irtmon's plugin.

``up`` is idempotent: what runs is left alone, what is missing is started, and it returns once
both accept connections. When ``IRTMON_KAFKA_BOOTSTRAP`` or ``IRTMON_DATABASE_URL`` name
existing servers, those are used and nothing of ours is started for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from core.settings import Settings
from irtmon.stack import app, kafka, orthanc, postgres, workers
from irtmon.stack.process import StackError
from irtmon.stack.topics import describe_topics, ensure_topics

__all__ = ["ComponentStatus", "StackError", "StackStatus", "down", "status", "up"]


@dataclass
class ComponentStatus:
    name: str
    managed: bool  # started by irtmon (local) or external
    running: bool
    pid: int | None
    address: str
    detail: str = ""


@dataclass
class StackStatus:
    kafka: ComponentStatus
    postgres: ComponentStatus
    database_flavour: str | None = None
    timescaledb: str | None = None  # the extension's version in the database, when created
    topics: dict[str, int] | None = None
    workers: dict[int, int] | None = None
    pacs: ComponentStatus | None = None

    @property
    def components(self) -> list[ComponentStatus]:
        return [self.kafka, self.postgres, *([self.pacs] if self.pacs else [])]


def up(settings: Settings, with_pacs: bool = False) -> StackStatus:
    """Start what is missing, wait until both answer, create the registry's topics; with
    ``with_pacs`` also the loopback Orthanc (after the broker: its plugin publishes)."""
    if settings.local_postgres:
        postgres.start(settings)
    if settings.local_kafka:
        kafka.start(settings)
    elif not kafka.broker_ready(settings):
        raise StackError(f"the Kafka cluster at {settings.bootstrap_servers} does not answer")
    ensure_topics(settings)
    if with_pacs:
        if settings.local_pacs:
            orthanc.start(settings)
        elif not orthanc.ready(settings):
            raise StackError(
                f"the Orthanc at {settings.pacs_http} does not answer with its DICOMweb and "
                "Python plugins"
            )
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stop the local workers and servers (never external ones); return the names stopped."""
    stopped = []
    if app.stop(settings):
        stopped.append("app")
    if workers.stop(settings):
        stopped.append("workers")
    if settings.local_pacs and orthanc.stop(settings):
        stopped.append("orthanc")
    if settings.local_kafka and kafka.stop(settings):
        stopped.append("kafka")
    if settings.local_postgres and postgres.stop(settings):
        stopped.append("postgres")
    return stopped


def _timescaledb(conn: psycopg.Connection) -> tuple[str | None, str]:
    """The TimescaleDB version created in the database (or None) and how to say it."""
    created = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    if created:
        return created[0], f"TimescaleDB {created[0]}"
    available = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if available is None:
        return None, "no TimescaleDB"
    try:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
    except psycopg.Error:  # a non-superuser on an external server may not read it
        return None, f"TimescaleDB {available[0]} available"
    if preload is None or "timescaledb" not in preload[0]:
        return None, (
            f"TimescaleDB {available[0]} installed but not preloaded (restart the server: "
            "irtmon stack down, then up)"
        )
    return None, f"TimescaleDB {available[0]} preloaded (run `irtmon db migrate`)"


def _database_flavour(settings: Settings) -> tuple[bool, str | None, str, str | None]:
    from core.db.migrate import recorded_flavour

    try:
        with psycopg.connect(settings.dsn, autocommit=True, connect_timeout=3) as conn:
            flavour = recorded_flavour(conn)
            version = conn.execute("SHOW server_version").fetchone()
            timescaledb, said = _timescaledb(conn)
            return (
                True,
                (flavour.value if flavour else None),
                f"PostgreSQL {version[0]}, {said}",
                timescaledb,
            )
    except psycopg.Error as err:
        return False, None, (str(err).splitlines()[0] if str(err) else "not reachable"), None


def status(settings: Settings) -> StackStatus:
    """What runs, where it listens, which database flavour the migrations chose, and the
    TimescaleDB version (in the postgres component's detail)."""
    kafka_pid = kafka.running_pid(settings) if settings.local_kafka else None
    kafka_ok = kafka.broker_ready(settings) if (kafka_pid or not settings.local_kafka) else False
    pg_pid = postgres.running_pid(settings) if settings.local_postgres else None
    pg_ok, flavour, pg_detail, timescaledb = (
        _database_flavour(settings)
        if (pg_pid or not settings.local_postgres)
        else (False, None, "not running", None)
    )
    topics = None
    if kafka_ok:
        try:
            topics = describe_topics(settings)
        except Exception as err:
            topics = {"<error>": 0}
            pg_detail += f"; topics unreadable: {err}"
    dsn_shown = settings.dsn_masked  # never print a password
    pacs = None
    orthanc_pid = orthanc.running_pid(settings) if settings.local_pacs else None
    if orthanc_pid is not None or not settings.local_pacs:
        pacs_version = orthanc.version(settings)
        pacs = ComponentStatus(
            "orthanc",
            settings.local_pacs,
            pacs_version is not None,
            orthanc_pid,
            settings.pacs_http,
            f"Orthanc {pacs_version}, DICOM {settings.orthanc_aet}@{settings.orthanc_dicom_port}"
            if settings.local_pacs
            else "external",
        )
    return StackStatus(
        kafka=ComponentStatus(
            "kafka",
            settings.local_kafka,
            kafka_ok,
            kafka_pid,
            settings.bootstrap_servers,
            f"Apache Kafka {settings.kafka_version} (KRaft)"
            if settings.local_kafka
            else "external",
        ),
        postgres=ComponentStatus(
            "postgres", settings.local_postgres, pg_ok, pg_pid, dsn_shown, pg_detail
        ),
        database_flavour=flavour,
        timescaledb=timescaledb,
        topics=topics,
        workers=workers.running(settings),
        pacs=pacs,
    )
