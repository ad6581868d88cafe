"""The generative story of a virtual patient, as pure functions and frozen dataclasses.

Nothing here writes a file: :func:`sample_patient` draws one patient from a seeded
``numpy.random.Generator`` and the other functions evaluate the draw at a time.

The story
---------
1. **Immune phenotype.** Drawn as inflamed / excluded / desert with probabilities
   0.44 / 0.37 / 0.19 (NSCLC series of Park et al., JCO 2022).
2. **Immune activity.** A latent continuous score ``immune_activity = mu[phenotype] + N(0, 0.8)``
   with ``mu`` = +1.0 / 0.0 / -1.0. Everything the instruments see (TIL density on the slide,
   PD-L1, CT texture heterogeneity, rim enhancement and iodine uptake) is drawn from this score
   with its own noise, so no single signal predicts response perfectly. The CT pattern also
   follows the phenotype's spatial arrangement, as the phenotypes are defined by where the
   T cells are: an *excluded* tumour, with lymphocytes held in the stroma at its margin, has an
   enhancing rim (+0.8 mg/ml iodine); an *inflamed* tumour, infiltrated throughout, a more
   enhancing core (+0.4 mg/ml); a *desert* tumour a larger necrotic core (+0.15 of the radius).
   On the latent values alone these separate the phenotypes with a balanced accuracy of about
   0.94 (activity alone: 0.66); what a scan measures of them is noisier.
3. **Response.** ``P(responder) = sigmoid(1.4 * immune_activity - 0.35)`` (about 0.66 / 0.38 /
   0.16 by phenotype). Among responders, pseudo-progression is drawn with probability 0.18 /
   0.12 / 0.08 by phenotype (about 6 per cent of all patients), peaking at the first follow-up
   in 80 per cent of cases and at the second otherwise.
4. **Treatment.** A radiotherapy course (60 Gy / 30 fx, 55 Gy / 20 fx or 50 Gy / 5 fx, one
   fraction per weekday) starts 7 to 14 days after the planning CT; an immune checkpoint
   inhibitor (pembrolizumab 200 mg or atezolizumab 1200 mg) is given every 21 days from the
   first fraction until the last scan.
5. **Lesions.** One irradiated target lesion (the GTV, in a lung) of 25 to 50 mm longest axial
   diameter, and 0 to 2 non-irradiated lesions of 20 to 32 mm (one in the other lung, one
   mediastinal node). Each is an ellipsoid in the patient's frame (semi-axes a, b in the
   axial plane, c along z, rotated about z).
6. **Trajectory.** With ``t`` days from the first fraction, every lesion's volume is
   ``V(t) = V0 * f(t)``:

   * responder: ``f = floor + (1 - floor) * exp(-t / tau)``, floor 0.22 to 0.45, tau 35 to 90 d;
     non-irradiated lesions shrink more slowly (tau x 1.6) to a higher floor (abscopal effect).
   * non-responder: a radiotherapy dip, then exponential growth after a change point
     (day 35 to 150; the irradiated lesion's change point comes 20 to 60 days later, local
     control), doubling time 50 to 110 days, capped at 2.6 x baseline. The dose shrinks the
     irradiated target whatever the immune response (local effect: towards 55 to 88 per cent
     of its volume, tau 20 to 40 d), so at the first follow-up a shrinking target does not yet
     tell a responder from a non-responder; non-irradiated lesions barely dip (90 to 100 per
     cent). Measuring the target alone, burden separates the classes only partly then.
   * pseudo-progression: the responder curve multiplied by a transient swelling (a Gaussian
     bump in time centred on the first, or second, follow-up scan, width 14 to 24 days) that
     brings the volume to 1.9 to 2.5 x baseline at its peak (diameter +24 to +36 per cent,
     beyond RECIST's +20); non-irradiated lesions swell to 1.3 to 1.6 x.

   No axis of a lesion drops below a residual of 20 mm, so every lesion stays measurable.
7. **Timepoints.** A planning CT 7 to 14 days before the first fraction, then follow-up scans
   every 6 to 9 weeks;
   each follow-up is a photon-counting CT (PCCT) with probability 0.5, else a conventional CT.
   A diagnostic biopsy precedes planning (day -21 to -35); 30 per cent of patients also have an
   on-treatment biopsy at week 4 to 8. Patient position varies between scans (translation of
   up to 6 mm per axis, rotation about the long axis of up to 2 degrees).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import numpy as np

from schemas.enums import ImmunePhenotype

PHENOTYPE_PROBABILITIES: dict[ImmunePhenotype, float] = {
    ImmunePhenotype.INFLAMED: 0.44,
    ImmunePhenotype.EXCLUDED: 0.37,
    ImmunePhenotype.DESERT: 0.19,
}
ACTIVITY_MEAN: dict[ImmunePhenotype, float] = {
    ImmunePhenotype.INFLAMED: 1.0,
    ImmunePhenotype.EXCLUDED: 0.0,
    ImmunePhenotype.DESERT: -1.0,
}
PSEUDO_PROGRESSION_GIVEN_RESPONSE: dict[ImmunePhenotype, float] = {
    ImmunePhenotype.INFLAMED: 0.18,
    ImmunePhenotype.EXCLUDED: 0.12,
    ImmunePhenotype.DESERT: 0.08,
}
MIN_DIAMETER_MM = 20.0
"""Residual size below which no lesion shrinks (keeps every lesion measurable)."""
MAX_GROWTH = 2.6
"""Largest volume ratio to baseline a growing lesion reaches."""

COHORT_START = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


class ResponseClass(StrEnum):
    """Ground-truth course of a patient."""

    RESPONDER = "responder"
    NON_RESPONDER = "non_responder"
    PSEUDO_PROGRESSION = "pseudo_progression"


@dataclass(frozen=True)
class RtSchedule:
    """One radiotherapy course."""

    course_id: str
    dose_gy: float
    fractions: int
    start: datetime

    @property
    def dose_per_fraction_gy(self) -> float:
        return self.dose_gy / self.fractions

    def fraction_times(self) -> list[datetime]:
        """One fraction per weekday from ``start``, at the start's time of day."""
        times: list[datetime] = []
        day = self.start
        while len(times) < self.fractions:
            if day.weekday() < 5:
                times.append(day)
            day += timedelta(days=1)
        return times


