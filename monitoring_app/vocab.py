"""The app's controlled vocabularies: score names it knows, iRECIST states, roles, windows."""

from __future__ import annotations

from enum import IntEnum, StrEnum

RESPONSE_PROBABILITY = "response_probability"
"""Score name of the response model: P(response), with ``lower``/``upper`` as its band."""
IRECIST_STATE = "irecist_state"
"""Score name of the iRECIST state per scan, the value being an :class:`IRecistState` code."""
SPECIAL_SCORES = frozenset({RESPONSE_PROBABILITY, IRECIST_STATE})
"""Scores drawn in their own panels; every other imaging-sourced score is a CT virtual-biopsy
signal and every biopsy-sourced score a pathology immune signature."""

RECIST_PR = -30.0
"""Partial response: sum of diameters down 30 per cent from baseline."""
RECIST_PD = 20.0
"""Progression: sum of diameters up 20 per cent from the nadir."""


class IRecistState(IntEnum):
    """iRECIST overall response, stored as ``timepoint_scores.value`` of ``irecist_state``."""

    ICR = 0
    IPR = 1
    ISD = 2
    IUPD = 3
    ICPD = 4

    @property
    def label(self) -> str:
        return {0: "iCR", 1: "iPR", 2: "iSD", 3: "iUPD", 4: "iCPD"}[self.value]

    @classmethod
    def from_value(cls, value: float | None) -> IRecistState | None:
        if value is None or value != value:  # NaN
            return None
        code = round(value)
        return cls(code) if code in cls._value2member_map_ else None


NO_VALUE = "—"
"""Shown where nothing is stored."""


class Role(StrEnum):
    """What a user may do: clinicians act on alerts of their cohorts, researchers only read
    their cohorts, admins see and do everything."""

    CLINICIAN = "clinician"
    RESEARCHER = "researcher"
    ADMIN = "admin"

    @property
    def can_act_on_alerts(self) -> bool:
        return self in (Role.CLINICIAN, Role.ADMIN)

    @property
    def sees_all_cohorts(self) -> bool:
        return self is Role.ADMIN


class AlertAction(StrEnum):
    """What a user does to an alert; each is one audit_log row."""

    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    DISMISS = "dismiss"


WINDOWS: dict[str, tuple[float, float]] = {
    "Lung": (-600.0, 1500.0),
    "Mediastinum": (40.0, 400.0),
    "Soft tissue": (50.0, 350.0),
    "Bone": (400.0, 1800.0),
}
"""CT window presets: (centre, width) in HU."""
