"""Faults on the real stack: the broker stopped and restarted, PostgreSQL down for 30 seconds,
the alert webhook failing and slow, the derived-image disk full. Each test ends with the
reconciliation of its own events: every accepted event has its rows exactly once, or a dead
letter, and nothing is left over (the counts are printed; run with -s to see them).

The session's stack is shared: each test restarts what it stopped, in a ``finally``.
"""

from __future__ import annotations

import time

import pytest
from pydantic import SecretStr

from irtmon.settings import Settings
from irtmon.stack import kafka, postgres
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


@pytest.mark.timeout(420)
def test_broker_stopped_and_restarted_during_a_replay(settings: Settings, workers: Workers) -> None:
    if not settings.local_kafka:
        pytest.skip("stops the local broker; IRTMON_KAFKA_BOOTSTRAP names an external one")
    patients = new_patients(PATIENTS, "broker")
    expected = PATIENTS * PER_PATIENT
    worker = workers.start()
    replay = PacedReplay(settings, replay_messages(patients), rate=60)
    replay.start()
    wait_for(lambda: treatments_of(settings, patients) >= 150, timeout=60, what="some progress")
    try:
        kafka.stop(settings)
        stopped_at = treatments_of(settings, patients)
        time.sleep(10)  # the replay keeps producing (buffered); the worker drains what it has
    finally:
        kafka.start(settings)
    print(f"[broker] rows when the broker stopped: {stopped_at} of {expected}")
    assert stopped_at < expected, "the broker must go down mid-replay"
    replay.finish()
    wait_for(lambda: treatments_of(settings, patients) == expected, timeout=180, what="every row")
    assert worker.poll() is None, "the worker must survive a broker restart"
    settle(
        settings,
        patients,
        messages=expected + PATIENTS * BAD_PER_PATIENT,
        processed=expected,
        dead_lettered=PATIENTS * BAD_PER_PATIENT,
        fault="broker",
    )


@pytest.mark.timeout(420)
def test_postgres_down_for_30_seconds_during_a_replay(settings: Settings, workers: Workers) -> None:
    if not settings.local_postgres:
        pytest.skip("stops the local PostgreSQL; IRTMON_DATABASE_URL names an external one")
    patients = new_patients(PATIENTS, "postgres")
    expected = PATIENTS * PER_PATIENT
    worker = workers.start()
    replay = PacedReplay(settings, replay_messages(patients), rate=60)
    replay.start()
    wait_for(lambda: treatments_of(settings, patients) >= 150, timeout=60, what="some progress")
    try:
        postgres.stop(settings)
        down_at = time.monotonic()
        time.sleep(30)
    finally:
        postgres.start(settings)
    stopped_at = treatments_of(settings, patients)
    print(
        f"[postgres] down for {time.monotonic() - down_at:.0f}s; rows right after the restart: "
        f"{stopped_at} of {expected}"
    )
    assert stopped_at < expected, "the database must go down mid-replay"
    replay.finish()
    wait_for(lambda: treatments_of(settings, patients) == expected, timeout=180, what="every row")
    assert worker.poll() is None, "the worker must ride out a 30-second database outage"
    assert (
        count(
            settings,
            "SELECT count(*) FROM dead_letters WHERE patient = ANY(%s) "
            "AND error_class <> 'InvalidEventError'",
            (patients,),
        )
        == 0
    ), "no good event may be dead-lettered because of the outage"
    settle(
        settings,
        patients,
        messages=expected + PATIENTS * BAD_PER_PATIENT,
        processed=expected,
        dead_lettered=PATIENTS * BAD_PER_PATIENT,
        fault="postgres",
    )


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

                from streams.delivery import verify

                body = self.rfile.read(int(self.headers["Content-Length"]))
                if not verify(body, secret, self.headers.get("X-Irtmon-Signature", "")):
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

    import psycopg

    from streams.publish import Publisher
    from tests.integration.test_alerts_end_to_end import NON_RESPONDER, scores

    secret = "fault-webhook-secret-0123456789"
    hook = FlakyWebhook(secret, slow_s=2.5)
    patients = new_patients(2, "webhook")
    since = datetime.now(UTC)
    try:
        workers.start(
            alert_webhook_url=hook.url,
            alert_webhook_secret=secret,
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
            scores_without_acquisitions=len(patients) * 8,  # published straight to the topic
        )
    finally:
        hook.close()
