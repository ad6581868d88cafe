"""Draw one story-v2 patient: latent factors, lesions, course, treatment, scans and biopsies.

Nothing here writes a file or renders an image. :func:`sample_patient` turns a seeded
``numpy.random.Generator`` into a frozen :class:`PatientV2`; :mod:`clinic.story_v2.course`
evaluates its lesions at any day. The story in words, and the source of every number, are in
``docs/clinic/story-v2.md`` and :mod:`clinic.story_v2.params`.

Latent factors (independent standard normals, one each per patient): tumour-intrinsic growth
``G``, immune infiltration ``I``, immune activation ``A``, radiosensitivity ``R`` and a
constitutive PD-L1 expression ``K``. Each lesion has its own infiltration, correlated with the
patient's; the instruments see them through their own noise: the biopsy's TIL count and PD-L1
score, the lesion's CT texture and enhancement, and the response.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum

import numpy as np
from scipy import stats

from clinic.story import (
    Anatomy,
    IciSchedule,
    RtSchedule,
    Timepoint,
    sample_anatomy,
    sample_enrolment,
    sample_scan_days,
    sample_timepoints,
)
from clinic.story_v2 import params
from clinic.story_v2.anatomy import SLOT_JITTER_MM, Organ, Slot, slots
from clinic.story_v2.variants import BASE, VARIANTS, StoryVariant
from schemas.enums import ImmunePhenotype


class Course(StrEnum):
    """The patient's course under treatment (ground truth)."""

    RESPONDER = "responder"
    LATE_RESPONDER = "late_responder"
    PSEUDO_PROGRESSION = "pseudo_progression"
    STABLE_DISEASE = "durable_stable_disease"
    PROGRESSION = "non_responder"
    HYPERPROGRESSION = "hyperprogression"

    @property
    def responder(self) -> bool:
        """An objective (systemic) response, first seen early or late."""
        return self in (Course.RESPONDER, Course.LATE_RESPONDER, Course.PSEUDO_PROGRESSION)


class Behaviour(StrEnum):
    """What one lesion does (a lesion of a dissociated response departs from the course)."""

    RESPOND = "respond"
    LATE_RESPOND = "late_respond"
    PSEUDO = "pseudo_progress"
    STABLE = "stable"
    GROW = "grow"
    HYPER = "hyperprogress"


_BEHAVIOUR_OF = {
    Course.RESPONDER: Behaviour.RESPOND,
    Course.LATE_RESPONDER: Behaviour.LATE_RESPOND,
    Course.PSEUDO_PROGRESSION: Behaviour.PSEUDO,
    Course.STABLE_DISEASE: Behaviour.STABLE,
    Course.PROGRESSION: Behaviour.GROW,
    Course.HYPERPROGRESSION: Behaviour.HYPER,
}
RESPONDING = (Behaviour.RESPOND, Behaviour.LATE_RESPOND, Behaviour.PSEUDO)
"""Lesion behaviours of an immune response."""


@dataclass(frozen=True)
class LesionV2:
    """One lesion track: where it is, how big, and what it does (all drawn, never measured)."""

    track: int  # 1-based within the patient; truth only (readers never see it)
    organ: Organ
    slot: str
    primary: bool
    in_field: bool
    new: bool  # appeared during follow-up
    appear_days: float  # first day it exists (-inf for baseline lesions)
    reference_days: float  # day at which semi_axes_mm hold (0, or the first scan showing it)
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]  # a >= b in the axial plane, c along z
    angle_deg: float
    max_semi_axis_mm: float  # the slot's bound
    behaviour: Behaviour
    doubling_days: float
    nadir: float  # volume floor of an immune response
    tau_days: float
    onset_days: float  # start of shrinkage (late responders, pseudo-progression)
    peak_days: float | None  # pseudo-progression peak
    peak_amplitude: float  # volume factor added at the peak
    peak_width_days: float
    stable_rate_per_day: float  # log-volume rate of a stable lesion
    hyper_ratio: float  # growth-rate ratio of hyperprogression
    rt_plateau: float  # volume floor after SBRT alone (1: not irradiated)
    rt_tau_days: float
    local_failure_days: float | None
    rt_change_onset_days: float | None  # lung change after SBRT (irradiated lung lesions)
    rt_change_peak_hu: float
    rt_change_margin_mm: float
    reader_includes_rt_change: bool
    infiltration: float  # this lesion's immune infiltration at baseline (latent, SD units)
    immune_noise: float  # standard normal: this lesion's share of the on-treatment change
    ct_noise_lesion: float  # fixed part of the CT reading's noise
    ct_noise_scans: tuple[float, ...]  # per-scan part, one per timepoint
    necrosis: float

    @property
    def immune_change(self) -> float:
        """Change of infiltration on treatment (latent units), reached over a few weeks.

        ln CD8 density rises by 0.9 on average in a responding lesion and stays level in
        the others (:data:`~clinic.story_v2.params.ON_TREATMENT_LOG_CD8_RISE`).
        """
        rise = params.ON_TREATMENT_LOG_CD8_RISE if self.behaviour in RESPONDING else 0.0
        return (rise + params.ON_TREATMENT_LOG_CD8_SD * self.immune_noise) / params.LOG_TIL_PER_SD

    def immune_state(self, days: float, ici_start_days: float = 0.0) -> float:
        """The lesion's infiltration (latent SD units) at ``days``.

        It moves by :attr:`immune_change` from the first immunotherapy dose (day
        ``ici_start_days``) on, with a time constant of
        :data:`~clinic.story_v2.params.IMMUNE_RAMP_DAYS`.
        """
        s = max(0.0, days - ici_start_days)
        return self.infiltration + self.immune_change * (
            1.0 - math.exp(-s / params.IMMUNE_RAMP_DAYS)
        )


