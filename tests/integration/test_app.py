"""The monitoring app's pages (Streamlit AppTest) on a database seeded by the virtual clinic."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from core.db import connect
from core.settings import Settings
from irtmon.seed import SeedSummary, seed_cohort, seed_story, seed_users
from monitoring_app import data
from schemas.enums import IRecistState
from tests.conftest import REPO

pytestmark = pytest.mark.integration

ENTRY = str(REPO / "monitoring_app" / "streamlit_app.py")
PASSWORD = "correct horse battery"


@dataclass
class Seeded:
    settings: Settings
    clinic: SeedSummary  # cohort "app-clinic": real DICOM and slides
    other: SeedSummary  # cohort "app-other": story only
    lesions: SeedSummary  # cohort "app-lesions": story v2, every lesion, real DICOM


@pytest.fixture(scope="module")
def seeded(app_settings: Settings, cohort: Path, cohort_v2: Path) -> Iterator[Seeded]:
    """The clinic's cohorts seeded into the app tests' own database (``app_settings``), where
    no worker writes."""
    settings = app_settings
    with connect(settings) as conn:
        clinic = seed_cohort(conn, cohort, cohorts=("app-clinic",))
        lesions = seed_cohort(conn, cohort_v2, cohorts=("app-lesions",))
        other = seed_story(
            conn,
            4,
            seed=23,
            n_timepoints=4,
            cohorts=("app-other",),
            key="app-test-other-key-0123456789",
        )
    with connect(settings, autocommit=True) as conn:
        seed_users(
            conn,
            [
                ("app-alice", "clinician", PASSWORD, ["app-clinic"]),
                ("app-rob", "researcher", PASSWORD, ["app-clinic"]),
                ("app-root", "admin", PASSWORD, []),
                ("app-lena", "clinician", PASSWORD, ["app-lesions"]),
            ],
        )
    saved = {k: os.environ.get(k) for k in ("IRTMON_DATABASE_URL", "IRTMON_DATA_ROOTS")}
    os.environ["IRTMON_DATABASE_URL"] = settings.dsn
    os.environ["IRTMON_DATA_ROOTS"] = f'["{settings.data_roots[0]}"]'
    data.settings.clear()  # the app server reads its settings once
    yield Seeded(settings, clinic, other, lesions)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    data.settings.clear()


@pytest.fixture
def db(seeded: Seeded) -> Iterator[psycopg.Connection]:
    """A connection to the seeded database (not the stack's, which the conftest's ``db``
    gives)."""
    with connect(seeded.settings) as conn:
        yield conn
        conn.rollback()


def login(user: str, password: str = PASSWORD) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.run()
    at.text_input(key="login_user").input(user)
    at.text_input(key="login_password").input(password)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [t.value for t in at.title] + [str(m.value) for m in at.metric]
    return "\n".join(parts)


def test_logged_out_session_sees_only_the_login(seeded: Seeded) -> None:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.run()
    assert not at.exception
    assert [t.value for t in at.title] == ["irtmon"]
    assert len(at.dataframe) == 0 and len(at.metric) == 0
    assert not [b for b in at.button if b.key == "sign_out"]
    assert "psn-" not in texts(at)


def test_wrong_password_is_refused_and_audited(seeded: Seeded, db: psycopg.Connection) -> None:
    at = login("app-alice", "not the password")
    assert [e.value for e in at.error] == ["Unknown user name or wrong password."]
    assert [t.value for t in at.title] == ["irtmon"]
    row = db.execute(
        "SELECT detail->>'reason' FROM audit_log WHERE actor = 'app-alice' "
        "AND action = 'login_failed' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row == ("wrong password",)


def test_cohort_page_shows_the_clinicians_patients(seeded: Seeded, db: psycopg.Connection) -> None:
    before = db.execute(
        "SELECT count(*) FROM audit_log WHERE actor = 'app-alice' AND action = 'login'"
    ).fetchone()[0]
    at = login("app-alice")
    assert [t.value for t in at.title] == ["Cohort"]
    table = at.dataframe[0].value
    assert set(table["Patient"]) == set(seeded.clinic.patients)  # not app-other's
    for psn, p in seeded.clinic.latest_probability.items():
        row = table[table["Patient"] == psn].iloc[0]
        assert row["P(response)"] == pytest.approx(p)
        assert row["Open alerts"] + row["Ack'd"] == len(seeded.clinic.alerts.get(psn, []))
        assert row["iRECIST"] in {"iCR", "iPR", "iSD", "iUPD", "iCPD", "—"}
        assert len(row["Trend"]) >= 1
    risk = list(table["P(response)"])
    assert risk[: sum(table["Open alerts"] > 0)] == sorted(risk[: sum(table["Open alerts"] > 0)])
    after = db.execute(
        "SELECT count(*) FROM audit_log WHERE actor = 'app-alice' AND action = 'login'"
    ).fetchone()[0]
    assert after == before + 1
    # search by pseudonym
    target = seeded.clinic.patients[0]
    at.text_input(key="f_search").input(target[:10]).run()
    assert list(at.dataframe[0].value["Patient"]) == [target]


def test_admin_sees_every_cohort(seeded: Seeded) -> None:
    at = login("app-root")
    shown = set(at.dataframe[0].value["Patient"])
    assert set(seeded.clinic.patients) | set(seeded.other.patients) <= shown


def test_timeline_alert_table_reads_confidence_as_the_inbox_does(seeded: Seeded) -> None:
    psn = next(p for p in seeded.clinic.patients if seeded.clinic.alerts.get(p))
    at = login("app-alice")
    at.session_state["irtmon_patient"] = psn
    at.switch_page("app_pages/timeline.py").run()
    assert not at.exception, at.exception
    table = next(d.value for d in at.dataframe if "Confidence" in d.value.columns)
    assert len(table) >= 1
    assert all(c.endswith("%") for c in table["Confidence"]), list(table["Confidence"])


def test_timeline_page(seeded: Seeded) -> None:
    at = login("app-alice")
    psn = seeded.clinic.patients[0]
    at.session_state["irtmon_patient"] = psn
    at.switch_page("app_pages/timeline.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="timeline_patient").value == psn
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["P(response)"] == f"{seeded.clinic.latest_probability[psn]:.2f}"
    assert metrics["Active alerts"] == str(len(seeded.clinic.alerts.get(psn, [])))
    assert metrics["Target sum"].endswith(" mm")
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    spec = charts[0].proto.spec
    for trace in (
        "% from baseline",
        "% from nadir",
        "seed-response 0.1",
        "RT fraction",
        "ICI cycle",
        "pathology immune signature",
        "ct virtual biopsy",
    ):
        assert trace in spec, trace


def test_timeline_compares_model_versions(seeded: Seeded) -> None:
    at = login("app-alice")
    psn = seeded.clinic.patients[2]  # patient 3: re-scored with seed-response 0.2
    at.session_state["irtmon_patient"] = psn
    at.switch_page("app_pages/timeline.py").run()
    versions = at.multiselect(key="timeline_versions")
    assert versions.value == ["seed-response 0.1", "seed-response 0.2"]
    spec = at.get("plotly_chart")[0].proto.spec
    assert "seed-response 0.2" in spec
    versions.unselect("seed-response 0.2").run()
    assert "seed-response 0.2" not in at.get("plotly_chart")[0].proto.spec


def test_images_page_reads_the_dicom_and_slide(seeded: Seeded) -> None:
    at = login("app-alice")
    at.session_state["irtmon_patient"] = seeded.clinic.patients[0]
    at.switch_page("app_pages/images.py").run()
    assert not at.exception, at.exception
    assert not at.warning, [w.value for w in at.warning]
    images = at.image
    assert len(images) >= 3  # baseline, selected scan, slide
    captions = "\n".join(c.value for c in at.caption)
    assert "mask from labels.npz" in captions


def _most_lesions(db: psycopg.Connection, patients: list[str]) -> tuple[str, int]:
    """The seeded patient with the most tracked lesions, and how many."""
    return db.execute(
        "SELECT patient, count(DISTINCT tracking_uid) FROM lesion_measurements "
        "WHERE patient = ANY(%s) GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1",
        (patients,),
    ).fetchone()


def test_timeline_shows_every_lesion(seeded: Seeded, db: psycopg.Connection) -> None:
    psn, n_lesions = _most_lesions(db, seeded.lesions.patients)
    assert n_lesions >= 6  # five at baseline and new ones
    at = login("app-lena")
    at.session_state["irtmon_patient"] = psn
    at.switch_page("app_pages/timeline.py").run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    last = db.execute(
        "SELECT recist, irecist_state, sum_diameters_mm, in_field_sum_mm, out_of_field_sum_mm, "
        "new_lesions FROM lesion_assessments WHERE patient = %s ORDER BY observed_at DESC "
        "LIMIT 1",
        (psn,),
    ).fetchone()
    state = IRecistState(last[1]).label
    assert metrics["RECIST 1.1 · iRECIST"] == f"{last[0]} · {state}"
    assert metrics["Target sum"] == f"{last[2]:.0f} mm"
    assert metrics["In-field sum"] == f"{last[3]:.0f} mm"
    assert metrics["Out-of-field sum"] == f"{last[4]:.0f} mm"
    assert metrics["New lesions"] == str(last[5])
    spec = at.get("plotly_chart")[0].proto.spec
    for text in (
        "target sum, % from baseline",
        "in-field sum, % from baseline",
        "out-of-field sum, % from baseline",
        "Every lesion",
        "L1 ",
        f"L{n_lesions} ",
        '"new L',
        state,
    ):
        assert text in spec, text
    table = next(d.value for d in at.dataframe if "RECIST role" in d.value.columns)
    assert list(table.columns[:4]) == ["Lesion", "Site", "Field", "RECIST role"]
    assert len(table) == n_lesions  # every tracked lesion at the latest scan
    assert set(table["RECIST role"]) >= {"target", "new target"} or "new non-target" in set(
        table["RECIST role"]
    )
    # an earlier scan's lesions
    at.selectbox(key="timeline_lesion_scan").select(0).run()
    table = next(d.value for d in at.dataframe if "RECIST role" in d.value.columns)
    assert len(table) < n_lesions and set(table["vs baseline"]) == {"—"}


def test_images_page_outlines_every_lesion_by_tracking_id(
    seeded: Seeded, db: psycopg.Connection
) -> None:
    psn, _ = _most_lesions(db, seeded.lesions.patients)
    seen = db.execute(
        "SELECT l.tracking_id FROM lesion_measurements l "
        "WHERE l.patient = %s AND l.status = 'seen' AND l.observed_at = "
        "(SELECT max(observed_at) FROM lesion_measurements WHERE patient = %s)",
        (psn, psn),
    ).fetchall()
    at = login("app-lena")
    at.session_state["irtmon_patient"] = psn
    at.switch_page("app_pages/images.py").run()
    assert not at.exception, at.exception
    assert not at.warning, [w.value for w in at.warning]
    captions = "\n".join(c.value for c in at.caption)
    assert "outlines from SEG.dcm" in captions and "outlines from RTSTRUCT.dcm" in captions
    picker = at.selectbox(key=f"lesion_{len(at.selectbox(key='images_tp').options) - 1}")
    assert sorted(o.split(" · ")[0] for o in picker.options) == sorted(r[0] for r in seen)
    assert f"{len(seen)} lesions outlined" in captions


def test_acknowledging_an_alert_writes_the_audit_row(
    seeded: Seeded, db: psycopg.Connection
) -> None:
    psn, kinds = next(iter(seeded.clinic.alerts.items()))
    alert_id, status = db.execute(
        "SELECT alert_id::text, status FROM alerts WHERE patient = %s AND kind = %s",
        (psn, kinds[0]),
    ).fetchone()
    assert status == "open"
    at = login("app-alice")
    at.switch_page("app_pages/alerts.py").run()
    assert psn in texts(at)
    at.text_input(key=f"note_{alert_id}").input("seen at the tumour board")
    at.button(key=f"ack_{alert_id}").click().run()
    assert not at.exception, at.exception
    assert any("acknowledged by app-alice" in s.value for s in at.success)
    db.rollback()
    row = db.execute(
        "SELECT status, acknowledged_by, acknowledged_at IS NOT NULL FROM alerts "
        "WHERE alert_id = %s",
        (alert_id,),
    ).fetchone()
    assert row == ("acknowledged", "app-alice", True)
    audit = db.execute(  # the one alert lifecycle: an alert.* row with the Alert (the outbox)
        "SELECT actor, patient, detail->>'note', detail->>'to', detail->'alert'->>'status' "
        "FROM audit_log WHERE entity = 'alert' AND entity_id = %s "
        "AND action = 'alert.acknowledged'",
        (alert_id,),
    ).fetchall()
    assert audit == [("app-alice", psn, "seen at the tumour board", "acknowledged", "acknowledged")]
    # the action is on the patient's timeline
    at.session_state["irtmon_patient"] = psn
    at.switch_page("app_pages/timeline.py").run()
    assert "alert action" in at.get("plotly_chart")[0].proto.spec
    # dismissing needs a note; with one it closes the alert
    at.switch_page("app_pages/alerts.py").run()
    at.button(key=f"dismiss_{alert_id}").click().run()
    assert any("needs a note" in e.value for e in at.error)
    at.text_input(key=f"note_{alert_id}").input("pseudo-progression suspected")
    at.button(key=f"dismiss_{alert_id}").click().run()
    db.rollback()
    row = db.execute(
        "SELECT status, closed_by, close_reason FROM alerts WHERE alert_id = %s", (alert_id,)
    ).fetchone()
    assert row == ("dismissed", "app-alice", "pseudo-progression suspected")


def test_researcher_reads_but_cannot_act(seeded: Seeded) -> None:
    at = login("app-rob")
    at.switch_page("app_pages/alerts.py").run()
    assert any("cannot" in i.value or "not act" in i.value for i in at.info)
    assert not [b for b in at.button if (b.key or "").startswith("ack_")]


def test_models_page_lists_versions_and_promotion(seeded: Seeded) -> None:
    at = login("app-alice")
    at.switch_page("app_pages/models.py").run()
    assert not at.exception, at.exception
    md = "\n".join(m.value for m in at.markdown)
    assert "seed-response" in md and "promoted 0.1" in md
    table = next(
        d.value
        for d in at.dataframe
        if "seed-response" in str(d.proto.id) or set(d.value["Version"]) == {"0.1", "0.2"}
    )
    assert set(table["Version"]) == {"0.1", "0.2"}
    assert list(table[table["Promoted"]]["Version"]) == ["0.1"]
    # each card's evidence on view, outside the card
    evidence = [i.value for i in at.info if i.value.startswith("Evidence:")]
    assert evidence and all("never evaluated" in e for e in evidence)


PAGES = ("cohort", "timeline", "images", "alerts", "models")


def test_no_page_shows_anything_without_a_signed_in_user(seeded: Seeded) -> None:
    """Opened directly (not through the entry's router), every page stops before any read."""
    for page in PAGES:
        at = AppTest.from_file(str(REPO / "monitoring_app" / "app_pages" / f"{page}.py"))
        at.run(timeout=60)
        assert not at.exception, (page, at.exception)
        shown = [*at.title, *at.markdown, *at.dataframe, *at.selectbox, *at.button, *at.metric]
        assert shown == [], (page, shown)
        assert not at.get("plotly_chart"), page


def test_alert_actions_are_checked_in_the_query_and_refusals_audited(
    seeded: Seeded, db: psycopg.Connection
) -> None:
    from core.alerts import AlertActionRefusedError
    from core.alerts import act as act_on_alert

    mine = next(iter(seeded.clinic.alerts))
    theirs = seeded.other.patients[0]
    with psycopg.connect(seeded.settings.dsn, autocommit=True) as conn:
        conn.execute(  # an alert outside alice's cohort (the story seeds none there)
            "INSERT INTO alerts (alert_id, patient, kind, probability, summary, recommendation, "
            "opened_at) VALUES (gen_random_uuid(), %s, 'confirmed_progression', 0.9, 's', 'r', "
            "now()) ON CONFLICT DO NOTHING",
            (theirs,),
        )

        def alert_of(patient: str) -> str:
            return conn.execute(
                "SELECT alert_id::text FROM alerts WHERE patient = %s ORDER BY kind LIMIT 1",
                (patient,),
            ).fetchone()[0]

        attempts = [  # (actor, alert, cohorts the page would pass, why it is refused)
            ("app-rob", alert_of(mine), ["app-clinic"], "may not act on alerts"),
            ("nobody", alert_of(mine), None, "may not act on alerts"),
            ("app-alice", alert_of(theirs), ["app-clinic"], "outside your cohorts"),
        ]
        for actor, alert_id, cohorts, why in attempts:
            before = conn.execute("SELECT status FROM alerts WHERE alert_id = %s", (alert_id,))
            status = before.fetchone()[0]
            with pytest.raises(AlertActionRefusedError, match=why):
                act_on_alert(conn, alert_id, "resolve", actor, "trying", cohorts)
            after = conn.execute("SELECT status FROM alerts WHERE alert_id = %s", (alert_id,))
            assert after.fetchone()[0] == status, "a refused action changes nothing"
            audited = conn.execute(
                "SELECT action, detail->>'why' FROM audit_log WHERE entity = 'alert_refusal' "
                "AND actor = %s AND entity_id = %s ORDER BY id DESC LIMIT 1",
                (actor, alert_id),
            ).fetchone()
            assert audited is not None and audited[0] == "resolve" and why in audited[1], audited


def test_per_patient_reads_check_the_cohort_themselves(seeded: Seeded) -> None:
    from monitoring_app import data

    theirs = seeded.other.patients[0]
    mine = seeded.clinic.patients[0]
    dsn = seeded.settings.dsn
    for read in (data.timeline, data.acquisitions):
        with pytest.raises(data.NotInYourCohortsError):
            read(dsn, theirs, ("app-clinic",))
        assert read(dsn, mine, ("app-clinic",)) is not None
        assert read(dsn, theirs, None) is not None  # an admin sees every cohort
