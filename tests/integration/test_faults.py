"""Faults on the real stack: the broker stopped and restarted, PostgreSQL down for 30 seconds
(within the retry window) and down past the retry window (the worker stops and is restarted),
the alert webhook failing and slow, the derived-image disk full. Each test ends with the
reconciliation of its own events: every accepted event has its rows exactly once, or a dead
letter, and nothing is left over (the counts are printed; run with -s to see them).

The session's stack is shared: each test restarts what it stopped, in a ``finally``.
"""

from __future__ import annotations

import errno
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from core.settings import Settings
from irtmon.stack import kafka, postgres
from streams.agents._loop import EXIT_UNSETTLED
from tests.integration.conftest import Workers, wait_for
from tests.integration.faults import (
    PacedReplay,
    count,
    fractions,
    new_patients,
    settle,
    treatments_of,
    unreadable_version,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENTS, PER_PATIENT, BAD_PER_PATIENT = 12, 100, 1


def replay_messages(patients: list[str]) -> list[tuple[str, bytes, bytes]]:
    """Each patient's fractions in order, one unreadable event among them, interleaved."""
    per_patient = []
    for p in patients:
        messages = [
            ("treatment.events", e.key, e.to_json_bytes()) for e in fractions(p, PER_PATIENT)
        ]
        messages.insert(PER_PATIENT // 2, ("treatment.events", p.encode(), unreadable_version(p)))
        per_patient.append(messages)
    return [m for step in zip(*per_patient, strict=True) for m in step]


class Replay:
    """A worker and a paced replay of ``PATIENTS`` new patients' fractions (one unreadable event
    each), started and running: a test breaks something mid-replay, then finishes it."""

    def __init__(
        self, settings: Settings, workers: Workers, tag: str, **worker_settings: object
    ) -> None:
        self.settings = settings
        self.patients = new_patients(PATIENTS, tag)
        self.expected = PATIENTS * PER_PATIENT
        self.worker = workers.start(**worker_settings)
        self.replay = PacedReplay(settings, replay_messages(self.patients), rate=60)
        self.replay.start()
        wait_for(lambda: self.rows() >= 150, timeout=60, what="some progress")

    def rows(self) -> int:
        return treatments_of(self.settings, self.patients)

    def finish(self, worker_must: str) -> None:
        """Publish the rest, wait for every row, and check that the worker still runs."""
        self.replay.finish()
        wait_for(lambda: self.rows() == self.expected, timeout=180, what="every row")
        assert self.worker.poll() is None, worker_must

    def settle(self, fault: str) -> None:
        settle(
            self.settings,
            self.patients,
            messages=self.expected + PATIENTS * BAD_PER_PATIENT,
            processed=self.expected,
            dead_lettered=PATIENTS * BAD_PER_PATIENT,
            fault=fault,
        )


@pytest.mark.timeout(420)
def test_broker_stopped_and_restarted_during_a_replay(settings: Settings, workers: Workers) -> None:
    if not settings.local_kafka:
        pytest.skip("stops the local broker; IRTMON_KAFKA_BOOTSTRAP names an external one")
    replay = Replay(settings, workers, "broker")
    try:
        kafka.stop(settings)
        stopped_at = replay.rows()
        time.sleep(10)  # the replay keeps producing (buffered); the worker drains what it has
    finally:
        kafka.start(settings)
    print(f"[broker] rows when the broker stopped: {stopped_at} of {replay.expected}")
    assert stopped_at < replay.expected, "the broker must go down mid-replay"
    replay.finish("the worker must survive a broker restart")
    replay.settle("broker")


@pytest.mark.timeout(420)
def test_postgres_down_for_30_seconds_during_a_replay(settings: Settings, workers: Workers) -> None:
    if not settings.local_postgres:
        pytest.skip("stops the local PostgreSQL; IRTMON_DATABASE_URL names an external one")
    replay = Replay(settings, workers, "postgres")
    try:
        postgres.stop(settings)
        down_at = time.monotonic()
        time.sleep(30)
    finally:
        postgres.start(settings)
    stopped_at = replay.rows()
    print(
        f"[postgres] down for {time.monotonic() - down_at:.0f}s; rows right after the restart: "
        f"{stopped_at} of {replay.expected}"
    )
    assert stopped_at < replay.expected, "the database must go down mid-replay"
    replay.finish("the worker must ride out a 30-second database outage")
    assert valid_dead_letters(settings, replay.patients) == 0, (
        "no good event may be dead-lettered because of the outage"
    )
    replay.settle("postgres")


def valid_dead_letters(settings: Settings, patients: list[str]) -> int:
    """Dead letters of ``patients`` that are not the replay's unreadable events."""
    return count(
        settings,
        "SELECT count(*) FROM dead_letters WHERE patient = ANY(%s) "
        "AND error_class <> 'InvalidEventError'",
        (patients,),
    )


@pytest.mark.timeout(600)
def test_postgres_down_past_the_retry_window_stops_the_worker_and_loses_nothing(
    settings: Settings, workers: Workers
) -> None:
    """Issue #20: an outage longer than ``IRTMON_TRANSIENT_RETRY_S`` must not dead-letter the
    valid events in flight. The worker exits (70) without committing their offsets; once
    PostgreSQL is back, the restarted worker (its supervisor's job, the test's here) consumes
    them again, and reconciliation finds every one of the 1,212 events exactly once."""
    if not settings.local_postgres:
        pytest.skip("stops the local PostgreSQL; IRTMON_DATABASE_URL names an external one")
    window = 8
    replay = Replay(settings, workers, "outage", transient_retry_s=window)
    assert replay.expected + PATIENTS * BAD_PER_PATIENT >= 1_000
    try:
        down_at = time.monotonic()  # before the stop: the server refuses while it shuts down
        postgres.stop(settings)
        wait_for(
            lambda: replay.worker.poll() is not None,
            timeout=window + 90,
            what="the worker stopping once the outage outlasted its retry window",
        )
        stopped_after = time.monotonic() - down_at
        time.sleep(5)  # the database stays down a while after the worker stopped
    finally:
        postgres.start(settings)
    log = replay.worker.log_path.read_text(errors="replace")
    print(
        f"[outage] database down {time.monotonic() - down_at:.0f}s (window {window}s); worker "
        f"exited {replay.worker.returncode} after {stopped_after:.0f}s"
    )
    assert stopped_after > window, "the worker must ride out the window before it stops"
    assert replay.worker.returncode == EXIT_UNSETTLED, log[-3000:]
    assert "could not be settled" in log
    restarted_at = replay.rows()
    assert 0 <= restarted_at < replay.expected, "the database must go down mid-replay"
    replay.worker = workers.start(transient_retry_s=window)  # as its supervisor would
    replay.finish("the restarted worker must keep running")
    assert valid_dead_letters(settings, replay.patients) == 0, (
        "no valid event may be dead-lettered because of the outage"
    )
    replay.settle("outage")


class FlakyWebhook:
    """A local alert receiver whose behaviour the test switches: ``fail`` (HTTP 500), ``slow``
    (answers after the sender's time-out) or ``ok`` (204). It keeps every POST it read."""

    def __init__(self, secret: str, slow_s: float) -> None:
        import http.server
        import threading

        self.mode = "fail"
        self.posts: list[tuple[str, str, dict]] = []  # (mode, delivery id, alert)
        self.bad_signatures = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                import json

                from core.delivery import verify

                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not verify(body, secret, self.headers):
                    outer.bad_signatures += 1
                mode = outer.mode
                outer.posts.append((mode, self.headers["X-Irtmon-Delivery"], json.loads(body)))
                if mode == "slow":
                    time.sleep(slow_s)
                try:
                    self.send_response(500 if mode == "fail" else 204)
                    self.end_headers()
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def of(self, patients: list[str], mode: str | None = None) -> list[str]:
        return [d for m, d, a in self.posts if a["patient"] in patients and mode in (None, m)]

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.timeout(420)
def test_failing_then_slow_webhook_delivers_every_alert_once_it_recovers(
    settings: Settings, workers: Workers
) -> None:
    from datetime import UTC, datetime

    from core.publish import Publisher
    from tests.integration.test_alerts_end_to_end import NON_RESPONDER, scores

    secret = "fault-webhook-secret-0123456789"
    hook = FlakyWebhook(secret, slow_s=2.5)
    patients = new_patients(2, "webhook")
    since = datetime.now(UTC)
    try:
        workers.start(
            alert_webhook_url=hook.url,
            alert_webhook_secret=secret,
            alert_webhook_allow_http_loopback=True,  # the receiver is on this machine
            alert_webhook_timeout_s=1,
            alert_delivery_interval_s=1,
            alert_retry_after_s=1,
            alert_delivery_since=since.isoformat(),
        )
        with Publisher(settings) as pub:
            for points in zip(*(scores(p, NON_RESPONDER) for p in patients), strict=True):
                pub.publish([s for tp in points for s in tp])  # one timepoint at a time
                time.sleep(1)

        def changes() -> dict[str, str]:
            """Alert changes of these patients in the outbox: delivery id -> action."""
            with psycopg.connect(settings.dsn, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT id, action FROM audit_log WHERE entity = 'alert' AND detail ? 'alert' "
                    "AND patient = ANY(%s)",
                    (patients,),
                ).fetchall()
            return {f"{i}/webhook": action for i, action in rows}

        def receipts(action: str) -> int:
            return count(
                settings,
                "SELECT count(*) FROM audit_log WHERE entity = 'alert_delivery' "
                "AND action = %s AND entity_id = ANY(%s)",
                (action, list(changes())),
            )

        wait_for(lambda: len(changes()) >= len(patients), timeout=90, what="an alert each")
        wait_for(
            lambda: receipts("delivery.failed") >= 2, timeout=90, what="two failed rounds (500)"
        )
        hook.mode = "slow"
        wait_for(
            lambda: len(hook.of(patients, "slow")) >= len(patients),
            timeout=90,
            what="deliveries timing out",
        )
        hook.mode = "ok"
        expected = changes()
        wait_for(
            lambda: receipts("delivery.sent") == len(expected), timeout=90, what="every delivery"
        )
        time.sleep(3)  # three more rounds: nothing is sent twice once acknowledged
        accepted = hook.of(patients, "ok")
        failed, timed_out = hook.of(patients, "fail"), hook.of(patients, "slow")
        sent, failures = receipts("delivery.sent"), receipts("delivery.failed")
        print(
            f"[webhook] {len(expected)} alert changes; POSTs: {len(failed)} answered 500, "
            f"{len(timed_out)} timed out (the receiver got them late), {len(accepted)} accepted; "
            f"receipts: {failures} failed rounds, {sent} sent; distinct deliveries at the "
            f"receiver: {len(set(hook.of(patients)))}"
        )
        assert len(expected) >= len(patients)
        assert sorted(accepted) == sorted(expected), "each change accepted exactly once"
        assert sent == len(expected), "one sent receipt per change"
        # every POST belongs to a recorded send (up to 4 attempts each: the sink's own retries)
        assert len(failed) + len(timed_out) + len(accepted) <= 4 * (failures + sent)
        assert set(hook.of(patients)) == set(expected), "nothing lost, nothing unknown"
        assert hook.bad_signatures == 0
        assert all(p.poll() is None for p in workers.procs)
        with_hook = settings.model_copy(  # so that reconcile counts undelivered changes too
            update={
                "alert_webhook_url": hook.url,
                "alert_webhook_secret": SecretStr(secret),
                "alert_webhook_allow_http_loopback": True,
                "alert_delivery_since": since,
            }
        )
        settle(
            with_hook,
            patients,
            messages=0,
            processed=0,
            dead_lettered=0,
            fault="webhook",
            # published straight to the topic: 4 timepoints x 2 scores, and the iRECIST
            # states of the 3 follow-ups the change-point agent stores from them
            scores_without_acquisitions=len(patients) * (8 + 3),
        )
    finally:
        hook.close()


class SmallDisk:
    """A 4 MiB tmpfs mounted for the test (needs root), which the test fills and frees."""

    def __init__(self, path: Path) -> None:
        import subprocess

        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs here (needs root): {result.stderr.strip()}")
        self.path = path

    def fill(self) -> None:
        with open(self.path / "filler", "ab") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError as err:
                assert err.errno == errno.ENOSPC

    def free(self) -> None:
        (self.path / "filler").unlink()

    def unmount(self) -> None:
        import subprocess

        subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.mark.timeout(600)
def test_full_disk_retried_then_stops_the_worker_and_loses_nothing(
    settings: Settings, workers: Workers, cohort: Path, pathology_model: Path, stack_dir: Path
) -> None:
    from clinic import load_events
    from core.publish import Publisher
    from schemas import BiopsyAcquired

    template = next(e for e in load_events(cohort) if isinstance(e, BiopsyAcquired))
    patients = new_patients(2, "disk")
    first, second = (
        template.model_copy(update={"event_id": uuid.uuid4(), "patient": p}) for p in patients
    )
    disk = SmallDisk(stack_dir / f"derived-{uuid.uuid4().hex[:8]}")
    retry_window = 15

    def status(event: BiopsyAcquired) -> str | None:
        rows = count(
            settings,
            "SELECT count(*) FROM acquisitions WHERE event_id = %s AND status = 'scored'",
            (event.event_id,),
        )
        return "scored" if rows else None

    try:
        disk.fill()
        worker = workers.start(derived_dir=disk.path, transient_retry_s=retry_window)
        # 1. the disk is full for a few seconds, then freed: retried, then scored once
        with Publisher(settings) as pub:
            pub.publish([first])
        wait_for(
            lambda: "No space left on device" in worker.log_path.read_text(errors="replace"),
            timeout=120,
            what="a retried write to the full disk",
        )
        assert status(first) is None
        disk.free()
        wait_for(lambda: status(first) == "scored", timeout=120, what="the first biopsy scored")

        # 2. the disk stays full past the retry window: an outage, not a fault of the event;
        #    the worker stops without acknowledging it (exit 70) and dead-letters nothing
        disk.fill()
        with Publisher(settings) as pub:
            pub.publish([second])
        wait_for(
            lambda: worker.poll() is not None,
            timeout=retry_window + 120,
            what="the worker stopping on the full disk",
        )
        log = worker.log_path.read_text(errors="replace")
        print(f"[disk] worker exit status {worker.returncode}")
        assert worker.returncode == EXIT_UNSETTLED, log[-3000:]
        assert "No space left on device" in log and "disk full" in log
        assert str(disk.path) in log, "the log names where the disk is full"
        assert (
            count(
                settings,
                "SELECT count(*) FROM dead_letters WHERE patient = ANY(%s)",
                (patients,),
            )
            == 0
        ), "a valid event must not be dead-lettered because a disk is full"
        assert status(second) is None
        leftovers = [p.name for p in disk.path.rglob("*") if p.is_file() and p.name != "filler"]
        assert all(name.endswith(".attention.png") for name in leftovers), leftovers
        assert not any(str(second.event_id) in name for name in leftovers)

        # 3. space freed, the worker restarted (as its supervisor would): scored once, from
        #    the offset that was never committed, without publishing anything again
        disk.free()
        worker = workers.start(derived_dir=disk.path, transient_retry_s=retry_window)
        wait_for(lambda: status(second) == "scored", timeout=120, what="the second biopsy scored")
        heatmaps = sorted(disk.path.rglob("*.attention.png"))
        assert len(heatmaps) == 2 * len([s for s in template.slides if s.stain == "H&E"]), heatmaps
        assert all(h.read_bytes().startswith(b"\x89PNG") for h in heatmaps)
        assert worker.poll() is None
        scores = count(
            settings, "SELECT count(*) FROM timepoint_scores WHERE patient = ANY(%s)", (patients,)
        )
        print(f"[disk] scores stored: {scores} (4 per biopsy)")
        assert scores == 8
        settle(settings, patients, messages=2, processed=2, dead_lettered=0, fault="disk full")
    finally:
        workers.stop_all()
        disk.unmount()
