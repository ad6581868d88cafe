"""Ordered SQL migrations from ``schemas/migrations``, applied once each and recorded.

A migration is ``NNNN_name.sql`` (for every database) or a pair ``NNNN_name.timescale.sql`` /
``NNNN_name.plain.sql``, of which one is applied according to the database's *flavour*:

- ``timescale`` when the TimescaleDB extension is available with its community (TSL) licence
  (hypertables, compression and continuous aggregates need it);
- ``plain`` otherwise, or when ``IRTMON_TIMESCALEDB=off``.

The flavour is decided once, on the first migration, and kept: a database never switches.
Every applied file is recorded in ``irtmon_schema_migrations`` with its name and checksum;
re-running is a no-op. Before anything is applied, every recorded migration is compared with the
files by name and checksum (:func:`check_applied`): an applied file that changed, was renamed
(to another number or name) or disappeared is refused with a :class:`MigrationMismatchError`
naming it, so a renamed file is never applied a second time under its new number.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Literal

import psycopg

from schemas.errors import RefusedError

log = logging.getLogger(__name__)

_FILE_RE = re.compile(
    r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)(?:\.(?P<flavour>timescale|plain))?\.sql$"
)
_LOCK_ID = 0x1A7_0D0B  # advisory lock key serialising concurrent migrators
NO_TRANSACTION = "-- irtmon: no-transaction"


class Flavour(StrEnum):
    TIMESCALE = "timescale"
    PLAIN = "plain"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    flavour: Literal["common", "timescale", "plain"]
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def filename(self) -> str:
        suffix = "" if self.flavour == "common" else f".{self.flavour}"
        return f"{self.version:04d}_{self.name}{suffix}.sql"


class MigrationMismatchError(RefusedError, RuntimeError):
    """An applied migration no longer matches its file: edited, renamed or removed."""


@dataclass(frozen=True)
class AppliedMigration:
    """A row of ``irtmon_schema_migrations``."""

    version: int
    filename: str
    checksum: str


@dataclass
class MigrationReport:
    flavour: Flavour
    reason: str
    applied: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)


def discover() -> list[Migration]:
    """All migration files, sorted by version; checks each version's files are coherent."""
    found: list[Migration] = []
    folder = resources.files("schemas").joinpath("migrations")
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_RE.match(entry.name)
        if not match:
            raise ValueError(
                f"migration file {entry.name!r} is misnamed: use NNNN_name.sql or "
                "NNNN_name.timescale.sql / NNNN_name.plain.sql"
            )
        found.append(
            Migration(
                version=int(match["version"]),
                name=match["name"],
                flavour=match["flavour"] or "common",  # type: ignore[arg-type]
                sql=entry.read_text(),
            )
        )
    by_version: dict[int, set[str]] = {}
    for m in found:
        by_version.setdefault(m.version, set()).add(m.flavour)
    for version, flavours in by_version.items():
        if flavours not in ({"common"}, {"timescale", "plain"}):
            raise ValueError(
                f"migration {version:04d} must be one common file or a timescale/plain pair, "
                f"found: {sorted(flavours)}"
            )
    return sorted(found, key=lambda m: (m.version, m.flavour))