@dataclass(frozen=True)
class BiopsyV2:
    """A biopsy of one lesion and what the laboratory reads on it."""

    index: int
    days: float
    at: object  # datetime
    lesion_track: int
    organ: Organ
    infiltration_read: float  # latent, as sampled by the needle (SD units)
    phenotype: ImmunePhenotype  # called from the reading
    til_intratumoral_per_mm2: float
    til_stromal_per_mm2: float
    pd_l1_tps: float


@dataclass(frozen=True)
class Latents:
    """The patient's independent latent factors (standard normal)."""

    growth: float
    infiltration: float
    activation: float
    radiosensitivity: float
    constitutive_pdl1: float

    @property
    def immune_drive(self) -> float:
        return (self.infiltration + self.activation) / math.sqrt(2.0)


@dataclass(frozen=True)
class PatientV2:
    """Everything drawn for one story-v2 patient."""

    clear_id: str
    sex: str
    birth_year: int
    anatomy: Anatomy
    latents: Latents
    phenotype: ImmunePhenotype  # from the patient's infiltration (truth)
    course: Course
    dissociated: bool
    lesions: tuple[LesionV2, ...]
    rt: RtSchedule
    ici: IciSchedule
    timepoints: tuple[Timepoint, ...]
    biopsies: tuple[BiopsyV2, ...]

    @property
    def responder(self) -> bool:
        return self.course.responder

    @property
    def pd_l1_tps(self) -> float:
        """The clinical PD-L1 TPS: the diagnostic biopsy's."""
        return self.biopsies[0].pd_l1_tps

    @property
    def in_field(self) -> tuple[LesionV2, ...]:
        return tuple(les for les in self.lesions if les.in_field)

    @property
    def ici_start_days(self) -> float:
        """Day of the first immunotherapy dose, from the first fraction."""
        return (self.ici.start - self.rt.start).total_seconds() / 86400.0


# ----------------------------------------------------------------------------- small draws


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


INFLAMED_CUT = float(stats.norm.ppf(1.0 - params.PHENOTYPE_SHARES[ImmunePhenotype.INFLAMED]))
"""Infiltration reading above which a biopsy is called inflamed (44 % of readings)."""
DESERT_CUT = float(stats.norm.ppf(params.PHENOTYPE_SHARES[ImmunePhenotype.DESERT]))
"""Infiltration reading below which a biopsy is called desert (18.9 % of readings)."""


def phenotype_of(reading: float) -> ImmunePhenotype:
    """Phenotype called from an infiltration reading (thresholds give Park's shares)."""
    if reading > INFLAMED_CUT:
        return ImmunePhenotype.INFLAMED
    if reading < DESERT_CUT:
        return ImmunePhenotype.DESERT
    return ImmunePhenotype.EXCLUDED


def tps_from_latent(reading: float) -> float:
    """PD-L1 TPS (integer per cent) from a standard-normal reading, matching the TPS shares."""
    q = 0.5 * (1.0 + math.erf(reading / math.sqrt(2.0)))
    low, mid, _ = params.PDL1_SHARES
    if q < low:
        return 0.0
    if q < low + mid:
        return float(round(1.0 + 48.0 * (q - low) / mid))
    return float(round(50.0 + 50.0 * (q - low - mid) / (1.0 - low - mid)))


