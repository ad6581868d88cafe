"""Lesions followed across timepoints: stable tracking UIDs, matching, new and vanished lesions.

Pure functions over an explicit state: :func:`track` takes the :class:`TrackingState` after the
previous timepoint and the lesions found at this one (:class:`Observation`, centres already in
the reference frame: the baseline scan's patient coordinates, through the study's one
registration) and returns the new state with what happened to each lesion.

* At **baseline** every lesion is tracked: a tracking UID (the reader's, when the annotation
  carries one; else derived from ``uid_root`` and the lesion's key, so a re-run gives the same
  UID), a tracking identifier ``L1``, ``L2``... (targets first, largest first), and its RECIST
  1.1 role (:func:`models.changepoint.recist.select_baseline`).
* At a **follow-up**, a lesion whose tracking UID is already tracked (a propagated lesion, or a
  reader who kept the UIDs) is that lesion. The others are assigned to the remaining tracked
  lesions by the Hungarian method (:func:`scipy.optimize.linear_sum_assignment`) on a cost of
  centre distance over a gate, minus their overlap when the caller measured it (the baseline
  masks carried onto the follow-up); a pair is allowed only within the gate (the larger of
  ``gate_mm`` and ``gate_size_factor`` times the larger long axis) or when the masks overlap,
  and never across organs when both are known.
* An unmatched lesion at a follow-up is a **new lesion**, categorised new target or new
  non-target (:func:`models.changepoint.recist.new_lesion_roles`). A tracked lesion left
  unmatched is **not seen** (it measures 0 mm), unless the study had lesions that could not be
  read (then it is not evaluable: a failed read is no evidence that a lesion is gone). A
  baseline lesion carried by registration to a follow-up without annotation and not found at
  its site was looked for and is not seen, as a reader records a lesion that has disappeared
  (:attr:`models.imaging.annotations.LesionProblem.NOT_FOUND`).
* A normal node (under 10 mm short axis at baseline) that becomes an unequivocal new lesion
  (:func:`models.changepoint.recist.node_unequivocally_new`: 15 mm short axis, or 5 mm above
  its smallest earlier short axis) is recorded as a new lesion under its own tracking UID; one
  of 10 to 15 mm that has grown less is equivocal and stays a normal node for now (EORTC RECIST
  FAQ, "New lymph node lesions"), as does a newly seen node of that size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
from pydicom.uid import generate_uid
from scipy.optimize import linear_sum_assignment

from models.changepoint.recist import (
    LesionMeasure,
    RecistConfig,
    Timepoint,
    new_lesion_roles,
    select_baseline,
)
from schemas.enums import LesionRole, Organ

__all__ = [
    "Assignment",
    "MatchConfig",
    "MatchStatus",
    "Observation",
    "TrackedLesion",
    "TrackingState",
    "TrackingUpdate",
    "match_lesions",
    "track",
]

_ROLE_ORDER = {
    LesionRole.TARGET: 0,
    LesionRole.NON_TARGET: 1,
    LesionRole.NORMAL_NODE: 2,
    LesionRole.NEW_TARGET: 3,
    LesionRole.NEW_NON_TARGET: 4,
}


class MatchStatus(StrEnum):
    """What happened to a lesion at a timepoint."""

    BASELINE = "baseline"
    BY_UID = "by_uid"
    """Same tracking UID as a tracked lesion (propagated, or kept by the reader)."""
    MATCHED = "matched"
    NEW = "new"
    NOT_SEEN = "not_seen"
    NOT_EVALUABLE = "not_evaluable"


@dataclass(frozen=True)
class MatchConfig:
    """Gates and weights of the matching."""

    gate_mm: float = 15.0
    gate_size_factor: float = 1.0
    overlap_weight: float = 1.0
    respect_organs: bool = True


@dataclass(frozen=True)
class Observation:
    """One lesion found at this timepoint, with its centre in the reference frame (mm)."""

    key: str
    """The caller's stable name for it, e.g. ``<SEG SOP UID>/<segment number>``."""
    label: str
    centre_mm: tuple[float, float, float]
    long_axis_mm: float
    short_axis_mm: float
    volume_ml: float
    organ: Organ = Organ.OTHER
    is_node: bool = False
    in_field: bool | None = None
    tracking_uid: str = ""
    """Its tracking UID when known (a propagated lesion, or one the annotation carries)."""