@dataclass(frozen=True)
class IciSchedule:
    """Immune checkpoint inhibitor cycles every ``interval_days``."""

    agent: str
    dose_mg: float
    start: datetime
    interval_days: int = 21

    def dose_times(self, until: datetime) -> list[datetime]:
        """Cycle times from ``start`` up to and including ``until``."""
        times, t = [], self.start + timedelta(hours=2)
        while t <= until:
            times.append(t)
            t += timedelta(days=self.interval_days)
        return times


@dataclass(frozen=True)
class Lesion:
    """An ellipsoidal lesion in the patient frame (LPS, mm, origin at the scan centre)."""

    index: int
    irradiated: bool
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float]  # a, b (axial plane), c (along z) at baseline
    angle_deg: float  # rotation of (a, b) about z
    # trajectory parameters
    floor: float
    tau_days: float
    change_point_days: float | None
    doubling_days: float
    pp_peak_days: float | None
    pp_amplitude: float
    pp_width_days: float

    @property
    def baseline_volume_ml(self) -> float:
        a, b, c = self.semi_axes_mm
        return 4.0 / 3.0 * math.pi * a * b * c / 1000.0


@dataclass(frozen=True)
class Pose:
    """Rigid patient position on the table: translation (mm) and rotation about z (deg)."""

    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw_deg: float = 0.0


@dataclass(frozen=True)
class Timepoint:
    """One imaging session."""

    index: int
    days: float  # from the first fraction
    at: datetime
    pcct: bool
    pose: Pose

    @property
    def label(self) -> str:
        return "planning" if self.index == 0 else f"fu{self.index}"


@dataclass(frozen=True)
class Biopsy:
    """One biopsy with its slide-level truth."""

    index: int
    days: float
    at: datetime
    til_intratumoral_per_mm2: float
    til_stromal_per_mm2: float
    pd_l1_tps: float


@dataclass(frozen=True)
class Anatomy:
    """Body and lung outline parameters (mm)."""

    body_semi_axes_mm: tuple[float, float]
    lung_semi_axes_mm: tuple[float, float]
    lung_offset_x_mm: float
    fat_mm: float