def _course(rng: np.random.Generator, latents: Latents, variant: StoryVariant) -> Course:
    intercept, slope = variant.response_link()
    p = 1.0 / (1.0 + math.exp(-(intercept + slope * latents.immune_drive)))
    u = rng.uniform(size=2)
    if u[0] < p:
        pp = variant.pseudo_progression_rate / params.OBJECTIVE_RESPONSE_RATE
        late = max((params.LATE_RESPONSE_SHARE - pp) / (1.0 - pp), 0.0)
        if u[1] < pp:
            return Course.PSEUDO_PROGRESSION
        return Course.LATE_RESPONDER if u[1] < pp + (1.0 - pp) * late else Course.RESPONDER
    non = 1.0 - params.OBJECTIVE_RESPONSE_RATE
    hyper = params.HYPERPROGRESSION_RATE / non
    stable = params.DURABLE_STABLE_DISEASE_RATE / non
    # a variant's extra hyperprogressions come from the top of the plain progressions' range,
    # fewer go back to plain progression: no stable disease changes course
    extra = variant.hyperprogression_rate / non - hyper
    if u[1] < hyper + min(extra, 0.0) or u[1] >= 1.0 - max(extra, 0.0):
        return Course.HYPERPROGRESSION
    if u[1] < hyper:
        return Course.PROGRESSION
    return Course.STABLE_DISEASE if u[1] < hyper + stable else Course.PROGRESSION


def _schedule(
    rng: np.random.Generator, n_timepoints: int
) -> tuple[RtSchedule, IciSchedule, list[float], object]:
    enrol, rt_start = sample_enrolment(rng)
    shares = [s[2] for s in params.RT_SCHEDULES]
    dose, fx, _ = params.RT_SCHEDULES[int(rng.choice(len(params.RT_SCHEDULES), p=shares))]
    rt = RtSchedule(course_id="C1", dose_gy=dose, fractions=fx, start=rt_start)
    last_fx = rt.fraction_times()[-1]
    lo, hi = params.ICI_AFTER_LAST_FRACTION_DAYS
    delay = int(rng.integers(lo, hi + 1))
    ici = IciSchedule(agent="pembrolizumab", dose_mg=200.0, start=last_fx + timedelta(days=delay))
    return rt, ici, sample_scan_days(rng, enrol, rt_start, n_timepoints), enrol


def _size(rng: np.random.Generator, organ: Organ, primary: bool, cap: float):
    """Baseline semi-axes (a >= b in plane, c) of a new or baseline lesion, within ``cap``."""
    if organ is Organ.LYMPH_NODE:
        short = _uniform(rng, params.NODE_SHORT_AXIS_MM)
        long_axis = short * _uniform(rng, params.NODE_ELONGATION)
        a, b = long_axis / 2.0, short / 2.0
        c = b * float(rng.uniform(0.9, 1.2))
    else:
        key = "primary" if primary else organ.value
        a = _uniform(rng, params.BASELINE_LONG_AXIS_MM[key]) / 2.0
        b = a * float(rng.uniform(0.75, 0.95))
        c = a * float(rng.uniform(0.75, 0.95))
    room = cap / 1.3  # leave room for growth inside the slot
    s = min(1.0, room / max(a, b, c))
    return (a * s, b * s, c * s)


def _pick_slot(rng: np.random.Generator, free: list[Slot], organ: Organ | None = None) -> Slot:
    if organ is None:
        organs = [o for o in params.METASTASIS_ORGAN_WEIGHTS if any(s.organ == o for s in free)]
        weights = np.array([params.METASTASIS_ORGAN_WEIGHTS[o] for o in organs])
        organ = Organ(organs[int(rng.choice(len(organs), p=weights / weights.sum()))])
    choices = [s for s in free if s.organ is organ]
    slot = choices[int(rng.integers(0, len(choices)))]
    free.remove(slot)
    return slot


# ----------------------------------------------------------------------------- lesions