@dataclass(frozen=True)
class TrackedLesion:
    """A lesion followed since it was first seen."""

    tracking_uid: str
    tracking_id: str
    label: str
    role: LesionRole
    organ: Organ
    is_node: bool
    in_field: bool | None
    centre_mm: tuple[float, float, float]
    """Last seen centre, in the reference frame."""
    long_axis_mm: float
    """Last measured long axis (for the matching gate)."""
    first_seen: int
    last_seen: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_uid": self.tracking_uid,
            "tracking_id": self.tracking_id,
            "label": self.label,
            "role": self.role.value,
            "organ": self.organ.value,
            "is_node": self.is_node,
            "in_field": self.in_field,
            "centre_mm": list(self.centre_mm),
            "long_axis_mm": self.long_axis_mm,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrackedLesion:
        return cls(
            tracking_uid=str(d["tracking_uid"]),
            tracking_id=str(d["tracking_id"]),
            label=str(d.get("label", "")),
            role=LesionRole(d["role"]),
            organ=Organ(d.get("organ", Organ.OTHER)),
            is_node=bool(d.get("is_node", False)),
            in_field=d.get("in_field"),
            centre_mm=tuple(float(v) for v in d["centre_mm"]),  # type: ignore[arg-type]
            long_axis_mm=float(d.get("long_axis_mm", 0.0)),
            first_seen=int(d.get("first_seen", 0)),
            last_seen=int(d.get("last_seen", 0)),
        )


