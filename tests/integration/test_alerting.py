"""Alerting on the real PostgreSQL server: evaluate, idempotence, lifecycle, outbox delivery."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from core import alerts as alerting
from core import delivery
from core.db import connect, events, history
from core.db import scores as sinks
from core.settings import Settings
from schemas import Alert, AlertKind, AlertStatus, TimepointScore, pseudonymise
from schemas.results import Measurement

pytestmark = pytest.mark.integration

T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)
DAYS = [0, 49, 98, 147, 196]
# two lesions; sums 60, 50, 56, 66, 78 mm: a dip, then growth (iUPD at 66, iCPD at 78)
LESIONS = [(36, 24), (30, 20), (33, 23), (39, 27), (46, 32)]
RESPONSE = [0.45, 0.5, 0.35, 0.2, 0.1]


def new_patient() -> str:
    return pseudonymise(str(uuid.uuid4()), "integration-test-key-0123456789")


def acquisition(patient: str, i: int) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{patient}/{i}")


def store_timepoint(conn: psycopg.Connection, patient: str, i: int, measurements: bool = True):
    at = T0 + timedelta(days=DAYS[i])
    src = acquisition(patient, i)
    events.upsert_patient(conn, patient, at)
    if measurements:
        for j, d in enumerate(LESIONS[i]):
            m = Measurement(
                lesion_id=f"L{j}",
                volume_ml=(d / 10) ** 3 * 0.5,
                longest_diameter_mm=float(d),
                mask_source="propagated",
                registration_quality=0.9,
                series_uid=None,
                model_name="burden",
                model_version="1.0",
            )
            sinks.upsert_measurement(conn, src, patient, at, m)
    else:
        sinks.upsert_score(
            conn, score(patient, src, at, "tumour_sum_diameters_mm", sum(LESIONS[i]))
        )
    sinks.upsert_score(conn, score(patient, src, at, "response_probability", RESPONSE[i]))
    sinks.upsert_score(conn, score(patient, src, at, "ct_immune_score", -0.3))


def score(patient: str, src: uuid.UUID, at: datetime, name: str, value: float) -> TimepointScore:
    from schemas import score_event_id

    return TimepointScore(
        event_id=score_event_id(src, name, "m", "1"),
        patient=patient,
        occurred_at=at,
        source_event_id=src,
        score_name=name,
        value=value,
        model_name="m",
        model_version="1",
    )


def alerts_of(conn: psycopg.Connection, patient: str) -> list[tuple]:
    return conn.execute(
        "SELECT alert_id, kind, status, probability FROM alerts WHERE patient = %s ORDER BY kind",
        (patient,),
    ).fetchall()


def irecist_of(conn: psycopg.Connection, patient: str) -> list[tuple]:
    return conn.execute(
        "SELECT source_event_id, observed_at, value FROM timepoint_scores "
        "WHERE patient = %s AND score_name = 'irecist_state' ORDER BY observed_at",
        (patient,),
    ).fetchall()


def audit_of(conn: psycopg.Connection, patient: str) -> list[tuple]:
    return conn.execute(
        "SELECT actor, action, entity_id FROM audit_log WHERE patient = %s AND entity = 'alert' "
        "ORDER BY id",
        (patient,),
    ).fetchall()


def test_series_is_read_from_measurements(db: psycopg.Connection) -> None:
    p = new_patient()
    for i in range(5):
        store_timepoint(db, p, i)
    s = history.load_series(db, p)
    assert s is not None
    assert list(s.sum_diameters_mm) == [60, 50, 56, 66, 78]
    assert s.volume_ml is not None
    assert list(s.response_probability) == RESPONSE
    assert s.model_versions["tumour_measurements"] == "burden/1.0"


def test_series_falls_back_to_a_burden_score(db: psycopg.Connection) -> None:
    p = new_patient()
    for i in range(5):
        store_timepoint(db, p, i, measurements=False)
    s = history.load_series(db, p)
    assert s is not None and list(s.sum_diameters_mm) == [60, 50, 56, 66, 78]
    assert alerting.evaluate(db, p, now=T0 + timedelta(days=200))


def test_evaluate_opens_alerts_and_a_replay_changes_nothing(db: psycopg.Connection) -> None:
    p = new_patient()
    for i in range(5):
        store_timepoint(db, p, i)
    now = T0 + timedelta(days=200)
    opened = alerting.evaluate(db, p, now=now)
    kinds = {a.kind for a in opened}
    assert kinds == {AlertKind.SUSPECTED_NON_RESPONSE, AlertKind.CONFIRMED_PROGRESSION}
    for a in opened:
        assert isinstance(a, Alert) and a.status is AlertStatus.OPEN and a.patient == p
        assert a.change_at is not None
        assert a.event_id == alerting.alert_id(p, a.kind, a.change_at)
        assert "consider adaptive" in a.recommendation or "iRECIST" in a.recommendation
        assert a.model_versions["decision_rule"].startswith("irtmon-changepoint/")
        # the summary is for the treating team: plain words, no model ids (those are stored
        # and shown on their own line)
        assert "chance of response" in a.summary and "probability of non-response" in a.summary
        assert "iRECIST state iCPD (confirmed progression)" in a.summary
        assert "irtmon-changepoint" not in a.summary and "Models:" not in a.summary
    rows, audit = alerts_of(db, p), audit_of(db, p)
    assert len(rows) == 2 and len(audit) == 2
    # the iRECIST state of every follow-up is stored for the app: iSD, iSD, iUPD, iCPD
    states = irecist_of(db, p)
    assert states == [
        (acquisition(p, i), T0 + timedelta(days=DAYS[i]), c)
        for i, c in zip(range(1, 5), (2.0, 2.0, 3.0, 4.0), strict=True)
    ]
    # replaying the same scores (and evaluating again) changes nothing
    for i in range(5):
        store_timepoint(db, p, i)
    assert alerting.evaluate(db, p, now=now + timedelta(hours=1)) == []
    assert alerts_of(db, p) == rows and audit_of(db, p) == audit
    assert irecist_of(db, p) == states


def test_irecist_states_follow_the_series_as_scans_arrive(db: psycopg.Connection) -> None:
    """Stored per assessment as each scan is evaluated; a scan arriving late (out of order)
    re-derives the states after it in place."""
    p = new_patient()
    for i in (0, 1, 2, 4):
        store_timepoint(db, p, i)
        alerting.evaluate(db, p, now=T0 + timedelta(days=DAYS[i], hours=1))
    # without the 66 mm scan, 78 mm is the first progression: iUPD
    assert [c for *_, c in irecist_of(db, p)] == [2.0, 2.0, 3.0]
    store_timepoint(db, p, 3)
    alerting.evaluate(db, p, now=T0 + timedelta(days=200))
    assert [c for *_, c in irecist_of(db, p)] == [2.0, 2.0, 3.0, 4.0]
    names = db.execute(
        "SELECT DISTINCT model_name || '/' || model_version FROM timepoint_scores "
        "WHERE patient = %s AND score_name = 'irecist_state'",
        (p,),
    ).fetchall()
    assert names == [(f"{alerting.RULE_NAME}/{alerting.RULE_VERSION}",)]


def test_incremental_evaluation_updates_instead_of_duplicating(db: psycopg.Connection) -> None:
    p = new_patient()
    seen: dict[AlertKind, uuid.UUID] = {}
    for i in range(5):
        store_timepoint(db, p, i)
        for a in alerting.evaluate(db, p, now=T0 + timedelta(days=DAYS[i], hours=1)):
            assert seen.setdefault(a.kind, a.event_id) == a.event_id
    rows = alerts_of(db, p)
    assert len(rows) == len(seen) >= 1
    active = db.execute(
        "SELECT kind, count(*) FROM alerts WHERE patient = %s AND status IN "
        "('open', 'acknowledged') GROUP BY kind",
        (p,),
    ).fetchall()
    assert all(n == 1 for _, n in active)


def test_lifecycle_is_audited_and_a_dismissal_sticks(db: psycopg.Connection) -> None:
    p = new_patient()
    for i in range(5):
        store_timepoint(db, p, i)
    opened = {a.kind: a for a in alerting.evaluate(db, p, now=T0 + timedelta(days=200))}
    sus = opened[AlertKind.SUSPECTED_NON_RESPONSE]
    cpd = opened[AlertKind.CONFIRMED_PROGRESSION]
    ack = alerting.acknowledge(db, sus.event_id, "dr.kim", note="reviewing")
    assert ack.status is AlertStatus.ACKNOWLEDGED
    with pytest.raises(ValueError, match="acknowledged"):
        alerting.acknowledge(db, sus.event_id, "dr.kim")
    with pytest.raises(ValueError, match="reason"):
        alerting.dismiss(db, sus.event_id, "dr.kim", " ")
    dismissed = alerting.dismiss(db, sus.event_id, "dr.kim", "pseudo-progression on biopsy")
    assert dismissed.status is AlertStatus.DISMISSED
    resolved = alerting.resolve(db, cpd.event_id, "dr.lee", reason="treatment changed")
    assert resolved.status is AlertStatus.RESOLVED
    with pytest.raises(ValueError, match="resolved"):
        alerting.dismiss(db, cpd.event_id, "dr.lee", "late")
    with pytest.raises(LookupError):
        alerting.resolve(db, uuid.uuid4(), "dr.lee")
    row = db.execute(
        "SELECT status, acknowledged_by, closed_by, close_reason, closed_at IS NOT NULL "
        "FROM alerts WHERE alert_id = %s",
        (sus.event_id,),
    ).fetchone()
    assert row == ("dismissed", "dr.kim", "dr.kim", "pseudo-progression on biopsy", True)
    actions = [(actor, action) for actor, action, _ in audit_of(db, p)]
    assert ("dr.kim", "alert.acknowledged") in actions
    assert ("dr.kim", "alert.dismissed") in actions
    assert ("dr.lee", "alert.resolved") in actions
    # the same change is not alerted again
    assert alerting.evaluate(db, p, now=T0 + timedelta(days=201)) == []
    # and the audit log stays append-only
    with pytest.raises(psycopg.errors.RaiseException):
        db.execute("DELETE FROM audit_log WHERE patient = %s", (p,))


class FlakySink:
    name = "webhook"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[tuple[Alert, str, str]] = []

    def send(self, alert: Alert, delivery_id: str, action: str) -> None:
        if self.failures:
            self.failures -= 1
            raise delivery.DeliveryError("receiver down")
        self.sent.append((alert, delivery_id, action))


def test_outbox_retries_failed_deliveries_and_never_loses_them(settings: Settings) -> None:
    p = new_patient()
    start = datetime.now(UTC)
    with connect(settings) as conn:
        for i in range(5):
            store_timepoint(conn, p, i)
        alerting.evaluate(conn, p, now=start)
        conn.commit()
        cfg = delivery.DeliveryConfig(not_before=start - timedelta(seconds=1), retry_after_s=60)
        sink = FlakySink(failures=1)
        first = [o for o in delivery.deliver_pending(conn, [sink], cfg, now=start)]
        mine = [o for o in first if not o.ok]
        assert len(mine) == 1 and "receiver down" in (mine[0].error or "")
        # within the back-off nothing is retried for the failed row
        failed_id = mine[0].audit_id
        again = delivery.deliver_pending(conn, [sink], cfg, now=start + timedelta(seconds=5))
        assert all(o.audit_id != failed_id for o in again)
        later = delivery.deliver_pending(conn, [sink], cfg, now=start + timedelta(seconds=120))
        assert any(o.audit_id == failed_id and o.ok for o in later)
        patients = {a.patient for a, _, _ in sink.sent}
        assert p in patients
        assert len([a for a, _, _ in sink.sent if a.patient == p]) == 2
        assert delivery.deliver_pending(conn, [sink], cfg, now=start + timedelta(hours=1)) == []
        receipts = conn.execute(
            "SELECT action, count(*) FROM audit_log WHERE entity = 'alert_delivery' "
            "AND patient = %s GROUP BY action ORDER BY action",
            (p,),
        ).fetchall()
        assert receipts == [("delivery.failed", 1), ("delivery.sent", 2)]


def alerts_on_topic(settings: Settings, patient: str) -> list[tuple[str, str]]:
    """(action, delivery id) of every record of ``patient`` on the ``alerts`` topic."""
    from kafka import KafkaConsumer, TopicPartition

    from schemas.topics import ALERTS

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        **settings.kafka_client_config(),
    )
    tps = [TopicPartition(ALERTS.name, p) for p in range(ALERTS.partitions)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out = []
    for record in consumer:
        if Alert.model_validate_json(record.value).patient == patient:
            headers = dict(record.headers)
            out.append((headers["irtmon-action"].decode(), headers["irtmon-delivery"].decode()))
    consumer.close()
    return out


def test_an_alert_committed_while_the_broker_is_away_is_published_by_the_outbox(
    settings: Settings,
) -> None:
    """Issue #20: "if publishing an alert fails after its commit, a replayed evaluation returns
    nothing and the alert never reaches ``alerts``". The alert's change sits in the outbox
    (``audit_log``) from its commit; the ``alerts`` topic sink fails (no broker at its
    address), and a later round with the broker back publishes it, once."""
    from core.publish import Publisher
    from irtmon.stack.private import free_port

    p = new_patient()
    start = datetime.now(UTC)
    cfg = delivery.DeliveryConfig(not_before=start - timedelta(seconds=1), retry_after_s=1)
    with connect(settings) as conn:
        for i in range(5):
            store_timepoint(conn, p, i)
        opened = alerting.evaluate(conn, p, now=start)
        conn.commit()
        assert opened, "the series must open an alert"
        assert alerting.evaluate(conn, p, now=start) == []  # a replay changes nothing
        conn.commit()

        away = settings.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
        down = delivery.TopicSink(
            connect=lambda: Publisher(away, client_id="alerts-down"), timeout_s=5
        )
        failed = [o for o in delivery.deliver_pending(conn, [down], cfg, now=start) if not o.ok]
        assert failed, "the topic sink must fail while no broker answers"
        assert alerts_on_topic(settings, p) == []

        up = delivery.TopicSink(connect=lambda: Publisher(settings), timeout_s=30)
        later = start + timedelta(minutes=5)
        try:
            sent = delivery.deliver_pending(conn, [up], cfg, now=later)
            assert delivery.deliver_pending(conn, [up], cfg, now=later + timedelta(hours=1)) == []
        finally:
            up.close()
        mine = {o.audit_id for o in sent if o.ok} & {o.audit_id for o in failed}
        assert mine, "the change that failed is delivered by the outbox"
        changes = len(audit_of(conn, p))
    published = alerts_on_topic(settings, p)
    assert len(published) == changes >= len(opened), published
    assert all(action.startswith("alert.") for action, _ in published)
    assert len({d for _, d in published}) == len(published)  # each change once