@dataclass(frozen=True)
class Patient:
    """Everything drawn for one virtual patient."""

    clear_id: str
    phenotype: ImmunePhenotype
    immune_activity: float
    response: ResponseClass
    sex: str
    birth_year: int
    anatomy: Anatomy
    lesions: tuple[Lesion, ...]
    rt: RtSchedule
    ici: IciSchedule
    timepoints: tuple[Timepoint, ...]
    biopsies: tuple[Biopsy, ...]
    heterogeneity: float  # CT texture amplitude, HU
    rim_enhancement: float  # iodine excess at the rim, mg/ml
    core_iodine: float  # iodine in the core, mg/ml
    necrosis: float  # fraction of the radius that is necrotic core (0 = none)
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def responder(self) -> bool:
        return self.response is not ResponseClass.NON_RESPONDER

    @property
    def change_point_days(self) -> float | None:
        """Day (from first fraction) the disease turns; None for responders."""
        points = [
            les.change_point_days for les in self.lesions if les.change_point_days is not None
        ]
        return min(points) if points else None


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def volume_factor(lesion: Lesion, days: float) -> float:
    """Volume relative to baseline of ``lesion`` at ``days`` from the first fraction."""
    t = max(days, 0.0)
    if lesion.change_point_days is None:
        f = lesion.floor + (1.0 - lesion.floor) * math.exp(-t / lesion.tau_days)
    else:
        dip = 1.0 - (1.0 - lesion.floor) * (
            1.0 - math.exp(-min(t, lesion.change_point_days) / lesion.tau_days)
        )
        growth = math.exp(
            math.log(2.0) * max(0.0, t - lesion.change_point_days) / lesion.doubling_days
        )
        f = min(dip * growth, MAX_GROWTH)
    if lesion.pp_peak_days is not None:
        z = (days - lesion.pp_peak_days) / lesion.pp_width_days
        f *= 1.0 + lesion.pp_amplitude * math.exp(-0.5 * z * z)
    return f


def lesion_semi_axes(lesion: Lesion, days: float) -> tuple[float, float, float]:
    """Semi-axes (mm) at ``days``: isotropic scaling of the baseline.

    Scaling stops where the shortest axis reaches :data:`MIN_DIAMETER_MM` (the residual).
    """
    s = volume_factor(lesion, days) ** (1.0 / 3.0)
    a, b, c = lesion.semi_axes_mm
    s = max(s, MIN_DIAMETER_MM / (2.0 * min(a, b, c)))
    return (a * s, b * s, c * s)


def lesion_truth(lesion: Lesion, days: float) -> tuple[float, float]:
    """(volume ml, longest axial diameter mm) of ``lesion`` at ``days``."""
    a, b, c = lesion_semi_axes(lesion, days)
    return 4.0 / 3.0 * math.pi * a * b * c / 1000.0, 2.0 * max(a, b)


def _sample_lesion(
    rng: np.random.Generator,
    index: int,
    irradiated: bool,
    response: ResponseClass,
    follow_up_days: list[float],
    centre: tuple[float, float, float],
) -> Lesion:
    diameter = rng.uniform(25.0, 50.0) if irradiated else rng.uniform(20.0, 32.0)
    a = diameter / 2.0
    b = a * rng.uniform(0.75, 0.95)
    c = a * rng.uniform(0.75, 0.95)
    floor = rng.uniform(0.22, 0.45)
    tau = rng.uniform(35.0, 90.0)
    change_point = None
    pp_peak = None
    pp_amp = 0.0
    if not irradiated:
        floor = min(1.0, floor + 0.2)
        tau *= 1.6
    if response is ResponseClass.NON_RESPONDER:
        change_point = rng.uniform(35.0, 150.0)
        floor = rng.uniform(0.55, 0.88) if irradiated else rng.uniform(0.9, 1.0)
        tau = rng.uniform(20.0, 40.0)
    if response is ResponseClass.PSEUDO_PROGRESSION:
        which = 0 if rng.uniform() < 0.8 or len(follow_up_days) < 2 else 1
        pp_peak = follow_up_days[which] if follow_up_days else 50.0
        peak_ratio = rng.uniform(1.9, 2.5) if irradiated else rng.uniform(1.3, 1.6)
        base = floor + (1.0 - floor) * math.exp(-max(pp_peak, 0.0) / tau)
        pp_amp = peak_ratio / base - 1.0
    return Lesion(
        index=index,
        irradiated=irradiated,
        centre_mm=centre,
        semi_axes_mm=(a, b, c),
        angle_deg=float(rng.uniform(0.0, 180.0)),
        floor=float(floor),
        tau_days=float(tau),
        change_point_days=None if change_point is None else float(change_point),
        doubling_days=float(rng.uniform(50.0, 110.0)),
        pp_peak_days=pp_peak,
        pp_amplitude=float(pp_amp),
        pp_width_days=float(rng.uniform(14.0, 24.0)),
    )