@dataclass(frozen=True)
class TrackingState:
    """Every tracked lesion and every assessment so far: what the next timepoint needs.

    JSON-ready through :meth:`to_dict` / :meth:`from_dict`, or rebuilt from stored per-lesion
    rows (a :class:`TrackedLesion` per tracking UID, a
    :class:`~models.changepoint.recist.Timepoint` per assessment).
    """

    lesions: tuple[TrackedLesion, ...] = ()
    timepoints: tuple[Timepoint, ...] = ()
    frame_of_reference_uid: str = ""
    """Of the reference (baseline) scan, whose patient coordinates the centres are in."""
    reference_series_uid: str = ""

    def by_uid(self) -> dict[str, TrackedLesion]:
        return {t.tracking_uid: t for t in self.lesions}

    def to_dict(self) -> dict[str, Any]:
        return {
            "lesions": [t.to_dict() for t in self.lesions],
            "timepoints": [
                {
                    "time": _time_out(tp.time),
                    "label": tp.label,
                    "nontarget_unequivocal_progression": tp.nontarget_unequivocal_progression,
                    "lesions": [m.to_dict() for m in tp.lesions],
                }
                for tp in self.timepoints
            ],
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "reference_series_uid": self.reference_series_uid,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrackingState:
        return cls(
            lesions=tuple(TrackedLesion.from_dict(t) for t in d.get("lesions", [])),
            timepoints=tuple(
                Timepoint(
                    time=_time_in(tp["time"]),
                    lesions=tuple(LesionMeasure.from_dict(m) for m in tp.get("lesions", [])),
                    nontarget_unequivocal_progression=tp.get("nontarget_unequivocal_progression"),
                    label=str(tp.get("label", "")),
                )
                for tp in d.get("timepoints", [])
            ),
            frame_of_reference_uid=str(d.get("frame_of_reference_uid", "")),
            reference_series_uid=str(d.get("reference_series_uid", "")),
        )


def _time_out(t: Any) -> Any:
    return {"iso": t.isoformat()} if hasattr(t, "isoformat") else t


def _time_in(t: Any) -> Any:
    if isinstance(t, Mapping) and "iso" in t:
        from datetime import datetime

        return datetime.fromisoformat(str(t["iso"]))
    return t


@dataclass(frozen=True)
class Assignment:
    """Which tracked lesion an observation is (or that a tracked lesion was not seen)."""

    tracking_uid: str
    tracking_id: str
    role: LesionRole
    status: MatchStatus
    key: str = ""
    """The observation's key (empty for a tracked lesion not seen)."""
    distance_mm: float | None = None
    overlap: float | None = None


@dataclass
class TrackingUpdate:
    """The new state and what happened at this timepoint."""

    state: TrackingState
    assignments: list[Assignment] = field(default_factory=list)
    timepoint: Timepoint | None = None

    def by_key(self) -> dict[str, Assignment]:
        return {a.key: a for a in self.assignments if a.key}


# ------------------------------------------------------------------------- matching


def _compatible(a: Organ, b: Organ) -> bool:
    """Two lesions may be one when their organs agree or one of them is unknown."""
    return a is Organ.OTHER or b is Organ.OTHER or a is b


def match_lesions(
    tracked: Sequence[TrackedLesion],
    observations: Sequence[Observation],
    overlap: Mapping[tuple[str, str], float] | None = None,
    config: MatchConfig | None = None,
) -> list[tuple[int, int, float, float]]:
    """Hungarian assignment of ``observations`` to ``tracked`` lesions.

    Returns ``(tracked index, observation index, distance mm, overlap)`` for each allowed
    pair; ``overlap`` maps ``(tracking UID, observation key)`` to an overlap in [0, 1] (Dice
    of the carried baseline mask and the found one).
    """
    cfg = config or MatchConfig()
    overlap = overlap or {}
    if not tracked or not observations:
        return []
    big = 1e6
    cost = np.full((len(tracked), len(observations)), big)
    dist = np.zeros_like(cost)
    ov = np.zeros_like(cost)
    for i, t in enumerate(tracked):
        for j, o in enumerate(observations):
            d = float(np.linalg.norm(np.subtract(t.centre_mm, o.centre_mm)))
            w = float(overlap.get((t.tracking_uid, o.key), 0.0))
            dist[i, j], ov[i, j] = d, w
            gate = max(cfg.gate_mm, cfg.gate_size_factor * max(t.long_axis_mm, o.long_axis_mm))
            if cfg.respect_organs and not _compatible(t.organ, o.organ):
                continue
            if d <= gate or w > 0:
                cost[i, j] = d / gate - cfg.overlap_weight * w
    rows, cols = linear_sum_assignment(cost)
    return [
        (int(i), int(j), float(dist[i, j]), float(ov[i, j]))
        for i, j in zip(rows, cols, strict=True)
        if cost[i, j] < big
    ]


def _measure(o: Observation, uid: str, role: LesionRole, t: TrackedLesion | None) -> LesionMeasure:
    return LesionMeasure(
        tracking_uid=uid,
        role=role,
        organ=t.organ if t is not None and t.organ is not Organ.OTHER else o.organ,
        is_node=t.is_node if t is not None else o.is_node,
        long_axis_mm=o.long_axis_mm,
        short_axis_mm=o.short_axis_mm,
        volume_ml=o.volume_ml,
        seen=True,
        in_field=t.in_field if t is not None and t.in_field is not None else o.in_field,
    )


def _smallest_short_axis(state: TrackingState, uid: str) -> float | None:
    """The smallest short axis a tracked lesion was seen with so far; None when never."""
    sizes = [
        float(m.short_axis_mm)
        for tp in state.timepoints
        for m in tp.lesions
        if m.tracking_uid == uid and m.seen and m.short_axis_mm is not None
    ]
    return min(sizes, default=None)


def _uid(uid_root: str, key: str) -> str:
    return generate_uid(entropy_srcs=[uid_root, key])


def track(
    state: TrackingState | None,
    observations: Sequence[Observation],
    *,
    time: Any,
    label: str = "",
    uid_root: str = "",
    overlap: Mapping[tuple[str, str], float] | None = None,
    not_evaluable: Sequence[str] = (),
    unattributed_failures: int = 0,
    nontarget_unequivocal_progression: bool | None = None,
    frame_of_reference_uid: str = "",
    reference_series_uid: str = "",
    config: MatchConfig | None = None,
    recist: RecistConfig | None = None,
) -> TrackingUpdate:
    """Follow the lesions of one timepoint: ``state`` in, the new state out.

    Parameters
    ----------
    state
        The state after the previous timepoint; None (or one without timepoints) for the
        baseline.
    observations
        The lesions measured at this timepoint, centres in the reference frame.
    time
        When (days or a datetime), for iRECIST's confirmation window.
    label
        The timepoint's name (e.g. the study UID).
    uid_root
        Seeds the tracking UIDs this call creates (e.g. the study UID): the same inputs give
        the same UIDs, so a replayed study is idempotent.
    overlap
        ``(tracking UID, observation key)`` -> overlap in [0, 1], where measured.
    not_evaluable
        Tracking UIDs of tracked lesions that were looked for and could not be measured.
    unattributed_failures
        How many lesions of this study could not be read and are not known by tracking UID;
        when > 0, tracked lesions left unmatched are not evaluable rather than gone.
    nontarget_unequivocal_progression
        The reader's call on the non-target lesions, when made.
    """
    cfg_recist = recist or RecistConfig()
    if state is None or not state.timepoints:
        return _baseline(
            observations,
            time,
            label,
            uid_root,
            frame_of_reference_uid,
            reference_series_uid,
            cfg_recist,
        )
    n_tp = len(state.timepoints)
    known = state.by_uid()
    assignments: list[Assignment] = []
    matched: dict[str, Observation] = {}
    pairs: dict[str, tuple[float | None, float | None, MatchStatus]] = {}
    rest: list[Observation] = []
    for o in observations:
        if o.tracking_uid and o.tracking_uid in known and o.tracking_uid not in matched:
            matched[o.tracking_uid] = o
            pairs[o.tracking_uid] = (None, None, MatchStatus.BY_UID)
        else:
            rest.append(o)
    open_tracks = [t for t in state.lesions if t.tracking_uid not in matched]
    for i, j, d, w in match_lesions(open_tracks, rest, overlap, config):
        uid = open_tracks[i].tracking_uid
        matched[uid] = rest[j]
        pairs[uid] = (d, w, MatchStatus.MATCHED)
    used = {id(o) for o in matched.values()}
    new_obs = [o for o in rest if id(o) not in used]

    lesions: list[TrackedLesion] = []
    measures: list[LesionMeasure] = []
    promoted: list[tuple[TrackedLesion, Observation]] = []
    skip = set(not_evaluable)
    for t in state.lesions:
        o = matched.get(t.tracking_uid)
        if o is None:
            status = (
                MatchStatus.NOT_EVALUABLE
                if t.tracking_uid in skip or unattributed_failures > 0
                else MatchStatus.NOT_SEEN
            )
            measures.append(
                LesionMeasure(
                    t.tracking_uid,
                    t.role,
                    t.organ,
                    t.is_node,
                    seen=None if status is MatchStatus.NOT_EVALUABLE else False,
                    in_field=t.in_field,
                )
            )
            lesions.append(t)
            assignments.append(Assignment(t.tracking_uid, t.tracking_id, t.role, status))
            continue
        d, w, status = pairs[t.tracking_uid]
        if t.role is LesionRole.NORMAL_NODE and o.short_axis_mm >= cfg_recist.node_pathological_mm:
            promoted.append((t, o))
            continue
        updated = replace(
            t,
            centre_mm=tuple(float(v) for v in o.centre_mm),  # type: ignore[arg-type]
            long_axis_mm=float(o.long_axis_mm),
            last_seen=n_tp,
        )
        lesions.append(updated)
        measures.append(_measure(o, t.tracking_uid, t.role, t))
        assignments.append(Assignment(t.tracking_uid, t.tracking_id, t.role, status, o.key, d, w))

    # new lesions (and normal nodes grown pathological), categorised together
    earlier_new = [m for tp in state.timepoints for m in tp.lesions if m.role.is_new]
    latest_new = {m.tracking_uid: m for m in earlier_new}
    candidates: list[tuple[Observation, TrackedLesion | None]] = [
        *((o, t) for t, o in promoted),
        *((o, None) for o in new_obs),
    ]
    roles = new_lesion_roles(
        [_measure(o, "", LesionRole.NEW_NON_TARGET, t) for o, t in candidates],
        latest_new.values(),
        cfg_recist,
        [None if t is None else _smallest_short_axis(state, t.tracking_uid) for _, t in candidates],
    )
    next_number = len(state.lesions) + 1
    for (o, t), role in zip(candidates, roles, strict=True):
        if t is not None:  # a normal node now pathological: same UID; new once unequivocal
            uid, tid, first = t.tracking_uid, t.tracking_id, t.first_seen
            d, w, matched_as = pairs[uid]
            status = MatchStatus.NEW if role.is_new else matched_as
        else:
            uid = o.tracking_uid if o.tracking_uid and o.tracking_uid not in known else ""
            uid = uid or _uid(uid_root, o.key)
            tid, first, status, d, w = f"L{next_number}", n_tp, MatchStatus.NEW, None, None
            next_number += 1
        lesions.append(
            TrackedLesion(
                tracking_uid=uid,
                tracking_id=tid,
                label=o.label if t is None else t.label,
                role=role,
                organ=o.organ if t is None else t.organ,
                is_node=o.is_node if t is None else t.is_node,
                in_field=o.in_field if t is None else t.in_field,
                centre_mm=tuple(float(v) for v in o.centre_mm),  # type: ignore[arg-type]
                long_axis_mm=float(o.long_axis_mm),
                first_seen=first,
                last_seen=n_tp,
            )
        )
        measures.append(_measure(o, uid, role, t))
        assignments.append(Assignment(uid, tid, role, status, o.key, d, w))
    timepoint = Timepoint(time, tuple(measures), nontarget_unequivocal_progression, label)
    new_state = TrackingState(
        lesions=tuple(lesions),
        timepoints=(*state.timepoints, timepoint),
        frame_of_reference_uid=state.frame_of_reference_uid,
        reference_series_uid=state.reference_series_uid,
    )
    return TrackingUpdate(new_state, assignments, timepoint)


def _baseline(
    observations: Sequence[Observation],
    time: Any,
    label: str,
    uid_root: str,
    frame_of_reference_uid: str,
    reference_series_uid: str,
    recist: RecistConfig,
) -> TrackingUpdate:
    measures = [_measure(o, o.key, LesionRole.NON_TARGET, None) for o in observations]
    roles = select_baseline(measures, recist)
    order = sorted(
        range(len(observations)),
        key=lambda i: (_ROLE_ORDER[roles[i]], -(measures[i].diameter_mm or 0.0), i),
    )
    lesions, out_measures, assignments = [], [], []
    seen_uids: set[str] = set()
    for number, i in enumerate(order, start=1):
        o, role = observations[i], roles[i]
        uid = o.tracking_uid if o.tracking_uid and o.tracking_uid not in seen_uids else ""
        uid = uid or _uid(uid_root, o.key)
        seen_uids.add(uid)
        tid = f"L{number}"
        lesions.append(
            TrackedLesion(
                tracking_uid=uid,
                tracking_id=tid,
                label=o.label,
                role=role,
                organ=o.organ,
                is_node=o.is_node,
                in_field=o.in_field,
                centre_mm=tuple(float(v) for v in o.centre_mm),  # type: ignore[arg-type]
                long_axis_mm=float(o.long_axis_mm),
                first_seen=0,
                last_seen=0,
            )
        )
        out_measures.append(_measure(o, uid, role, None))
        assignments.append(Assignment(uid, tid, role, MatchStatus.BASELINE, o.key))
    timepoint = Timepoint(time, tuple(out_measures), None, label)
    state = TrackingState(
        tuple(lesions), (timepoint,), frame_of_reference_uid, reference_series_uid
    )
    return TrackingUpdate(state, assignments, timepoint)
