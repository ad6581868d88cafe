"""Who may look, on the real app (AppTest) and a real PostgreSQL: sign-in throttling, the user
re-read on every run, the idle timeout, ``irtmon users disable``, cohort scope inside every
per-patient query, and the slide checks shown beside the immune signature.

Seeded lightly (story only, no image files): two cohorts, ``acc-a`` and ``acc-b``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from core import logins
from core.db import alerts, audit, connect, events, lesions, scores, users
from core.settings import Settings
from irtmon.seed import SeedSummary, seed_story, seed_users
from irtmon.stack.private import settings_env
from models.pathology.ood import OodScore, OodStatus
from models.pathology.stain import StainCheck, StainOutcome
from monitoring_app import auth, data
from schemas.results import FeatureSet
from tests.conftest import REPO

pytestmark = pytest.mark.integration

ENTRY = str(REPO / "monitoring_app" / "streamlit_app.py")
PASSWORD = "correct horse battery"
APP_ENV = {  # small numbers so the tests see the back-off and the idle timeout quickly
    "IRTMON_APP_LOGIN_FREE_ATTEMPTS": "2",
    "IRTMON_APP_LOGIN_BACKOFF_S": "120",
    "IRTMON_APP_IDLE_TIMEOUT_S": "20",
}


@dataclass
class Seeded:
    settings: Settings
    a: SeedSummary
    b: SeedSummary


def _lesion_rows(conn: psycopg.Connection, patient: str, source: uuid.UUID) -> None:
    """One tracked lesion and its assessment on ``source`` (the lesion family's tables)."""
    observed = conn.execute(
        "SELECT acquired_at FROM acquisitions WHERE event_id = %s", (source,)
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO lesion_measurements (source_event_id, tracking_uid, patient, observed_at, "
        "tracking_id, organ, role, status, match, long_axis_mm, short_axis_mm, volume_ml, "
        "in_field, origin, model_name, model_version) VALUES (%s, %s, %s, %s, 'L1', 'lung', "
        "'target', 'seen', 'baseline', 21.0, 14.0, 4.0, true, 'annotated', 'it', '1') "
        "ON CONFLICT DO NOTHING",
        (source, f"uid-{patient}", patient, observed),
    )
    conn.execute(
        "INSERT INTO lesion_assessments (source_event_id, patient, observed_at, timepoint, "
        "irecist_state, sum_diameters_mm, in_field_sum_mm, out_of_field_sum_mm, "
        "total_volume_ml, new_lesions, new_appeared, lesions_seen, lesions_not_evaluable, "
        "tracking_state, model_name, model_version) "
        "VALUES (%s, %s, %s, 0, 0, 21, 21, 0, 4, 0, 0, 1, 0, '{}', 'it', '1') "
        "ON CONFLICT DO NOTHING",
        (source, patient, observed),
    )
    scores.upsert_features(
        conn,
        source,
        patient,
        observed,
        FeatureSet("it-imaging", "1", {"x": 1.0}, {"dicom_outputs": {"seg": {"path": "/x"}}}),
    )


def _slide_features(conn: psycopg.Connection, patient: str, source: uuid.UUID) -> None:
    """The provenance the biopsy agent stores with a signature: one slide in distribution, one
    out of distribution and stained by immunohistochemistry (as models.pathology gives them)."""
    observed = conn.execute(
        "SELECT acquired_at FROM acquisitions WHERE event_id = %s", (source,)
    ).fetchone()[0]
    he = StainCheck(StainOutcome.HE, 0.0, 0.92, 40000, "eosin in 92 % of stained pixels")
    ihc = StainCheck(StainOutcome.NOT_HE, 0.55, 0.02, 40000, "brown DAB in 55 % of pixels")
    slides = [
        {
            "slide": "SL-OK",
            "stain": he.to_dict(),
            "ood": OodScore(OodStatus.IN_DISTRIBUTION, 4.1, 52.0, 0.0, 6.0, 40).to_dict(),
            "uncertainty_weight": 0.0,
        },
        {
            "slide": "SL-ODD",
            "stain": ihc.to_dict(),
            "ood": OodScore(OodStatus.OUT_OF_DISTRIBUTION, 19.3, 100.0, 1.0, 6.0, 40).to_dict(),
            "uncertainty_weight": 1.0,
        },
    ]
    scores.upsert_features(
        conn,
        source,
        patient,
        observed,
        FeatureSet("pathology-mil", "it-1", {"til_density": 10.0}, {"slides": slides}),
    )


@pytest.fixture(scope="module")
def seeded(settings: Settings) -> Iterator[Seeded]:
    with connect(settings) as conn:
        a = seed_story(
            conn, 2, seed=41, n_timepoints=3, cohorts=("acc-a",), key="acc-a-key-0123456789"
        )
        b = seed_story(
            conn, 2, seed=42, n_timepoints=3, cohorts=("acc-b",), key="acc-b-key-0123456789"
        )
        for summary in (a, b):
            for patient in summary.patients:
                acq = events.patient_acquisitions(conn, patient, cohorts=None)
                imaging = next(r for r in acq if r["kind"] == "imaging")
                _lesion_rows(conn, patient, imaging["event_id"])
                biopsy = next((r for r in acq if r["kind"] == "biopsy"), imaging)
                _slide_features(conn, patient, biopsy["event_id"])
        conn.commit()
    with connect(settings, autocommit=True) as conn:
        seed_users(
            conn,
            [
                ("acc-ann", "clinician", PASSWORD, ["acc-a"]),
                ("acc-bob", "clinician", PASSWORD, ["acc-a"]),
                ("acc-cat", "clinician", PASSWORD, ["acc-a"]),
                ("acc-dan", "clinician", PASSWORD, ["acc-a"]),
                ("acc-eve", "clinician", PASSWORD, ["acc-a"]),
            ],
        )
    keys = ("IRTMON_DATABASE_URL", "IRTMON_DATA_ROOTS", *APP_ENV)
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["IRTMON_DATABASE_URL"] = settings.dsn
    os.environ["IRTMON_DATA_ROOTS"] = f'["{settings.data_roots[0]}"]'
    os.environ.update(APP_ENV)
    data.settings.clear()  # the app server reads its settings once
    yield Seeded(settings, a, b)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    data.settings.clear()


def login(user: str, password: str = PASSWORD) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.run()
    return attempt(at, user, password)


def attempt(at: AppTest, user: str, password: str) -> AppTest:
    at.text_input(key="login_user").input(user)
    at.text_input(key="login_password").input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def patients_shown(at: AppTest) -> set[str]:
    return {p for d in at.dataframe if "Patient" in d.value.columns for p in d.value["Patient"]}


def signed_in(at: AppTest) -> bool:
    return any(b.key == "sign_out" for b in at.button)


def audit_rows(db: psycopg.Connection, user: str, action: str) -> list[dict]:
    rows = db.execute(
        "SELECT detail FROM audit_log WHERE entity = 'user' AND entity_id = %s AND action = %s "
        "ORDER BY id",
        (user, action),
    ).fetchall()
    return [r[0] for r in rows]


# ------------------------------------------------------------------------- throttling


def test_failed_sign_ins_make_the_user_wait_and_each_refusal_is_audited(
    seeded: Seeded, db: psycopg.Connection
) -> None:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.run()
    for _ in range(2):  # the free attempts
        attempt(at, "acc-bob", "wrong")
        assert [e.value for e in at.error] == ["Unknown user name or wrong password."]
    attempt(at, "acc-bob", PASSWORD)  # the right password, but too soon
    assert not signed_in(at)
    assert len(at.error) == 1 and "Too many failed sign-ins" in at.error[0].value, at.error
    throttled = audit_rows(db, "acc-bob", users.LOGIN_THROTTLED)
    assert len(throttled) == 1 and "2 failed sign-ins for this user name" in throttled[0]["reason"]
    assert 0 < throttled[0]["retry_after_s"] <= 120
    assert len(audit_rows(db, "acc-bob", users.LOGIN_FAILED)) == 2
    assert audit_rows(db, "acc-bob", "login") == []  # the password was not even checked
    # another user is not held up by bob's failures
    assert signed_in(login("acc-cat"))


def test_failures_from_one_address_throttle_every_user_name_from_it(
    seeded: Seeded, db: psycopg.Connection
) -> None:
    policy = logins.LoginPolicy(user_free=50, address_free=3, base_s=120.0, window_s=600.0)
    address = f"198.51.100.{uuid.uuid4().int % 250}"
    with psycopg.connect(seeded.settings.dsn, autocommit=True) as conn:
        for n in range(3):  # a guesser walking through user names
            assert logins.refusal(conn, f"guess-{n}", address, policy) is None
            users.record_login(conn, f"guess-{n}", "local", False, "unknown user", address)
        refused = logins.refusal(conn, "acc-ann", address, policy)
        assert isinstance(refused, logins.LoginThrottledError)
        assert "for this address" in str(refused) and refused.retry_after_s > 100
        row = conn.execute(
            "SELECT detail FROM audit_log WHERE action = 'login_throttled' "
            "AND entity_id = 'acc-ann' ORDER BY id DESC LIMIT 1"
        ).fetchone()
        assert row is not None and row[0]["address"] == address
        assert logins.refusal(conn, "acc-ann", "203.0.113.7", policy) is None  # elsewhere: fine


# ------------------------------------------------------------- re-read, idle, disable


def test_a_disabled_user_is_signed_out_at_the_next_interaction(
    seeded: Seeded, db: psycopg.Connection
) -> None:
    at = login("acc-dan")
    assert signed_in(at)
    env = settings_env(seeded.settings)
    result = subprocess.run(
        [sys.executable, "-m", "irtmon", "users", "disable", "acc-dan"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "disabled acc-dan" in result.stdout
    audited = db.execute(
        "SELECT actor FROM audit_log WHERE action = 'user_disable' AND entity_id = 'acc-dan'"
    ).fetchall()
    assert len(audited) == 1 and audited[0][0].startswith("cli:")
    at.run()  # the next interaction
    assert not signed_in(at)
    assert "disabled" in " ".join(e.value for e in at.error)
    assert audit_rows(db, "acc-dan", "logout")[-1]["reason"] == "account disabled"
    assert not signed_in(login("acc-dan"))  # and no new sign-in
    result = subprocess.run(
        [sys.executable, "-m", "irtmon", "users", "enable", "acc-dan"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "enabled acc-dan" in result.stdout
    assert signed_in(login("acc-dan"))
    unknown = subprocess.run(
        [sys.executable, "-m", "irtmon", "users", "disable", "acc-nobody"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert unknown.returncode == 1 and "no user named acc-nobody" in unknown.stderr


def test_a_changed_cohort_takes_effect_at_the_next_interaction(seeded: Seeded) -> None:
    at = login("acc-eve")
    at.switch_page("app_pages/cohort.py").run()
    shown = patients_shown(at)
    assert seeded.a.patients[0] in shown and seeded.b.patients[0] not in shown
    with psycopg.connect(seeded.settings.dsn, autocommit=True) as conn:
        users.save_user(conn, "acc-eve", "clinician", None, ["acc-b"], actor="test")
    at.run()
    assert signed_in(at)
    # the table keeps the date filter chosen on acc-a's scans, so count the cohort itself
    total = next(m.value for m in at.metric if m.label == "Patients shown").split(" / ")[1]
    assert int(total) == len(seeded.b.patients)
    assert not patients_shown(at) & set(seeded.a.patients)
    assert "Cohorts: acc-b" in [c.value for c in at.caption]


def test_an_idle_session_is_signed_out(seeded: Seeded, db: psycopg.Connection) -> None:
    at = login("acc-ann")
    assert signed_in(at)
    at.run()  # an interaction inside the timeout keeps the session
    assert signed_in(at)
    time.sleep(21)  # IRTMON_APP_IDLE_TIMEOUT_S=20
    at.run()
    assert not signed_in(at)
    assert "without activity" in " ".join(e.value for e in at.error)
    assert audit_rows(db, "acc-ann", "logout")[-1]["reason"] == "idle timeout"


# ------------------------------------------------------------------ scope in the queries

A_ONLY = ["acc-a"]


def _family_reads(conn: psycopg.Connection, patient: str, cohorts: list[str] | None) -> dict:
    """Every per-patient read of the core layer, by family, for one patient and scope."""
    acq = events.patient_acquisitions(conn, patient, cohorts=None)  # ids, read as the worker
    imaging = next(r["event_id"] for r in acq if r["kind"] == "imaging")
    return {
        "scores.patient_scores_with_source": scores.patient_scores_with_source(
            conn, patient, cohorts=cohorts
        ),
        "scores.patient_burden": scores.patient_burden(conn, patient, cohorts=cohorts),
        "scores.slide_checks": scores.slide_checks(conn, patient, cohorts=cohorts),
        "lesions.patient_lesions": lesions.patient_lesions(conn, patient, cohorts=cohorts),
        "lesions.patient_assessments": lesions.patient_assessments(conn, patient, cohorts=cohorts),
        "lesions.lesions_of_source": lesions.lesions_of_source(conn, imaging, cohorts=cohorts),
        "lesions.dicom_outputs": lesions.dicom_outputs(conn, imaging, cohorts=cohorts),
        "events.patient_treatments": events.patient_treatments(conn, patient, cohorts=cohorts),
        "events.patient_acquisitions": events.patient_acquisitions(conn, patient, cohorts=cohorts),
        "events.patient_info": events.patient_info(conn, patient, cohorts),
        "alerts.patient_alerts": alerts.patient_alerts(conn, patient, cohorts=cohorts),
        "audit.alert_actions": audit.alert_actions(conn, patient, cohorts=cohorts),
    }


def test_every_per_patient_query_returns_nothing_outside_the_users_cohorts(
    seeded: Seeded,
) -> None:
    with psycopg.connect(seeded.settings.dsn, autocommit=True) as conn:
        theirs = seeded.b.patients[0]
        conn.execute(  # an alert (the story may have raised none) and an action on it
            "INSERT INTO alerts (alert_id, patient, kind, probability, summary, recommendation, "
            "opened_at) VALUES (gen_random_uuid(), %s, 'confirmed_progression', 0.9, 's', 'r', "
            "now()) ON CONFLICT DO NOTHING",
            (theirs,),
        )
        alert_id = alerts.patient_alerts(conn, theirs, cohorts=None)[0]["alert_id"]
        audit.write(
            conn,
            actor="t",
            action="acknowledge",
            entity="alert",
            entity_id=str(alert_id),
            patient=theirs,
        )
        own = _family_reads(conn, theirs, ["acc-b"])
        admin = _family_reads(conn, theirs, None)
        stolen = _family_reads(conn, theirs, A_ONLY)
        empty_scope = _family_reads(conn, theirs, [])
    for family, rows in own.items():
        assert rows, f"{family}: the test needs a row of patient {theirs} to hide"
        assert admin[family] == rows, f"{family}: an admin (cohorts None) sees every cohort"
        assert not stolen[family], f"{family} returned {theirs} to a user of cohort acc-a"
        assert not empty_scope[family], f"{family} returned {theirs} to a user of no cohort"


def test_the_timeline_shows_the_slide_checks_beside_the_signature(seeded: Seeded) -> None:
    at = login("acc-cat")
    patient = seeded.a.patients[0]
    at.switch_page("app_pages/timeline.py")
    at.query_params["patient"] = patient
    at.run()
    assert not at.exception, at.exception
    assert "Immune signature: slide checks" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "Distribution" in d.value.columns)
    by_slide = table.set_index("Slide")
    assert by_slide.loc["SL-OK", "Distribution"] == "in distribution"
    assert by_slide.loc["SL-ODD", "Distribution"] == "OUT OF DISTRIBUTION: signature unreliable"
    assert by_slide.loc["SL-ODD", "Stain"] == "NOT H&E: signature unreliable"
    warnings = " ".join(w.value for w in at.warning)
    assert "SL-ODD" in warnings and "SL-OK" not in warnings


def test_the_oidc_login_refuses_an_unverified_email_before_any_lookup(
    seeded: Seeded, db: psycopg.Connection
) -> None:
    """The app's OIDC path reads the subject through auth.oidc_subject; with an unverified
    e-mail of a registered user it finds no user (checked on the real users table)."""
    with psycopg.connect(seeded.settings.dsn, autocommit=True) as conn:
        users.save_user(
            conn, "acc-sso", "clinician", None, ["acc-a"], oidc_subject="sso@hospital.org"
        )
        claims = {"email": "sso@hospital.org", "email_verified": False}
        with pytest.raises(auth.UnverifiedEmailError):
            auth.oidc_subject(claims)
        verified = {**claims, "email_verified": True}
        assert users.get_user_by_subject(conn, auth.oidc_subject(verified))["username"] == (
            "acc-sso"
        )
