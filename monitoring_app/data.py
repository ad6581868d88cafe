"""The app's data layer: its settings, one connection pool (st.cache_resource) and cached
reads (st.cache_data with a short ttl) over the core layer's queries (:mod:`core.db`).

Pages call these functions with plain values (the user's cohorts as a tuple, a pseudonym), so
the cache key is the question asked. Writes go through :func:`run_write` (one transaction) and
clear the caches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import psycopg
import streamlit as st
from psycopg_pool import ConnectionPool

from core.db import alerts, audit, events, lesions, registry, scores
from core.paths import resolve_under_roots
from core.settings import Settings
from models.imaging.study_view import StudyView, read_study
from monitoring_app.imaging import attention_png, read_png, slide_thumbnail
from schemas import RefusedError

T = TypeVar("T")


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    """The app server's settings, read once from its ``IRTMON_*`` environment."""
    return Settings()


CACHE_TTL_S = settings().app_cache_ttl_s
"""How long a read is reused before the database is asked again."""
REFRESH_S = settings().app_refresh_s
"""How often live fragments re-run (new scores and alerts appear without a reload)."""

Cohorts = tuple[str, ...] | None


@st.cache_resource(show_spinner=False)
def pool(dsn: str) -> ConnectionPool:
    """One small pool per database for the whole server (all sessions share it)."""
    p = ConnectionPool(
        dsn,
        min_size=1,
        max_size=4,
        kwargs={"autocommit": True, "application_name": "irtmon-app"},
        open=False,
    )
    p.open(wait=True, timeout=15)
    return p


def dsn() -> str:
    return settings().dsn


def run(fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn(conn, *args)`` with a pooled connection."""
    with pool(dsn()).connection() as conn:
        return fn(conn, *args)


def run_write(fn: Callable[..., T], *args: Any, clear: bool = True) -> T:
    """Call ``fn(conn, *args)`` in one transaction; then every cached read is dropped so pages
    show the change (``clear=False`` for writes no page reads, such as sign-in audit rows:
    an anonymous caller must not be able to empty every session's cache)."""

    def write(conn: psycopg.Connection) -> T:
        with conn.transaction():
            return fn(conn, *args)

    try:
        return run(write)
    finally:
        if clear:
            clear_cache()


def clear_cache() -> None:
    """Drop every cached read (after a write), so pages show the change."""
    st.cache_data.clear()


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def cohort(db: str, cohorts: Cohorts) -> pd.DataFrame:
    return _frame(run(scores.cohort_overview, list(cohorts) if cohorts is not None else None))


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def patients(db: str, cohorts: Cohorts) -> list[str]:
    return run(events.visible_patients, list(cohorts) if cohorts is not None else None)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def patient(db: str, pseudonym: str, cohorts: Cohorts) -> dict[str, Any] | None:
    return run(events.patient_info, pseudonym, list(cohorts) if cohorts is not None else None)


class NotInYourCohortsError(RefusedError, PermissionError):
    """A patient outside the signed-in user's cohorts was asked for."""


def _require_visible(conn: psycopg.Connection, pseudonym: str, cohorts: Cohorts) -> None:
    """Every per-patient read refuses a patient outside the user's cohorts with a clear
    error, whatever the page did (and each core.db query filters by the cohorts itself)."""
    scope = list(cohorts) if cohorts is not None else None
    if events.patient_info(conn, pseudonym, scope) is None:
        raise NotInYourCohortsError(f"{pseudonym} is not a patient of your cohorts")


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def timeline(db: str, pseudonym: str, cohorts: Cohorts) -> dict[str, pd.DataFrame]:
    """Everything the timeline draws, one pooled connection, one cache entry."""

    def read(conn: psycopg.Connection) -> dict[str, pd.DataFrame]:
        _require_visible(conn, pseudonym, cohorts)
        scope = {"cohorts": list(cohorts) if cohorts is not None else None}
        return {
            "scores": _frame(scores.patient_scores_with_source(conn, pseudonym, **scope)),
            "burden": _frame(scores.patient_burden(conn, pseudonym, **scope)),
            "lesions": _frame(lesions.patient_lesions(conn, pseudonym, **scope)),
            "assessments": _frame(lesions.patient_assessments(conn, pseudonym, **scope)),
            "treatments": _frame(events.patient_treatments(conn, pseudonym, **scope)),
            "alerts": _frame(alerts.patient_alerts(conn, pseudonym, **scope)),
            "actions": _frame(audit.alert_actions(conn, pseudonym, **scope)),
            "slide_checks": _frame(scores.slide_checks(conn, pseudonym, **scope)),
        }

    return run(read)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def acquisitions(db: str, pseudonym: str, cohorts: Cohorts) -> list[dict[str, Any]]:
    def read(conn: psycopg.Connection) -> list[dict[str, Any]]:
        _require_visible(conn, pseudonym, cohorts)
        scope = list(cohorts) if cohorts is not None else None
        return events.patient_acquisitions(conn, pseudonym, cohorts=scope)

    return run(read)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def scan_lesions(
    db: str, pseudonym: str, event_id: str, cohorts: Cohorts
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The tracked lesions of one scan and the SEG/SR irtmon wrote for it."""

    def read(conn: psycopg.Connection) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        _require_visible(conn, pseudonym, cohorts)
        scope = list(cohorts) if cohorts is not None else None
        rows = lesions.lesions_of_source(conn, event_id, cohorts=scope)
        return rows, lesions.dicom_outputs(conn, event_id, cohorts=scope)

    return run(read)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def inbox(db: str, cohorts: Cohorts, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    return run(alerts.inbox, list(cohorts) if cohorts is not None else None, list(statuses))


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def models(db: str) -> list[dict[str, Any]]:
    return run(registry.models)


@st.cache_data(ttl=600, max_entries=6, show_spinner="Reading the study…")
def study(path: str, lesion_path: str | None, annotations: tuple[str, ...] = ()) -> StudyView:
    """The study's preferred series in HU with its lesion labels and the lesions of the first
    of ``annotations`` that has some (the workers' readers)."""
    return read_study(Path(path), lesion_path, annotations)


@st.cache_data(ttl=600, max_entries=16, show_spinner="Reading the slide…")
def slide_view(path: str, inputs: tuple[str, ...]) -> tuple[Any, str]:
    """(RGB image, what it is) of a slide: its attention heat map if written, else thumbnail."""
    heat = attention_png(Path(path), list(inputs))
    if heat is not None:
        return read_png(heat), f"attention heat map ({heat.name})"
    return slide_thumbnail(Path(path)), "slide thumbnail (no attention heat map written yet)"


def resolve_data_path(path: str) -> Path:
    """A file path from the database, refused unless it lies under IRTMON_DATA_ROOTS."""
    return resolve_under_roots(path, settings().data_roots)


def resolve_derived_path(path: str) -> Path:
    """A file irtmon wrote (a lesion SEG), refused unless it lies under IRTMON_DERIVED_DIR or
    the data roots."""
    s = settings()
    return resolve_under_roots(path, [s.derived_dir.resolve(), *s.data_roots])
