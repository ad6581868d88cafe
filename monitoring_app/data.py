"""The app's data layer: one connection pool (st.cache_resource) and cached reads
(st.cache_data with a short ttl) over :mod:`monitoring_app.queries`.

Pages call these functions with plain values (the user's cohorts as a tuple, a pseudonym), so
the cache key is the question asked. Writes go through :func:`run_write` and clear the caches.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import psycopg
import streamlit as st
from psycopg_pool import ConnectionPool

from core.settings import get_settings
from monitoring_app import queries

T = TypeVar("T")

CACHE_TTL_S = float(os.environ.get("IRTMON_APP_CACHE_TTL_S", "10"))
"""How long a read is reused before the database is asked again."""
REFRESH_S = float(os.environ.get("IRTMON_APP_REFRESH_S", "15"))
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
    return get_settings().dsn


def run(fn: Callable[..., T], *args: Any) -> T:
    """Call ``fn(conn, *args)`` with a pooled connection."""
    with pool(dsn()).connection() as conn:
        return fn(conn, *args)


def run_write(fn: Callable[..., T], *args: Any) -> T:
    """Like :func:`run` for a write; then every cached read is dropped so pages show it."""
    try:
        return run(fn, *args)
    finally:
        st.cache_data.clear()


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def cohort(db: str, cohorts: Cohorts) -> pd.DataFrame:
    return _frame(run(queries.cohort_overview, list(cohorts) if cohorts is not None else None))


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def patients(db: str, cohorts: Cohorts) -> list[str]:
    return run(queries.visible_patients, list(cohorts) if cohorts is not None else None)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def patient(db: str, pseudonym: str, cohorts: Cohorts) -> dict[str, Any] | None:
    return run(queries.patient_info, pseudonym, list(cohorts) if cohorts is not None else None)


class NotInYourCohortsError(PermissionError):
    """A patient outside the signed-in user's cohorts was asked for."""


def _require_visible(conn: psycopg.Connection, pseudonym: str, cohorts: Cohorts) -> None:
    """Every per-patient read checks the user's cohorts itself, whatever the page did."""
    scope = list(cohorts) if cohorts is not None else None
    if queries.patient_info(conn, pseudonym, scope) is None:
        raise NotInYourCohortsError(f"{pseudonym} is not a patient of your cohorts")


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def timeline(db: str, pseudonym: str, cohorts: Cohorts) -> dict[str, pd.DataFrame]:
    """Everything the timeline draws, one pooled connection, one cache entry."""

    def read(conn: psycopg.Connection) -> dict[str, pd.DataFrame]:
        _require_visible(conn, pseudonym, cohorts)
        return {
            "scores": _frame(queries.patient_scores_with_source(conn, pseudonym)),
            "burden": _frame(queries.patient_burden(conn, pseudonym)),
            "treatments": _frame(queries.patient_treatments(conn, pseudonym)),
            "alerts": _frame(queries.patient_alerts(conn, pseudonym)),
            "actions": _frame(queries.alert_history(conn, pseudonym)),
        }

    return run(read)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def acquisitions(db: str, pseudonym: str, cohorts: Cohorts) -> list[dict[str, Any]]:
    def read(conn: psycopg.Connection) -> list[dict[str, Any]]:
        _require_visible(conn, pseudonym, cohorts)
        return queries.patient_acquisitions(conn, pseudonym)

    return run(read)


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def inbox(db: str, cohorts: Cohorts, statuses: tuple[str, ...]) -> list[dict[str, Any]]:
    return run(queries.alert_inbox, list(cohorts) if cohorts is not None else None, list(statuses))


@st.cache_data(ttl=CACHE_TTL_S, show_spinner=False)
def models(db: str) -> list[dict[str, Any]]:
    return run(queries.registered_models)


@st.cache_data(ttl=600, max_entries=6, show_spinner="Reading the study…")
def study(path: str, lesion_path: str | None) -> Any:
    from monitoring_app.imaging import read_study

    return read_study(Path(path), lesion_path)


@st.cache_data(ttl=600, max_entries=16, show_spinner="Reading the slide…")
def slide_view(path: str, inputs: tuple[str, ...]) -> tuple[Any, str]:
    """(RGB image, what it is) of a slide: its attention heat map if written, else thumbnail."""
    from monitoring_app.imaging import attention_png, read_png, slide_thumbnail

    heat = attention_png(Path(path), list(inputs))
    if heat is not None:
        return read_png(heat), f"attention heat map ({heat.name})"
    return slide_thumbnail(Path(path)), "slide thumbnail (no attention heat map written yet)"


def resolve_data_path(path: str) -> Path:
    """A file path from the database, refused unless it lies under IRTMON_DATA_ROOTS."""
    from core.paths import resolve_under_roots

    return resolve_under_roots(path, get_settings().data_roots)