def sample_enrolment(rng: np.random.Generator) -> tuple[datetime, datetime]:
    """Enrolment (the planning CT's day) and the first fraction 7 to 14 days later, on a weekday."""
    enrol = COHORT_START + timedelta(days=int(rng.integers(0, 180)))
    rt_start = enrol + timedelta(days=int(rng.integers(7, 15)))
    while rt_start.weekday() >= 5:
        rt_start += timedelta(days=1)
    return enrol, rt_start


def sample_scan_days(
    rng: np.random.Generator, enrol: datetime, rt_start: datetime, n_timepoints: int
) -> list[float]:
    """Days of the CT sessions from the first fraction: planning at enrolment, then every 6 to 9
    weeks."""
    days = [-(rt_start - enrol).total_seconds() / 86400.0]
    for _ in range(1, n_timepoints):
        days.append(days[-1] + 7 * float(rng.integers(6, 10)))
    return days


def sample_timepoints(
    rng: np.random.Generator, rt_start: datetime, days: list[float]
) -> tuple[Timepoint, ...]:
    """One session per day of ``days``: the patient's pose (the planning CT's is the reference),
    the time of day, and a photon-counting CT with probability 0.5 at each follow-up."""
    timepoints = []
    for i, d in enumerate(days):
        pose = Pose(
            shift_mm=tuple(float(v) for v in rng.uniform(-6.0, 6.0, 3)) if i else (0.0, 0.0, 0.0),
            yaw_deg=float(rng.uniform(-2.0, 2.0)) if i else 0.0,
        )
        at = rt_start + timedelta(days=d) + timedelta(minutes=int(rng.integers(0, 480)))
        timepoints.append(Timepoint(i, d, at, bool(i > 0 and rng.uniform() < 0.5), pose))
    return tuple(timepoints)


def sample_anatomy(rng: np.random.Generator) -> Anatomy:
    """Body and lung outline of one patient."""
    body = (rng.uniform(145.0, 165.0), rng.uniform(105.0, 125.0))
    return Anatomy(
        body_semi_axes_mm=(float(body[0]), float(body[1])),
        lung_semi_axes_mm=(float(rng.uniform(55.0, 62.0)), float(rng.uniform(80.0, 92.0))),
        lung_offset_x_mm=float(rng.uniform(72.0, 80.0)),
        fat_mm=float(rng.uniform(8.0, 20.0)),
    )