def _lesion(
    rng: np.random.Generator,
    *,
    track: int,
    slot: Slot,
    primary: bool,
    in_field: bool,
    new: bool,
    appear_days: float,
    reference_days: float,
    behaviour: Behaviour,
    latents: Latents,
    days: list[float],
    pp_peak: float | None,
) -> LesionV2:
    """Draw every parameter of one lesion (the same draws in the same order for every kind)."""
    jitter = rng.uniform(-SLOT_JITTER_MM, SLOT_JITTER_MM, 3)
    centre = tuple(float(c + j) for c, j in zip(slot.centre_mm, jitter, strict=True))
    semi = _size(rng, slot.organ, primary, slot.max_radius_mm)
    if new:
        d = _uniform(rng, params.NEW_LESION_DIAMETER_MM) / 2.0
        semi = (d, d * float(rng.uniform(0.75, 0.95)), d * float(rng.uniform(0.75, 0.95)))
    angle = float(rng.uniform(0.0, 180.0))
    doubling = params.DOUBLING_DAYS_MEDIAN * math.exp(
        -params.DOUBLING_LOG_SD_PATIENT * latents.growth
        + params.DOUBLING_LOG_SD_LESION * float(rng.normal())
    )
    nadir = _uniform(rng, params.RESPONSE_NADIR_DIAMETER) ** 3
    tau = _uniform(rng, params.RESPONSE_TAU_DAYS)
    onset = _uniform(rng, params.LATE_RESPONSE_ONSET_DAYS)
    peak_diam = _uniform(rng, params.PSEUDO_PROGRESSION_PEAK_DIAMETER)
    width = _uniform(rng, params.PSEUDO_PROGRESSION_WIDTH_DAYS)
    change = _uniform(rng, params.STABLE_DISEASE_DIAMETER_CHANGE)
    stable_rate = 3.0 * math.log1p(change) / 250.0
    hyper = _uniform(rng, params.HYPERPROGRESSION_RATE_RATIO)
    # radiotherapy
    z_plateau = -latents.radiosensitivity * math.sqrt(0.5) + math.sqrt(0.5) * float(rng.normal())
    plateau_diam = params.RT_PLATEAU_DIAMETER_MEAN + params.RT_PLATEAU_DIAMETER_SD * z_plateau
    plateau = float(np.clip(plateau_diam, 0.4, 1.0)) ** 3 if in_field else 1.0
    rt_tau = _uniform(rng, params.RT_TAU_DAYS)
    hazard = params.LOCAL_FAILURE_HAZARD_PER_DAY * math.exp(
        -params.LOCAL_FAILURE_RADIOSENSITIVITY * latents.radiosensitivity
    )
    failure = float(rng.exponential(1.0 / hazard))
    onset_rt = float(
        np.exp(
            math.log(params.RT_LUNG_CHANGE_ONSET_MEDIAN_DAYS)
            + params.RT_LUNG_CHANGE_ONSET_LOG_SD * rng.normal()
        )
    )
    peak_hu = _uniform(rng, params.RT_LUNG_CHANGE_PEAK_HU)
    margin = _uniform(rng, params.RT_LUNG_CHANGE_MARGIN_MM)
    reader_rt = bool(rng.uniform() < params.READER_INCLUDES_RT_CHANGE)
    # immune state of this lesion
    rho = params.LESION_INFILTRATION_CORRELATION
    infiltration = math.sqrt(rho) * latents.infiltration + math.sqrt(1 - rho) * float(rng.normal())
    immune_noise = float(rng.normal())
    lesion_sd = params.CT_NOISE_SD * math.sqrt(params.CT_NOISE_LESION_SHARE)
    scan_sd = params.CT_NOISE_SD * math.sqrt(1.0 - params.CT_NOISE_LESION_SHARE)
    ct_lesion = lesion_sd * float(rng.normal())
    ct_scans = tuple(float(v) for v in scan_sd * rng.normal(size=len(days)))
    necrosis = float(rng.uniform(0.0, 0.35))  # assumption: independent of the immune state

    peak = pp_peak if behaviour is Behaviour.PSEUDO else None
    amplitude = peak_diam**3 - 1.0 if behaviour is Behaviour.PSEUDO and not new else 0.0
    return LesionV2(
        track=track,
        organ=slot.organ,
        slot=slot.name,
        primary=primary,
        in_field=in_field,
        new=new,
        appear_days=appear_days,
        reference_days=reference_days,
        centre_mm=centre,
        semi_axes_mm=semi,
        angle_deg=angle,
        max_semi_axis_mm=slot.max_radius_mm,
        behaviour=behaviour,
        doubling_days=float(doubling),
        nadir=float(nadir),
        tau_days=tau,
        onset_days=float(onset),
        peak_days=peak,
        peak_amplitude=float(amplitude),
        peak_width_days=width,
        stable_rate_per_day=float(stable_rate),
        hyper_ratio=hyper,
        rt_plateau=plateau,
        rt_tau_days=rt_tau,
        local_failure_days=failure if in_field else None,
        rt_change_onset_days=onset_rt if (in_field and slot.organ is Organ.LUNG) else None,
        rt_change_peak_hu=peak_hu,
        rt_change_margin_mm=margin,
        reader_includes_rt_change=reader_rt,
        infiltration=float(infiltration),
        immune_noise=immune_noise,
        ct_noise_lesion=ct_lesion,
        ct_noise_scans=ct_scans,
        necrosis=necrosis,
    )


