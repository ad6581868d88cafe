"""Trust boundaries on the real stack: a worker never fetches from (nor writes to) a DICOMweb
server that is not the configured PACS, and nothing the stack prints or logs shows the
database password or the pseudonym key."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from core.publish import Publisher
from core.settings import Settings
from irtmon.stack import postgres
from schemas import DicomWebLocation, ImagingAcquired, Modality, pseudonymise
from tests.conftest import REPO
from tests.integration.conftest import Workers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DB_PASSWORD = "Db-Pa55word-not-to-be-seen-7f3a"
PSEUDONYM_KEY = "pseudonym-key-not-to-be-seen-91c2e"


class Elsewhere:
    """An HTTP server standing for a host the event names: it counts every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(f"GET {self.path}")
                self.send_response(404)
                self.end_headers()

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dicom-web"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere() -> Iterator[Elsewhere]:
    server = Elsewhere()
    yield server
    server.close()


def test_an_acquisition_on_another_host_is_dead_lettered_never_fetched(
    settings: Settings, workers: Workers, elsewhere: Elsewhere, tmp_path: Path
) -> None:
    workers.start(derived_dir=tmp_path / "derived", pacs_write_back=True)
    patient = pseudonymise(f"SSRF-{uuid.uuid4()}", "ssrf-test-key-0123456789")
    event = ImagingAcquired(
        patient=patient,
        occurred_at=datetime.now(UTC),
        modality=Modality.CT,
        study_uid="1.2.826.0.1.3680043.10.1407.999.1",
        series_uids=["1.2.826.0.1.3680043.10.1407.999.1.1"],
        location=DicomWebLocation(url=elsewhere.url),
    )
    with Publisher(settings) as publisher:
        publisher.publish([event])

    def reason() -> str | None:
        with psycopg.connect(settings.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT error_class, reason FROM dead_letters WHERE failed_event_id = %s",
                (event.event_id,),
            ).fetchone()
        return f"{row[0]}: {row[1]}" if row else None

    wait_for(lambda: reason() is not None, timeout=120, what="the event dead-lettered")
    text = reason() or ""
    assert text.startswith("UntrustedLocationError")
    assert elsewhere.url in text and "not a configured PACS" in text
    assert "IRTMON_PACS_ALLOWED_URLS" in text  # says what to change if it is one of ours
    assert elsewhere.requests == []  # never fetched from, never written to
    assert not (tmp_path / "derived" / "dicomweb").exists()
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        stored = conn.execute(
            "SELECT count(*) FROM acquisitions WHERE event_id = %s", (event.event_id,)
        ).fetchone()
    assert stored == (0,)
    assert all(p.poll() is None for p in workers.procs)  # and the worker goes on


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "irtmon", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result


def test_no_output_or_log_shows_the_database_password_or_the_pseudonym_key(
    settings: Settings, tmp_path: Path
) -> None:
    """`irtmon stack up | status | config` and `db migrate`, with a password in
    IRTMON_DATABASE_URL (and, second round, in IRTMON_DATABASE_PASSWORD_FILE) and a pseudonym
    key set: grep everything they print and every log of the stack."""
    import os

    if not settings.local_postgres:
        pytest.skip("points at the session's local server")
    dsn = settings.dsn  # postgresql://irtmon@127.0.0.1:PORT/DB (trust on loopback)
    with_password = dsn.replace("postgresql://irtmon@", f"postgresql://irtmon:{DB_PASSWORD}@")
    assert DB_PASSWORD in with_password
    secret_file = tmp_path / "db_password"
    secret_file.write_text(DB_PASSWORD)
    base = {k: v for k, v in os.environ.items() if not k.startswith("IRTMON_")}
    base.update(
        {
            "IRTMON_STATE_DIR": str(settings.state_dir),
            "IRTMON_CACHE_DIR": str(settings.cache_path),
            "IRTMON_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
            "IRTMON_PSEUDONYM_KEY": PSEUDONYM_KEY,
            "IRTMON_REFERENCE_MODELS": "false",  # the session's registry stays as it is
            "COLUMNS": "250",
        }
    )
    rounds = [
        {"IRTMON_DATABASE_URL": with_password},
        {"IRTMON_DATABASE_URL": dsn, "IRTMON_DATABASE_PASSWORD_FILE": str(secret_file)},
    ]
    printed = []
    for extra in rounds:
        env = {**base, **extra}
        for args in (
            ("stack", "up"),
            ("stack", "status"),
            ("stack", "status", "--json"),
            ("config",),
            ("db", "migrate"),
        ):
            result = _run(env, *args)
            printed.append((args, result.stdout + result.stderr))
    # it did show where the database is, without the password
    up = printed[0][1]
    assert "PostgreSQL: postgresql://irtmon:***@127.0.0.1:" in up
    config = printed[3][1]
    assert "IRTMON_DATABASE_URL" in config and "irtmon:***@127.0.0.1" in config
    assert "IRTMON_PSEUDONYM_KEY" in config
    # the stack's files: the state folder, and the PostgreSQL cluster's folder (as root under
    # /var/lib/irtmon/postgres, where the postgres user reaches it)
    roots = {Path(settings.state_dir), postgres.cluster_root(settings)}
    logs = [
        path
        for root in roots
        for path in root.rglob("*")
        if path.is_file()
        and (path.suffix in (".log", ".properties", ".json", ".conf") or "logs" in path.parts)
        and path.stat().st_size < 50_000_000
    ]
    assert any(p.name == "postgres.log" for p in logs) and any("kafka" in p.parts for p in logs)
    for secret in (DB_PASSWORD, PSEUDONYM_KEY):
        for args, text in printed:
            assert secret not in text, f"`irtmon {' '.join(args)}` printed a secret"
        for path in logs:
            assert secret.encode() not in path.read_bytes(), f"{path} holds a secret"
