"""The local PostgreSQL 15 server: a cluster of the project's own in the state folder.

Uses the Debian server binaries (``IRTMON_PG_BIN_DIR``). PostgreSQL refuses to run as root, so
when irtmon runs as root the cluster is owned and run by ``IRTMON_PG_OS_USER``. The cluster
listens on 127.0.0.1 only, with ``trust`` authentication for the ``irtmon`` role: it is a local
development and test server; deploy against a managed PostgreSQL/TimescaleDB for real use.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from core.settings import Settings
from irtmon.stack.process import StackError, pid_alive, port_open, tail, wait_until

ROLE = "irtmon"


@dataclass(frozen=True)
class PgPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"


def paths(settings: Settings) -> PgPaths:
    return PgPaths(settings.state_dir.resolve() / "postgres")


def _as_root() -> bool:
    return os.geteuid() == 0


def _run(settings: Settings, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run a PostgreSQL binary, as the unprivileged OS user when we are root."""
    binary = settings.pg_bin_dir / args[0]
    if not binary.exists():
        raise StackError(
            f"{binary} not found: install the PostgreSQL 15 server (apt-get install "
            "postgresql-15) or set IRTMON_PG_BIN_DIR"
        )
    cmd = [str(binary), *args[1:]]
    if _as_root():
        cmd = ["runuser", "-u", settings.pg_os_user, "--", *cmd]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
    if check and result.returncode != 0:
        raise StackError(
            f"{args[0]} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}"
        )
    return result


def _prepare_dirs(settings: Settings, p: PgPaths) -> None:
    p.root.mkdir(parents=True, exist_ok=True)
    p.socket_dir.mkdir(parents=True, exist_ok=True)
    if _as_root():
        try:
            user = pwd.getpwnam(settings.pg_os_user)
        except KeyError:
            raise StackError(
                f"OS user {settings.pg_os_user!r} does not exist; PostgreSQL cannot run as root. "
                "Create an unprivileged user or set IRTMON_PG_OS_USER"
            ) from None
        for path in (p.root, p.socket_dir, *(x for x in [p.data] if x.exists())):
            shutil.chown(path, user.pw_uid, user.pw_gid)
        check = subprocess.run(
            ["runuser", "-u", settings.pg_os_user, "--", "test", "-w", str(p.root)],
            capture_output=True,
        )
        if check.returncode != 0:
            raise StackError(
                f"{settings.pg_os_user!r} cannot write {p.root}; put IRTMON_STATE_DIR on a path "
                "every user can traverse (not under /root)"
            )


def running_pid(settings: Settings) -> int | None:
    """Pid of the local postmaster if it runs."""
    try:
        pid = int((paths(settings).data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid, "postgres") else None


def start(settings: Settings) -> int:
    """initdb on first use, start the server unless it runs, create the database."""
    p = paths(settings)
    _prepare_dirs(settings, p)
    if not (p.data / "PG_VERSION").exists():
        _run(
            settings,
            ["initdb", "-D", str(p.data), "-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-locale"],
        )
    pid = running_pid(settings)
    if pid is None:
        if port_open("127.0.0.1", settings.pg_port):
            raise StackError(
                f"port {settings.pg_port} is already taken by another process; stop it or set "
                "IRTMON_PG_PORT to a free port"
            )
        options = (
            f"-c port={settings.pg_port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={p.socket_dir} -c max_connections=100 "
            "-c shared_buffers=128MB -c fsync=on -c log_min_messages=warning"
        )
        result = _run(
            settings,
            [
                "pg_ctl",
                "-D",
                str(p.data),
                "-l",
                str(p.log),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ],
            check=False,
        )
        if result.returncode != 0:
            raise StackError("PostgreSQL did not start:\n" + result.stderr[-1500:] + tail(p.log))
        pid = running_pid(settings)
        if pid is None:
            raise StackError("PostgreSQL started but wrote no pid:\n" + tail(p.log))
    create_database(settings)
    return pid


def create_database(settings: Settings) -> None:
    """Create the configured database on the local server if missing."""
    admin_dsn = f"postgresql://{ROLE}@127.0.0.1:{settings.pg_port}/postgres"
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (settings.pg_database,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.pg_database)))


def stop(settings: Settings) -> bool:
    """Stop the server (fast shutdown) if it runs; True if one was stopped."""
    p = paths(settings)
    pid = running_pid(settings)
    if pid is None:
        return False
    _run(settings, ["pg_ctl", "-D", str(p.data), "-m", "fast", "-w", "-t", "60", "stop"])
    # pg_ctl returns once the pid file is gone; wait for the postmaster itself to exit too.
    wait_until(lambda: not pid_alive(pid, "postgres"), 30, "PostgreSQL to exit")
    return True
