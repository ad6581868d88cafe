"""Unit tests of the app's access rules that are pure logic: the sign-in back-off, the OIDC
subject (``email_verified``), and how the slide checks are worded next to the signature."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from core.logins import LoginPolicy, backoff_s
from core.settings import Settings
from models.pathology.ood import OodScore, OodStatus
from models.pathology.stain import StainCheck, StainOutcome
from monitoring_app import ui
from monitoring_app.auth import UnverifiedEmailError, oidc_subject


def test_backoff_is_free_then_doubles_up_to_the_cap() -> None:
    waits = [backoff_s(n, free=3, base_s=2.0, max_s=20.0) for n in range(8)]
    assert waits == [0.0, 0.0, 0.0, 2.0, 4.0, 8.0, 16.0, 20.0]
    assert backoff_s(10_000, free=3, base_s=2.0, max_s=20.0) == 20.0


def test_login_policy_comes_from_settings() -> None:
    s = Settings(
        app_login_free_attempts=3,
        app_login_address_free_attempts=9,
        app_login_backoff_s=1.5,
        app_login_backoff_max_s=60,
        app_login_window_s=600,
    )
    p = LoginPolicy.from_settings(s)
    assert (p.user_free, p.address_free, p.base_s, p.max_s, p.window_s) == (3, 9, 1.5, 60, 600)
    assert Settings().app_idle_timeout_s == 1800.0


@pytest.mark.parametrize("verified", [True, "true", "TRUE"])
def test_oidc_uses_a_verified_email(verified: object) -> None:
    claims = {"email": "alice@hospital.org", "email_verified": verified, "sub": "123"}
    assert oidc_subject(claims) == "alice@hospital.org"


@pytest.mark.parametrize("verified", [None, False, "false", "yes", 1])
def test_oidc_refuses_an_unverified_email(verified: object) -> None:
    claims = {"email": "alice@hospital.org", "sub": "123"}
    if verified is not None:
        claims["email_verified"] = verified
    with pytest.raises(UnverifiedEmailError, match="email_verified"):
        oidc_subject(claims)


def test_oidc_without_email_uses_the_subject() -> None:
    assert oidc_subject({"sub": "opaque-42"}) == "opaque-42"
    assert oidc_subject({}) == ""


def _check(slide: str, ood: OodScore, stain: StainCheck | None, weight: float) -> dict:
    return {
        "source_event_id": "e",
        "observed_at": datetime(2026, 3, 1, tzinfo=UTC),
        "model_name": "pathology-mil",
        "model_version": "1",
        "slide": slide,
        "stain": None if stain is None else stain.to_dict(),
        "ood": ood.to_dict(),
        "uncertainty_weight": weight,
    }


def test_slide_checks_are_worded_next_to_the_signature() -> None:
    he = StainCheck(StainOutcome.HE, 0.0, 0.9, 5000, "eosin in 90 % of stained pixels")
    ihc = StainCheck(StainOutcome.NOT_HE, 0.6, 0.01, 5000, "brown DAB in 60 % of pixels")
    checks = pd.DataFrame(
        [
            _check("S1", OodScore(OodStatus.IN_DISTRIBUTION, 3.0, 40.0, 0.0, 5.0, 30), he, 0.0),
            _check("S2", OodScore(OodStatus.OUT_OF_DISTRIBUTION, 14.2, 100.0, 1.0, 5.0, 30), he, 1),
            _check("S3", OodScore(OodStatus.SHIFTED, 7.5, 99.0, 0.5, 5.0, 30), ihc, 1.0),
        ]
    )
    table = ui.slide_checks_table(checks)
    assert list(table["Distribution"]) == [
        "in distribution",
        "OUT OF DISTRIBUTION: signature unreliable",
        "shifted: uncertainty widened",
    ]
    assert list(table["Stain"]) == ["H&E", "H&E", "NOT H&E: signature unreliable"]
    assert list(table["Distance"]) == ["3.0", "14.2", "7.5"]
    assert list(table["Uncertainty widened"]) == ["0.00", "1.00", "1.00"]
    warnings = ui.slide_check_warnings(checks)
    assert len(warnings) == 3  # S2 out of distribution, S3 shifted and not H&E
    assert not any("S1" in w for w in warnings)
    assert any("S3" in w and "brown DAB" in w for w in warnings)
