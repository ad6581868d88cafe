"""Controlled vocabularies shared by events, the database and the app.

Strings appear only at the edges (JSON, SQL); inside the code these enums are used.
"""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    """Kind of imaging acquisition."""

    CT = "CT"
    PCCT = "PCCT"  # photon-counting CT: virtual monoenergetic series and iodine maps


class ImagingPurpose(StrEnum):
    """Why a scan was taken, when the sender knows it."""

    PLANNING = "planning"  # radiotherapy planning CT, the baseline
    FOLLOW_UP = "follow_up"
    UNKNOWN = "unknown"


class Stain(StrEnum):
    """Stain of a whole-slide image."""

    HE = "H&E"
    IHC_PDL1 = "IHC PD-L1"
    IHC_CD8 = "IHC CD8"
    OTHER = "other"


class TreatmentKind(StrEnum):
    """Kind of treatment event sent by the oncology information system."""

    RT_COURSE_START = "rt_course_start"
    RT_FRACTION = "rt_fraction"
    IMMUNOTHERAPY_DOSE = "immunotherapy_dose"


class AlertKind(StrEnum):
    """What an alert warns of."""

    SUSPECTED_NON_RESPONSE = "suspected_non_response"
    CONFIRMED_PROGRESSION = "confirmed_progression"


class AlertStatus(StrEnum):
    """Alert lifecycle: open -> acknowledged -> resolved, or dismissed (with a reason)."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


class ImmunePhenotype(StrEnum):
    """Tumour immune phenotype seen in pathology."""

    INFLAMED = "inflamed"
    EXCLUDED = "excluded"
    DESERT = "desert"
