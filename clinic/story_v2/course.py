"""Evaluate a story-v2 lesion at a day: its size, whether it is there, its immune state.

Days count from the first radiotherapy fraction. A lesion's volume is its reference volume
times :func:`volume_factor`; its semi-axes scale isotropically and stop at the slot's bound.
Pure functions of the drawn :class:`~clinic.story_v2.patient.LesionV2`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from clinic.story_v2 import params
from clinic.story_v2.anatomy import Organ
from clinic.story_v2.patient import RESPONDING, Behaviour, LesionV2


def _immune(lesion: LesionV2, t: float) -> float:
    """Volume factor of the lesion's own (immune or natural) course, 1 at day 0."""
    b = lesion.behaviour
    if t <= 0.0:
        return 1.0
    if b is Behaviour.RESPOND:
        return lesion.nadir + (1.0 - lesion.nadir) * math.exp(-t / lesion.tau_days)
    if b is Behaviour.LATE_RESPOND:
        s = max(0.0, t - lesion.onset_days)
        return lesion.nadir + (1.0 - lesion.nadir) * math.exp(-s / lesion.tau_days)
    if b is Behaviour.PSEUDO:
        peak = lesion.peak_days if lesion.peak_days is not None else lesion.onset_days
        s = max(0.0, t - peak)
        shrink = lesion.nadir + (1.0 - lesion.nadir) * math.exp(-s / lesion.tau_days)
        if t <= peak:
            bump = 1.0 + lesion.peak_amplitude * (t / peak) ** 2
        else:
            z = (t - peak) / lesion.peak_width_days
            bump = 1.0 + lesion.peak_amplitude * math.exp(-0.5 * z * z)
        return shrink * bump
    if b is Behaviour.STABLE:
        return math.exp(lesion.stable_rate_per_day * t)
    rate = lesion.hyper_ratio if b is Behaviour.HYPER else 1.0
    return 2.0 ** (t * rate / lesion.doubling_days)


def _radiotherapy(lesion: LesionV2, t: float) -> float:
    """Volume factor of SBRT alone (1 for a lesion outside the field)."""
    if not lesion.in_field or t <= 0.0:
        return 1.0
    return lesion.rt_plateau + (1.0 - lesion.rt_plateau) * math.exp(-t / lesion.rt_tau_days)


def volume_factor(lesion: LesionV2, days: float) -> float:
    """Volume at ``days`` relative to the lesion's reference volume (0 before it appears).

    A new lesion grows (or, in a pseudo-progression, regresses) from the size it has on the
    first scan showing it. An irradiated lesion follows SBRT's shrinkage, times the immune
    response when there is one; after a local failure it regrows at its own doubling time.
    """
    if days < lesion.appear_days:
        return 0.0
    if lesion.new:
        s = days - lesion.reference_days
        if lesion.behaviour is Behaviour.PSEUDO:
            return math.exp(-max(0.0, s) / lesion.tau_days)
        rate = lesion.hyper_ratio if lesion.behaviour is Behaviour.HYPER else 1.0
        return 2.0 ** (s * rate / lesion.doubling_days)
    if not lesion.in_field:
        return _immune(lesion, days)
    immune = _immune(lesion, days) if lesion.behaviour in RESPONDING else 1.0
    failure = lesion.local_failure_days
    if failure is not None and days > failure:
        at_failure = _radiotherapy(lesion, failure) * (
            _immune(lesion, failure) if lesion.behaviour in RESPONDING else 1.0
        )
        return at_failure * 2.0 ** ((days - failure) / lesion.doubling_days)
    return _radiotherapy(lesion, days) * immune


@dataclass(frozen=True)
class LesionState:
    """A lesion's geometry at one day (patient frame, mm)."""

    present: bool  # exists and is at least VISIBLE_DIAMETER_MM long
    semi_axes_mm: tuple[float, float, float]
    long_axis_mm: float  # longest diameter in the axial plane
    short_axis_mm: float  # perpendicular to it, in the axial plane
    volume_ml: float