def _ensure_table(conn: psycopg.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE IF NOT EXISTS irtmon_schema_migrations (
            version     integer PRIMARY KEY,
            filename    text NOT NULL,
            flavour     text NOT NULL,
            checksum    text NOT NULL,
            applied_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def recorded_flavour(conn: psycopg.Connection) -> Flavour | None:
    """The flavour the database was migrated with, or None before the first migration."""
    exists = conn.execute("SELECT to_regclass('irtmon_schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute(
        "SELECT flavour FROM irtmon_schema_migrations WHERE flavour <> 'common' "
        "ORDER BY version DESC LIMIT 1"
    ).fetchone()
    return Flavour(row[0]) if row else None


def detect_flavour(conn: psycopg.Connection, wanted: str = "auto") -> tuple[Flavour, str]:
    """Decide timescale or plain for a database, with the reason. ``conn`` is autocommit."""
    if wanted == "off":
        return Flavour.PLAIN, "TimescaleDB turned off by IRTMON_TIMESCALEDB=off"
    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        return Flavour.PLAIN, "the timescaledb extension is not available on this server"
    preload = conn.execute("SELECT current_setting('shared_preload_libraries', true)").fetchone()
    if "timescaledb" not in str(preload[0] if preload else ""):
        # creating it now would end this session (the library must be loaded at start)
        return Flavour.PLAIN, (
            "the timescaledb extension is installed but not preloaded: add timescaledb to the "
            "server's shared_preload_libraries and restart it"
        )
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as err:
        # e.g. the library is not in shared_preload_libraries
        return Flavour.PLAIN, f"the timescaledb extension could not be created: {err}".strip()
    licence = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    version = conn.execute(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    ).fetchone()
    if licence is None or licence[0] != "timescale":
        return Flavour.PLAIN, (
            f"TimescaleDB {version[0] if version else '?'} is the Apache-only build "
            f"(licence {licence[0] if licence else None!r}): compression and continuous "
            "aggregates need the community build"
        )
    return Flavour.TIMESCALE, f"TimescaleDB {version[0] if version else '?'} (community licence)"


def _try_lock(conn: psycopg.Connection) -> bool:
    try:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        return True
    except psycopg.errors.FeatureNotSupported:
        return False


def migrate(conn: psycopg.Connection, timescaledb: str = "auto") -> MigrationReport:
    """Apply the pending migrations. ``conn`` must be in autocommit mode.

    Each migration runs in its own transaction (unless its file starts with
    ``-- irtmon: no-transaction``) together with its record in ``irtmon_schema_migrations``.
    """
    if not conn.autocommit:
        raise ValueError("migrate() needs an autocommit connection (it manages transactions)")
    locked = _try_lock(conn)
    try:
        _ensure_table(conn)
        flavour = recorded_flavour(conn)
        if flavour is None:
            flavour, reason = detect_flavour(conn, timescaledb)
        else:
            reason = f"kept from the first migration of this database ({flavour})"
        applied = [
            AppliedMigration(version, filename, checksum)
            for version, filename, checksum in conn.execute(
                "SELECT version, filename, checksum FROM irtmon_schema_migrations"
            ).fetchall()
        ]
        files = [m for m in discover() if m.flavour in ("common", flavour.value)]
        check_applied(applied, files)
        done = {a.version for a in applied}
        report = MigrationReport(flavour=flavour, reason=reason)
        for m in files:
            if m.version in done:
                report.already.append(m.filename)
                continue
            _apply(conn, m)
            report.applied.append(m.filename)
            log.info("applied migration %s", m.filename)
        return report
    finally:
        if locked:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))


def check_applied(applied: list[AppliedMigration], files: list[Migration]) -> None:
    """Refuse when a recorded migration does not match the files (of the database's flavour)
    by name and checksum.

    Raises
    ------
    MigrationMismatchError
        Naming every applied migration whose file changed, was renamed or is gone, and what
        to do about it (restore the file as it was applied; put changes in a new migration).
    """
    by_name = {m.filename: m for m in files}
    by_checksum = {m.checksum: m for m in files}
    problems: list[str] = []
    for a in sorted(applied, key=lambda a: a.version):
        file = by_name.get(a.filename)
        if file is not None and file.checksum == a.checksum:
            continue
        if file is not None:
            problems.append(
                f"{a.filename} was changed after it was applied (recorded checksum "
                f"{a.checksum[:12]}, file {file.checksum[:12]})"
            )
        elif a.checksum in by_checksum:
            problems.append(
                f"{a.filename} was applied and is now named {by_checksum[a.checksum].filename}"
            )
        else:
            problems.append(f"{a.filename} was applied and its file is gone")
    if problems:
        raise MigrationMismatchError(
            "applied migrations do not match schemas/migrations: "
            + "; ".join(problems)
            + ". Restore each applied file under its name, as it was applied, and put any "
            "change in a new migration numbered after the last one"
        )


def _apply(conn: psycopg.Connection, m: Migration) -> None:
    record = (
        "INSERT INTO irtmon_schema_migrations (version, filename, flavour, checksum) "
        "VALUES (%s, %s, %s, %s)"
    )
    params = (m.version, m.filename, m.flavour, m.checksum)
    try:
        if m.sql.lstrip().startswith(NO_TRANSACTION):
            conn.execute(m.sql)
            conn.execute(record, params)
        else:
            with conn.transaction():
                conn.execute(m.sql)
                conn.execute(record, params)
    except psycopg.Error as err:
        raise RuntimeError(f"migration {m.filename} failed: {err}") from err


def migration_status(conn: psycopg.Connection) -> list[tuple[int, str, str, str]]:
    """Applied migrations: (version, filename, flavour, applied_at) in order."""
    exists = conn.execute("SELECT to_regclass('irtmon_schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return []
    return [
        (v, f, fl, str(at))
        for v, f, fl, at in conn.execute(
            "SELECT version, filename, flavour, applied_at FROM irtmon_schema_migrations "
            "ORDER BY version"
        ).fetchall()
    ]