def sample_patient(rng: np.random.Generator, number: int, n_timepoints: int = 5) -> Patient:
    """Draw patient ``number`` (1-based) of a cohort with ``n_timepoints`` CT sessions."""
    if n_timepoints < 1:
        raise ValueError(f"n_timepoints must be at least 1 (the planning CT), got {n_timepoints}")
    phenotypes = list(PHENOTYPE_PROBABILITIES)
    phenotype = phenotypes[
        int(rng.choice(len(phenotypes), p=list(PHENOTYPE_PROBABILITIES.values())))
    ]
    activity = float(ACTIVITY_MEAN[phenotype] + rng.normal(0.0, 0.8))
    responder = rng.uniform() < _sigmoid(1.4 * activity - 0.35)
    response = ResponseClass.NON_RESPONDER
    if responder:
        response = ResponseClass.RESPONDER
        if rng.uniform() < PSEUDO_PROGRESSION_GIVEN_RESPONSE[phenotype]:
            response = ResponseClass.PSEUDO_PROGRESSION

    enrol, rt_start = sample_enrolment(rng)
    dose, fx = [(60.0, 30), (55.0, 20), (50.0, 5)][int(rng.choice(3, p=[0.6, 0.25, 0.15]))]
    rt = RtSchedule(course_id="C1", dose_gy=dose, fractions=fx, start=rt_start)
    agent, mg = [("pembrolizumab", 200.0), ("atezolizumab", 1200.0)][int(rng.integers(0, 2))]
    ici = IciSchedule(agent=agent, dose_mg=mg, start=rt_start)

    days = sample_scan_days(rng, enrol, rt_start, n_timepoints)
    follow_ups = days[1:]

    side = 1.0 if rng.uniform() < 0.5 else -1.0
    # Placements that cannot overlap even at the largest growth: the target in one lung, a
    # second lesion in the other lung, a third as a mediastinal node.
    sites = [
        (side * rng.uniform(62.0, 85.0), rng.uniform(-25.0, 15.0), rng.uniform(-15.0, 15.0)),
        (-side * rng.uniform(62.0, 85.0), rng.uniform(-25.0, 15.0), rng.uniform(-15.0, 15.0)),
        (rng.uniform(-8.0, 8.0), rng.uniform(35.0, 50.0), rng.uniform(-15.0, 15.0)),
    ]
    n_other = int(rng.choice(3, p=[0.35, 0.45, 0.2]))
    lesions = [
        _sample_lesion(rng, i, i == 0, response, follow_ups, tuple(float(v) for v in sites[i]))
        for i in range(1 + n_other)
    ]

    timepoints = sample_timepoints(rng, rt_start, days)

    til_mean = {
        ImmunePhenotype.INFLAMED: (900.0, 500.0),
        ImmunePhenotype.EXCLUDED: (90.0, 700.0),
        ImmunePhenotype.DESERT: (25.0, 40.0),
    }[phenotype]
    biopsies = []
    b_days = [-(rt_start - enrol).days - float(rng.integers(21, 36))]
    if rng.uniform() < 0.3:
        b_days.append(float(rng.integers(28, 57)))
    for i, d in enumerate(b_days):
        scale = math.exp(0.35 * activity + rng.normal(0.0, 0.25))
        biopsies.append(
            Biopsy(
                index=i,
                days=d,
                at=rt_start + timedelta(days=d, hours=10),
                til_intratumoral_per_mm2=float(til_mean[0] * scale),
                til_stromal_per_mm2=float(til_mean[1] * scale),
                pd_l1_tps=float(
                    np.clip(35.0 + 25.0 * activity + rng.normal(0.0, 20.0), 0.0, 100.0)
                ),
            )
        )

    anatomy = sample_anatomy(rng)
    noisy = activity + rng.normal(0.0, 0.7)
    inflamed = float(phenotype is ImmunePhenotype.INFLAMED)
    excluded = float(phenotype is ImmunePhenotype.EXCLUDED)
    desert = float(phenotype is ImmunePhenotype.DESERT)
    return Patient(
        clear_id=f"VC-{number:04d}",
        phenotype=phenotype,
        immune_activity=activity,
        response=response,
        sex="F" if rng.uniform() < 0.45 else "M",
        birth_year=int(rng.integers(1945, 1975)),
        anatomy=anatomy,
        lesions=tuple(lesions),
        rt=rt,
        ici=ici,
        timepoints=timepoints,
        biopsies=tuple(biopsies),
        heterogeneity=float(np.clip(12.0 + 6.0 * noisy, 4.0, 30.0)),
        rim_enhancement=float(
            np.clip(0.6 + 0.8 * excluded + 0.4 * (activity + rng.normal(0.0, 0.7)), 0.0, 3.0)
        ),
        core_iodine=float(
            np.clip(1.4 + 0.4 * inflamed + 0.3 * (activity + rng.normal(0.0, 0.7)), 0.3, 3.0)
        ),
        necrosis=float(
            np.clip(0.2 + 0.15 * desert - 0.1 * (activity + rng.normal(0.0, 0.6)), 0.0, 0.6)
        ),
    )