def lesion_state(lesion: LesionV2, days: float) -> LesionState:
    """Geometry of ``lesion`` at ``days`` (semi-axes capped at the slot's bound)."""
    f = volume_factor(lesion, days)
    a, b, c = lesion.semi_axes_mm
    if f <= 0.0:
        return LesionState(False, (0.0, 0.0, 0.0), 0.0, 0.0, 0.0)
    s = f ** (1.0 / 3.0)
    s = min(s, lesion.max_semi_axis_mm / max(a, b, c))
    a, b, c = a * s, b * s, c * s
    long_axis, short_axis = 2.0 * max(a, b), 2.0 * min(a, b)
    volume = 4.0 / 3.0 * math.pi * a * b * c / 1000.0
    present = long_axis >= params.VISIBLE_DIAMETER_MM
    return LesionState(present, (a, b, c), long_axis, short_axis, volume)


def recist_diameter(lesion: LesionV2, state: LesionState) -> float:
    """RECIST 1.1 diameter: short axis for a lymph node, long axis otherwise."""
    return state.short_axis_mm if lesion.organ is Organ.LYMPH_NODE else state.long_axis_mm


def measurable(lesion: LesionV2, state: LesionState) -> bool:
    """RECIST 1.1 measurability: long axis >= 10 mm, node short axis >= 15 mm, bone never.

    The phantom's bone lesions are purely lytic, without a soft-tissue mass, which RECIST
    counts as non-measurable.
    """
    if not state.present or lesion.organ is Organ.BONE:
        return False
    if lesion.organ is Organ.LYMPH_NODE:
        return state.short_axis_mm >= 15.0
    return state.long_axis_mm >= 10.0


def ct_reading(lesion: LesionV2, days: float, timepoint: int, ici_start_days: float) -> float:
    """The CT's noisy view of the lesion's current infiltration (AUC 0.67 for CD8 high/low).

    Half of the noise is the lesion's own (fixed), half is drawn per scan.
    """
    scan = lesion.ct_noise_scans[timepoint] if timepoint < len(lesion.ct_noise_scans) else 0.0
    return lesion.immune_state(days, ici_start_days) + lesion.ct_noise_lesion + scan


def rt_change_severity(lesion: LesionV2, days: float) -> float:
    """0..1: how far the lung change after SBRT around ``lesion`` has developed at ``days``."""
    onset = lesion.rt_change_onset_days
    if onset is None or days <= onset:
        return 0.0
    return min(1.0, (days - onset) / params.RT_LUNG_CHANGE_RAMP_DAYS)


def target_lesions(lesions: list[LesionV2] | tuple[LesionV2, ...]) -> list[LesionV2]:
    """RECIST 1.1 target lesions at baseline (truth): measurable, at most 5, 2 per organ.

    The largest (by RECIST diameter) are taken first, as a reader would. Irradiated lesions are
    left out: RECIST 1.1 does not count a lesion in an irradiated area as measurable unless it
    progresses, and PEMBRO-RT judged response on the non-irradiated lesions only.
    """
    baseline = [
        (les, lesion_state(les, 0.0)) for les in lesions if not les.new and not les.in_field
    ]
    ranked = sorted(
        ((les, st) for les, st in baseline if measurable(les, st)),
        key=lambda item: (-recist_diameter(item[0], item[1]), item[0].track),
    )
    chosen: list[LesionV2] = []
    per_organ: dict[Organ, int] = {}
    for les, _st in ranked:
        if len(chosen) == 5 or per_organ.get(les.organ, 0) == 2:
            continue
        chosen.append(les)
        per_organ[les.organ] = per_organ.get(les.organ, 0) + 1
    return chosen


def progression_day(lesions: tuple[LesionV2, ...], until_days: float) -> float | None:
    """First day (from the first fraction, daily) of true RECIST 1.1 progression, or None.

    True progression: the sum of the target lesions' diameters (:func:`target_lesions`, so
    non-irradiated) 20 % and 5 mm above its nadir so far, or a new lesion present. Computed on
    the truth, day by day, up to ``until_days``.
    """
    targets = target_lesions(lesions)
    nadir = math.inf
    for day in range(0, int(until_days) + 1):
        total = sum(recist_diameter(t, lesion_state(t, day)) for t in targets)
        nadir = min(nadir, total)
        if targets and total >= 1.2 * nadir and total - nadir >= 5.0:
            return float(day)
        if any(les.new and lesion_state(les, day).present for les in lesions):
            return float(day)
    return None
