"""The local PostgreSQL 15 server: a cluster of the project's own, one per state folder.

Uses the Debian server binaries (``IRTMON_PG_BIN_DIR``). PostgreSQL refuses to run as root, so
when irtmon runs as root the cluster is owned and run by ``IRTMON_PG_OS_USER``. That user must
reach the cluster's folder, and it often cannot reach the state folder (a clone in /root, or
under any 0700 folder): as root the cluster therefore lives in a system folder of its own,
``/var/lib/irtmon/postgres/<name>-<hash of the state folder's path>`` (see :func:`cluster_root`),
stable per state folder. As any other user it lives in ``<state>/postgres``.

When the TimescaleDB library is installed in this PostgreSQL (``scripts/bootstrap.sh`` builds the
vendored release), the server preloads it (``shared_preload_libraries = 'timescaledb'``), so the
migrations take the timescale flavour unless ``IRTMON_TIMESCALEDB=off``.

The cluster listens on 127.0.0.1 only, with ``trust`` authentication for the ``irtmon`` role: it
is a local development and test server; deploy against a managed PostgreSQL/TimescaleDB for real
use.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from core.settings import Settings
from irtmon.stack.process import StackError, pid_alive, port_open, tail, wait_until

ROLE = "irtmon"
SYSTEM_ROOT = Path("/var/lib/irtmon/postgres")
"""Where the clusters live when irtmon runs as root (one folder per state folder)."""
PRIVATE_MARK = ".irtmon-private-stack"
"""A file in a state folder that marks its stack as private (tests, benchmarks): its cluster is
pruned once the state folder is gone (:func:`prune_private`)."""
TIMESCALEDB_OPTIONS = (
    "-c shared_preload_libraries=timescaledb -c timescaledb.telemetry_level=off "
    "-c max_worker_processes=16 -c timescaledb.max_background_workers=8"
)
"""Server options when the TimescaleDB library is installed: preloaded (its extension cannot be
created otherwise), telemetry off (nothing leaves the machine), workers for its policy jobs."""


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

    @property
    def state_record(self) -> Path:
        """The state folder this cluster belongs to (a system cluster's label)."""
        return self.root / "state_dir"

    @property
    def private_record(self) -> Path:
        return self.root / "private"


def cluster_root(settings: Settings) -> Path:
    """The folder of the state folder's cluster (data, socket, log).

    As root: ``SYSTEM_ROOT/<name>-<hash>``, where the hash is of the state folder's absolute
    path, so a restart finds the same data and two state folders never share one; a cluster
    that an earlier irtmon made in ``<state>/postgres`` is kept there. As another user:
    ``<state>/postgres`` (the server runs as that user, who can reach it).
    """
    state = settings.state_dir.resolve()
    in_state = state / "postgres"
    if not _as_root() or (in_state / "data" / "PG_VERSION").exists():
        return in_state
    digest = hashlib.sha256(str(state).encode()).hexdigest()[:16]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{state.parent.name}-{state.name}").strip("._-")
    return SYSTEM_ROOT / f"{name[:48]}-{digest}"


def paths(settings: Settings) -> PgPaths:
    return PgPaths(cluster_root(settings))


def timescaledb_library(settings: Settings) -> Path | None:
    """The TimescaleDB loader library installed in this PostgreSQL (``pg_config
    --pkglibdir``), or None when it is not installed."""
    libdir = settings.pg_bin_dir.parent / "lib"
    pg_config = settings.pg_bin_dir / "pg_config"
    if pg_config.exists():
        result = subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip():
            libdir = Path(result.stdout.strip())
    library = libdir / "timescaledb.so"
    return library if library.exists() else None


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


def _os_user(settings: Settings) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(settings.pg_os_user)
    except KeyError:
        raise StackError(
            f"OS user {settings.pg_os_user!r} does not exist; PostgreSQL cannot run as root. "
            "Create an unprivileged user or set IRTMON_PG_OS_USER"
        ) from None


def _make_system_root() -> None:
    """Create ``SYSTEM_ROOT`` with its parent, open to every user for traversal (0755)."""
    try:
        for folder in (SYSTEM_ROOT.parent, SYSTEM_ROOT):
            folder.mkdir(exist_ok=True)
            if folder.stat().st_mode & 0o005 != 0o005:  # a root umask of 077 would close it
                os.chmod(folder, 0o755)
    except OSError as err:
        raise StackError(
            f"cannot create {SYSTEM_ROOT} ({err}); as root, irtmon keeps the local PostgreSQL "
            "cluster there because its OS user cannot be assumed to reach the state folder. Make "
            f"{SYSTEM_ROOT.parent.parent} writable for root, or run irtmon as a non-root user"
        ) from err


def _prepare_dirs(settings: Settings, p: PgPaths) -> None:
    if _as_root():
        user = _os_user(settings)
        if p.root.parent == SYSTEM_ROOT:
            _make_system_root()
            new = not p.root.exists()
            p.root.mkdir(exist_ok=True)
            os.chmod(p.root, 0o700)
            if new or not p.state_record.exists():
                p.state_record.write_text(f"{settings.state_dir.resolve()}\n")
            if (settings.state_dir / PRIVATE_MARK).exists():
                p.private_record.touch()
        else:
            p.root.mkdir(parents=True, exist_ok=True)
        p.socket_dir.mkdir(exist_ok=True)
        for path in (p.root, p.socket_dir, *(x for x in [p.data] if x.exists())):
            shutil.chown(path, user.pw_uid, user.pw_gid)
        check = subprocess.run(
            ["runuser", "-u", settings.pg_os_user, "--", "test", "-w", str(p.root)],
            capture_output=True,
        )
        if check.returncode != 0:
            raise StackError(
                f"the PostgreSQL OS user {settings.pg_os_user!r} cannot reach {p.root}: a folder "
                "above it is closed to other users. This cluster was made by an earlier irtmon "
                "inside the state folder; stop it (irtmon stack down) and move it aside (mv "
                f"{p.root} {p.root}.old; the next start makes a new, empty cluster under "
                f"{SYSTEM_ROOT}), or let that user traverse the folders above (chmod o+x)"
            )
    else:
        p.root.mkdir(parents=True, exist_ok=True)
        p.socket_dir.mkdir(parents=True, exist_ok=True)


def prune_private() -> list[Path]:
    """Remove the system clusters of private stacks (tests, benchmarks) whose state folder is
    gone and whose server no longer runs; return the folders removed. Other clusters are never
    removed here."""
    removed: list[Path] = []
    if not _as_root() or not SYSTEM_ROOT.is_dir():
        return removed
    for root in SYSTEM_ROOT.iterdir():
        p = PgPaths(root)
        try:
            if not p.private_record.exists() or Path(p.state_record.read_text().strip()).exists():
                continue
        except OSError:
            continue
        if _postmaster_pid(p) is None:
            shutil.rmtree(root, ignore_errors=True)
            removed.append(root)
    return removed


def delete_cluster(settings: Settings) -> bool:
    """Stop the state folder's server if it runs and delete its cluster (all its data); True if
    there was one. For private stacks, whose data is thrown away with them."""
    stop(settings)
    root = paths(settings).root
    if not root.exists():
        return False
    shutil.rmtree(root)
    return True


def _postmaster_pid(p: PgPaths) -> int | None:
    try:
        pid = int((p.data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid_alive(pid, "postgres") else None


def running_pid(settings: Settings) -> int | None:
    """Pid of the local postmaster if it runs."""
    return _postmaster_pid(paths(settings))


def start(settings: Settings) -> int:
    """initdb on first use, start the server unless it runs, create the database."""
    p = paths(settings)
    prune_private()
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
        if timescaledb_library(settings) is not None:
            options += f" {TIMESCALEDB_OPTIONS}"
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