def _dissociate(rng: np.random.Generator, lesions: list[LesionV2], course: Course) -> bool:
    """Turn one non-irradiated lesion against the course (a dissociated response), in place.

    In a responder the least infiltrated non-irradiated lesion escapes (grows); otherwise the
    most infiltrated one responds. Needs at least two non-irradiated lesions.
    """
    candidates = [j for j, les in enumerate(lesions) if not les.in_field]
    if len(candidates) < 2 or rng.uniform() >= params.DISSOCIATED_GIVEN_ELIGIBLE:
        return False
    pick = min if course.responder else max
    j = pick(candidates, key=lambda c: lesions[c].infiltration)
    flipped = Behaviour.GROW if course.responder else Behaviour.RESPOND
    lesions[j] = replace(lesions[j], behaviour=flipped, peak_days=None, peak_amplitude=0.0)
    return True


def sample_patient(
    rng: np.random.Generator,
    number: int,
    n_timepoints: int = 5,
    variant: StoryVariant = VARIANTS[BASE],
) -> PatientV2:
    """Draw patient ``number`` (1-based) of a story-v2 cohort with ``n_timepoints`` CT sessions
    (under ``variant``: :mod:`clinic.story_v2.variants`; the same draws for every variant)."""
    if n_timepoints < 1:
        raise ValueError(f"n_timepoints must be at least 1 (the planning CT), got {n_timepoints}")
    g, i, a, r, k = (float(v) for v in rng.normal(size=5))
    latents = Latents(g, i, a, r, k)
    course = _course(rng, latents, variant)
    rt, ici, days, enrol = _schedule(rng, n_timepoints)
    follow_ups = days[1:]

    anatomy = sample_anatomy(rng)
    free = list(slots(anatomy))

    # baseline lesions: the lung primary, then metastases by organ frequency
    n = int(rng.integers(params.LESION_COUNT[0], params.LESION_COUNT[1] + 1))
    chosen = [(_pick_slot(rng, free, Organ.LUNG), True)]
    for _ in range(n - 1):
        chosen.append((_pick_slot(rng, free), False))
    gtv = 0 if rng.uniform() < params.GTV_IS_PRIMARY else int(rng.integers(1, n))
    in_field = {gtv}
    if n >= 3 and rng.uniform() < params.TWO_LESIONS_IN_FIELD:
        others = [j for j in range(n) if j != gtv]
        in_field.add(others[int(rng.integers(0, len(others)))])

    pp_peak = None
    if course is Course.PSEUDO_PROGRESSION:
        at_first = rng.uniform() < params.PSEUDO_PROGRESSION_AT_FIRST_FOLLOW_UP
        if not follow_ups:
            pp_peak = 50.0  # a planning scan only: the peak falls after it
        else:
            pp_peak = follow_ups[0] if at_first or len(follow_ups) < 2 else follow_ups[1]

    lesions = []
    for j, (slot, primary) in enumerate(chosen):
        lesions.append(
            _lesion(
                rng,
                track=j + 1,
                slot=slot,
                primary=primary,
                in_field=j in in_field,
                new=False,
                appear_days=-math.inf,
                reference_days=0.0,
                behaviour=_BEHAVIOUR_OF[course],
                latents=latents,
                days=days,
                pp_peak=pp_peak,
            )
        )
    dissociated = _dissociate(rng, lesions, course)
    lesions.extend(_new_lesions(rng, course, latents, days, free, pp_peak, len(lesions)))

    timepoints = sample_timepoints(rng, rt.start, days)
    if not variant.pcct:
        timepoints = tuple(replace(tp, pcct=False) for tp in timepoints)

    biopsies = []
    primary = lesions[0]
    b_days = [-(rt.start - enrol).days - float(rng.integers(21, 36))]
    targets = [primary]
    out_of_field = [
        les for les in lesions if not les.in_field and not les.new and les is not primary
    ]
    if rng.uniform() < params.ON_TREATMENT_BIOPSY and out_of_field:
        b_days.append(float(rng.integers(28, 57)))
        targets.append(out_of_field[int(rng.integers(0, len(out_of_field)))])
    r_same = params.SAMPLING_RELIABILITY
    c = params.PDL1_IMMUNE_LOADING
    ici_days = (ici.start - rt.start).total_seconds() / 86400.0
    for idx, (d, les) in enumerate(zip(b_days, targets, strict=True)):
        state = les.immune_state(d, ici_days)
        til_read = math.sqrt(r_same) * state + math.sqrt(1 - r_same) * float(rng.normal())
        pdl1_true = (
            c * (state + latents.activation) / math.sqrt(2.0)
            + math.sqrt(1 - c * c) * latents.constitutive_pdl1
        )
        pdl1_read = math.sqrt(r_same) * pdl1_true + math.sqrt(1 - r_same) * float(rng.normal())
        intra = params.INFLAMED_TIL_PER_MM2 * math.exp(
            params.LOG_TIL_PER_SD * (til_read - INFLAMED_CUT)
        )
        stromal = params.STROMAL_TIL_AT_DESERT_THRESHOLD * math.exp(
            params.STROMAL_LOG_TIL_PER_SD * (til_read - DESERT_CUT)
        )
        biopsies.append(
            BiopsyV2(
                index=idx,
                days=d,
                at=rt.start + timedelta(days=d, hours=10),
                lesion_track=les.track,
                organ=les.organ,
                infiltration_read=til_read,
                phenotype=phenotype_of(til_read),
                til_intratumoral_per_mm2=float(intra),
                til_stromal_per_mm2=float(stromal),
                pd_l1_tps=tps_from_latent(pdl1_read),
            )
        )

    return PatientV2(
        clear_id=f"VC2-{number:04d}",
        sex="F" if rng.uniform() < 0.45 else "M",
        birth_year=int(rng.integers(1945, 1975)),
        anatomy=anatomy,
        latents=latents,
        phenotype=phenotype_of(latents.infiltration),
        course=course,
        dissociated=dissociated,
        lesions=tuple(lesions),
        rt=rt,
        ici=ici,
        timepoints=timepoints,
        biopsies=tuple(biopsies),
    )


