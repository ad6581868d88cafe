"""Controlled vocabularies shared by events, the database and the app.

Strings appear only at the edges (JSON, SQL); inside the code these enums are used.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


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


class AlertAction(StrEnum):
    """A change of an alert, as written to ``audit_log.action`` and delivered (webhook, e-mail,
    the ``alerts`` topic). The decision rule opens and updates; people acknowledge, resolve,
    dismiss."""

    OPENED = "alert.opened"
    UPDATED = "alert.updated"
    ACKNOWLEDGED = "alert.acknowledged"
    RESOLVED = "alert.resolved"
    DISMISSED = "alert.dismissed"

    @property
    def verb(self) -> str:
        """``opened``, ``acknowledged``, ... (the last part)."""
        return self.value.split(".")[-1]


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


class AlertVerb(StrEnum):
    """What a person does to an alert; each writes one :class:`AlertAction` audit row."""

    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    DISMISS = "dismiss"

    @property
    def action(self) -> AlertAction:
        return {
            AlertVerb.ACKNOWLEDGE: AlertAction.ACKNOWLEDGED,
            AlertVerb.RESOLVE: AlertAction.RESOLVED,
            AlertVerb.DISMISS: AlertAction.DISMISSED,
        }[self]


class ModelName(StrEnum):
    """The models irtmon registers, promotes and scores with (``model_registry.name``)."""

    PATHOLOGY = "pathology-mil"
    CT_SIGNATURE = "ct-signature"
    RESPONSE = "response"


class ImmunePhenotype(StrEnum):
    """Tumour immune phenotype seen in pathology."""

    INFLAMED = "inflamed"
    EXCLUDED = "excluded"
    DESERT = "desert"


IRECIST_SCORE = "irecist_state"
"""Score name of the iRECIST state of an assessment, its value an :class:`IRecistState` code."""


class IRecistState(IntEnum):
    """iRECIST overall response (Seymour et al. 2017), stored as the value of an
    ``irecist_state`` score: iCR 0, iPR 1, iSD 2, iUPD 3, iCPD 4, iNE 5 (not evaluable: a
    target lesion could not be measured and what was measured does not show progression)."""

    ICR = 0
    IPR = 1
    ISD = 2
    IUPD = 3
    ICPD = 4
    INE = 5

    @property
    def label(self) -> str:
        """``iCR``, ``iPR``, ``iSD``, ``iUPD``, ``iCPD`` or ``iNE``."""
        return {0: "iCR", 1: "iPR", 2: "iSD", 3: "iUPD", 4: "iCPD", 5: "iNE"}[self.value]

    @property
    def code(self) -> int:
        """The number stored as the value of an ``irecist_state`` score."""
        return int(self.value)

    def __str__(self) -> str:
        return self.label

    @property
    def words(self) -> str:
        """The label with its meaning, e.g. ``iUPD (unconfirmed progression)``."""
        meaning = {
            0: "complete response",
            1: "partial response",
            2: "stable disease",
            3: "unconfirmed progression",
            4: "confirmed progression",
            5: "not evaluable",
        }[self.value]
        return f"{self.label} ({meaning})"

    @classmethod
    def from_value(cls, value: float | None) -> IRecistState | None:
        if value is None or value != value:  # NaN
            return None
        code = round(value)
        return cls(code) if code in cls._value2member_map_ else None


def carries_burden(state: IRecistState | int | None) -> bool:
    """Whether an assessment in this iRECIST state has a burden: sums of diameters that a
    decision rule, a chart or a report may use.

    A not-evaluable assessment (iNE: a target lesion could not be evaluated and nothing shows
    progression) has none: its stored sum counts only the lesions that were seen, so as a
    point it would read as shrinkage, become the nadir, and make the next evaluable scan look
    like growth from it. RECIST 1.1 calls such a timepoint NE (Eisenhauer 2009, table 1) and
    ``models.changepoint.irecist.Irecist`` keeps its nadirs from evaluated sums only. The
    stored assessment, its lesions and their reasons stay; the decision series skips it, no
    sum score is stored for it, and the timeline, the SR and FHIR show it as not evaluable.
    ``None`` (not assessed over lesions) has one."""
    return state is None or IRecistState(state) is not IRecistState.INE


class RecistResponse(StrEnum):
    """RECIST 1.1 response (Eisenhauer et al. 2009), of the target lesions, of the non-target
    lesions or overall at one timepoint. ``NON_CR_NON_PD`` is the non-target category (and the
    overall response of a patient with non-target disease only)."""

    CR = "CR"
    PR = "PR"
    SD = "SD"
    NON_CR_NON_PD = "non-CR/non-PD"
    PD = "PD"
    NE = "NE"


class LesionRole(StrEnum):
    """What a tracked lesion counts as under RECIST 1.1 / iRECIST.

    Baseline lesions are target (measurable, at most 5, 2 per organ) or non-target; a lymph
    node under 10 mm short axis is normal (tracked, never counted). Lesions first seen at a
    follow-up are new: new target (measurable, at most 5 new targets, 2 per organ) or new
    non-target (iRECIST, Seymour et al. 2017)."""

    TARGET = "target"
    NON_TARGET = "non_target"
    NEW_TARGET = "new_target"
    NEW_NON_TARGET = "new_non_target"
    NORMAL_NODE = "normal_node"

    @property
    def is_new(self) -> bool:
        return self in (LesionRole.NEW_TARGET, LesionRole.NEW_NON_TARGET)


class LesionStatus(StrEnum):
    """Whether a tracked lesion was found at a timepoint: seen (measured), not seen (looked for
    and gone: it measures 0 mm) or not evaluable (it could not be measured: a failed read is no
    evidence that it is gone)."""

    SEEN = "seen"
    NOT_SEEN = "not_seen"
    NOT_EVALUABLE = "not_evaluable"


class LesionOrigin(StrEnum):
    """How a lesion's mask at a timepoint was obtained: drawn by a reader (a SEG segment or an
    RTSTRUCT ROI of the study) or propagated from the baseline by registration."""

    ANNOTATED = "annotated"
    PROPAGATED = "propagated"


class Organ(StrEnum):
    """The organ a lesion lies in (RECIST counts target lesions per organ; all lymph nodes
    together count as one organ)."""

    LUNG = "lung"
    LIVER = "liver"
    LYMPH_NODE = "lymph_node"
    ADRENAL = "adrenal"
    BONE = "bone"
    BRAIN = "brain"
    KIDNEY = "kidney"
    PLEURA = "pleura"
    SOFT_TISSUE = "soft_tissue"
    OTHER = "other"
