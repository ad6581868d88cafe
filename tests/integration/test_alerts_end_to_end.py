"""End to end on the real broker and database: scores published one by one to
``scores.timepoint`` make a worker raise exactly one open alert for a non-responder, delivered
to a webhook receiver started here (HMAC-signed); a responder's scores raise none; a replay of
the same scores changes nothing."""

from __future__ import annotations

import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import psycopg
import pytest

from core.db import scores as queries
from core.delivery import verify
from core.publish import Publisher
from core.settings import Settings
from models.changepoint import DecisionConfig
from monitoring_app import ui
from schemas import TimepointScore, pseudonymise, score_event_id
from tests.integration.conftest import Workers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "webhook-secret-0123456789abcdef"
T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
DAYS = [0, 49, 98, 147]
# a dip, then growth past RECIST progression (+32 % over the nadir), not yet confirmed
NON_RESPONDER = {
    "tumour_sum_diameters_mm": [60, 50, 56, 66],
    "response_probability": [0.45, 0.5, 0.35, 0.2],
}
RESPONDER = {
    "tumour_sum_diameters_mm": [60, 48, 40, 36],
    "response_probability": [0.5, 0.6, 0.75, 0.8],
}


class Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict, dict]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), json.loads(body)))
        assert verify(body, SECRET, self.headers)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()


def scores(patient: str, series: dict[str, list[float]]) -> list[list[TimepointScore]]:
    """The scores of each timepoint, in time order."""
    out = []
    for i, day in enumerate(DAYS):
        src = uuid.uuid5(uuid.NAMESPACE_URL, f"{patient}/tp{i}")
        at = T0 + timedelta(days=day)
        out.append(
            [
                TimepointScore(
                    event_id=score_event_id(src, name, "e2e", "1"),
                    patient=patient,
                    occurred_at=at,
                    source_event_id=src,
                    score_name=name,
                    value=values[i],
                    model_name="e2e",
                    model_version="1",
                )
                for name, values in series.items()
            ]
        )
    return out


def alerts_of(settings: Settings, patient: str) -> list[tuple]:
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT alert_id, kind, status, probability, summary, updated_at FROM alerts "
            "WHERE patient = %s ORDER BY kind",
            (patient,),
        ).fetchall()


def stored(settings: Settings, patient: str) -> int:
    """Scores stored from the topic (not the iRECIST states the agent derives from them)."""
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM timepoint_scores WHERE patient = %s "
            "AND score_name <> 'irecist_state'",
            (patient,),
        ).fetchone()[0]


def irecist_shown(settings: Settings, patients: tuple[str, ...]) -> dict[str, str | None]:
    """The iRECIST state the app's cohort table shows for each patient."""
    with psycopg.connect(settings.dsn, autocommit=True) as conn:
        rows = queries.cohort_overview(conn, None)
    codes = {r["patient"]: r["irecist_code"] for r in rows if r["patient"] in patients}
    return {p: ui.irecist(codes.get(p)) for p in patients}


@pytest.mark.timeout(600)
def test_non_responder_alerted_once_responder_never_replay_idempotent(
    settings: Settings, workers: Workers, webhook: str
) -> None:
    key = "e2e-alert-key-0123456789abcdef"
    nr, r = pseudonymise(f"NR-{uuid.uuid4()}", key), pseudonymise(f"R-{uuid.uuid4()}", key)
    workers.start(
        alert_webhook_url=webhook,
        alert_webhook_secret=SECRET,
        alert_webhook_allow_http_loopback=True,  # the receiver is on this machine
        alert_delivery_interval_s=1,
    )
    nr_points, r_points = scores(nr, NON_RESPONDER), scores(r, RESPONDER)
    with Publisher(settings) as pub:
        for i, (a, b) in enumerate(zip(nr_points, r_points, strict=True)):
            pub.publish(a + b)  # one timepoint at a time, as scans arrive
            wait_for(
                lambda n=2 * (i + 1): stored(settings, nr) == n and stored(settings, r) == n,
                timeout=60,
                what=f"timepoint {i} stored",
            )

    wait_for(
        lambda: any(body["patient"] == nr for _, body in Receiver.received),
        timeout=60,
        what="the alert at the webhook",
    )
    open_alerts = [a for a in alerts_of(settings, nr) if a[2] == "open"]
    assert [a[1] for a in open_alerts] == ["suspected_non_response"], alerts_of(settings, nr)
    assert alerts_of(settings, r) == []
    alert_id, _, _, probability, summary, _ = open_alerts[0]
    assert probability >= DecisionConfig().threshold and "Suspected non-response" in summary
    delivered = [(h, b) for h, b in Receiver.received if b["patient"] == nr]
    assert {b["event_id"] for _, b in delivered} == {str(alert_id)}
    assert all(b["kind"] == "suspected_non_response" for _, b in delivered)
    assert not any(b["patient"] == r for _, b in Receiver.received)
    # the agent stored each follow-up's iRECIST state, and the app's cohort table shows it
    assert irecist_shown(settings, (nr, r)) == {nr: "iUPD", r: "iPR"}

    # a replay of every score changes nothing: no new alert, no update, no new delivery
    before = (alerts_of(settings, nr), len(Receiver.received))
    with Publisher(settings) as pub:
        pub.publish([s for tp in nr_points + r_points for s in tp])
    sentinel = pseudonymise(f"S-{uuid.uuid4()}", key)
    with Publisher(settings) as pub:
        pub.publish(scores(sentinel, RESPONDER)[0])
    wait_for(lambda: stored(settings, sentinel) == 2, timeout=60, what="the sentinel")
    time.sleep(3)  # two delivery rounds
    assert (alerts_of(settings, nr), len(Receiver.received)) == before
    assert alerts_of(settings, r) == []