def _new_lesions(
    rng: np.random.Generator,
    course: Course,
    latents: Latents,
    days: list[float],
    free: list[Slot],
    pp_peak: float | None,
    n_existing: int,
) -> list[LesionV2]:
    """New lesions of progression, hyperprogression and (transiently) pseudo-progression."""
    share = {
        Course.PROGRESSION: params.NEW_LESION_SHARE_PROGRESSION,
        Course.HYPERPROGRESSION: params.NEW_LESION_SHARE_HYPERPROGRESSION,
        Course.PSEUDO_PROGRESSION: params.NEW_LESION_SHARE_PSEUDO_PROGRESSION,
    }.get(course, 0.0)
    u = rng.uniform(size=3)
    follow_ups = days[1:]
    if u[0] >= share or not follow_ups or not free:
        return []
    count = min(2 if u[1] < params.TWO_NEW_LESIONS else 1, len(free))
    if course is Course.PSEUDO_PROGRESSION and pp_peak is not None:
        scan = min(range(len(follow_ups)), key=lambda j: abs(follow_ups[j] - pp_peak))
        behaviour = Behaviour.PSEUDO
    elif course is Course.HYPERPROGRESSION:
        scan = 0 if u[2] < 0.7 or len(follow_ups) < 2 else 1  # assumption: early, as HPD is
        behaviour = Behaviour.HYPER
    else:
        scan = int(u[2] * len(follow_ups))
        behaviour = Behaviour.GROW
    seen = follow_ups[scan]
    before = days[scan]  # the previous scan, where the lesion was not yet there
    out = []
    for m in range(count):
        appear = float(rng.uniform(max(before + 1.0, seen - 35.0), seen - 1.0))
        slot = _pick_slot(rng, free)
        out.append(
            _lesion(
                rng,
                track=n_existing + m + 1,
                slot=slot,
                primary=False,
                in_field=False,
                new=True,
                appear_days=appear,
                reference_days=seen,
                behaviour=behaviour,
                latents=latents,
                days=days,
                pp_peak=seen if behaviour is Behaviour.PSEUDO else pp_peak,
            )
        )
    return out
