"""RECIST 1.1 over every lesion: target selection at baseline, new-lesion categories, and the
responses of the target lesions, the non-target lesions and the whole patient at one timepoint.

Rules (Eisenhauer et al., Eur J Cancer 2009, sections 3 and 4; iRECIST new-lesion categories
from Seymour et al., Lancet Oncol 2017):

* **Measurable** at baseline: long axis at least 10 mm; a lymph node at least 15 mm in short
  axis. A node of 10 to under 15 mm short axis is pathological but not measurable (non-target);
  a node under 10 mm is normal (:attr:`LesionRole.NORMAL_NODE`, never counted). A bone lesion is
  not measurable (non-target): RECIST 1.1 (3.1.2) measures a lytic bone lesion only by an
  identifiable soft-tissue component, which a segment in bone does not show, and never a
  blastic one; ``RecistConfig(bone_measurable=True)`` measures bone segments like any lesion,
  for readers who outline the soft-tissue component only.
* **Target lesions**: at most 5, at most 2 per organ (all lymph nodes together count as one
  organ), "selected on the basis of their size ... representative of all involved organs":
  :func:`select_baseline` takes the largest lesion of each organ first (largest organs first),
  then fills up to the limits by size; ties go to the lesion that comes first in the input, so
  the choice is reproducible. Every other lesion is non-target.
* **Sum of diameters**: long axes of the target lesions, short axes of the target nodes. A
  lesion not seen counts 0 mm.
* **Target response**: CR when every non-nodal target has disappeared and every target node is
  under 10 mm short axis; PR at a 30 per cent decrease of the sum from baseline; PD at 20 per
  cent and 5 mm over the nadir (the smallest sum so far, baseline included); NE when a target
  could not be evaluated, unless the evaluated ones already make PD; SD otherwise.
* **Non-target response**: CR when every non-target lesion has disappeared and every
  non-target node is under 10 mm; PD on unequivocal progression; NE when one could not be
  evaluated; non-CR/non-PD otherwise. Unequivocal progression is taken from the reader when
  given (:attr:`Timepoint.nontarget_unequivocal_progression`); otherwise it is the rule the
  RECIST working group gives as a test (Eisenhauer 2009, 4.3.3): an increase of the non-target
  tumour burden comparable to what makes PD in measurable disease, a 73 per cent increase in
  volume (a 20 per cent increase in diameter), here over the non-target volume's nadir and by
  at least ``nontarget_progression_min_ml`` so a tiny lesion's noise cannot make it. When the
  patient also has target disease, RECIST 1.1 asks more (4.3.3, "when the patient also has
  measurable disease"): a worsening of the non-target disease such that, "even in presence of
  SD or PR in target disease, the overall tumour burden has increased sufficiently"; "a modest
  increase in the size of one or more non-target lesions is usually not sufficient". So the
  overall tumour volume (every target and non-target lesion) must also have grown by the same
  73 per cent over its own nadir (the RECIST FAQ's "73% overall increase in tumour burden"),
  ``RecistConfig(nontarget_overall_burden=False)`` drops that second test (the rule until
  2026-12-03).
* **Overall response**: Eisenhauer 2009 table 1 (target disease) and table 2 (non-target disease
  only); any new lesion is PD.
* **New lesions** (iRECIST): measurable ones (as above) are new target lesions, up to 5 in all
  and 2 per organ; the others new non-target; a new node under 10 mm short axis is normal.
* **Equivocal new nodes.** A new lesion must be unequivocal (Eisenhauer 2009, 4.3.2: an
  equivocal one, "for example because of its small size", is left to follow-up to clarify). For
  lymph nodes the RECIST working group's FAQ ("New lymph node lesions", recist.eortc.org)
  says a node that grows from, say, 9 to 11 mm short axis "may not represent true disease
  progression" and, where its size is the only evidence, should be evaluated at the next
  assessment, "especially when the short axis ... is < 15 mm". So a node first pathological
  (10 mm or more) at a follow-up, newly seen or recorded normal before, is a new lesion only
  when :func:`node_unequivocally_new`: at least 15 mm short axis (measurable), or at least
  5 mm above its smallest earlier short axis (the 5 mm RECIST 1.1 asks of any progression,
  4.3.1, taken as growth beyond measurement error). Until then it stays a normal node and is
  assessed again at the next timepoint. ``RecistConfig(equivocal_new_nodes=False)`` makes
  every node of 10 mm or more new at once. Progression is not back-dated to the first scan
  that showed the node (4.3.2 asks for that): a monitoring service reports each assessment as
  it is made.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.enums import LesionRole, Organ, RecistResponse

__all__ = [
    "LesionMeasure",
    "RecistConfig",
    "Timepoint",
    "baseline_role",
    "is_measurable",
    "new_lesion_roles",
    "node_unequivocally_new",
    "nontarget_response",
    "overall_response",
    "select_baseline",
    "sum_of_diameters",
    "target_response",
]


@dataclass(frozen=True)
class RecistConfig:
    """Thresholds of RECIST 1.1 (the published values by default)."""

    measurable_mm: float = 10.0
    node_measurable_mm: float = 15.0
    node_pathological_mm: float = 10.0
    max_targets: int = 5
    max_targets_per_organ: int = 2
    partial_response_fraction: float = 0.30
    progression_fraction: float = 0.20
    progression_min_mm: float = 5.0
    nontarget_progression_volume_fraction: float = 0.73
    nontarget_progression_min_ml: float = 0.5
    bone_measurable: bool = False
    """Measure bone segments like soft-tissue lesions (their outline is the soft-tissue
    component); by default a bone lesion is non-target (RECIST 1.1, 3.1.2)."""
    equivocal_new_nodes: bool = True
    """A node newly pathological under 15 mm short axis, grown less than
    ``node_unequivocal_growth_mm``, is equivocal and not yet new (module docstring)."""
    node_unequivocal_growth_mm: float = 5.0
    nontarget_overall_burden: bool = True
    """With target disease, unequivocal non-target progression also needs the overall tumour
    volume 73 % over its nadir (module docstring)."""

    def __post_init__(self) -> None:
        if self.max_targets < 1 or self.max_targets_per_organ < 1:
            raise ValueError("max_targets and max_targets_per_organ must be at least 1")
        if not 0 < self.partial_response_fraction < 1:
            raise ValueError("partial_response_fraction must be in (0, 1)")
        if self.progression_fraction <= 0 or self.progression_min_mm < 0:
            raise ValueError("progression thresholds must be positive")


@dataclass(frozen=True)
class LesionMeasure:
    """One tracked lesion at one timepoint, as RECIST reads it.

    ``seen`` is True when the lesion was found and measured, False when it was looked for and
    is gone (it then measures 0 mm), None when it could not be evaluated (a failed read).
    """

    tracking_uid: str
    role: LesionRole
    organ: Organ = Organ.OTHER
    is_node: bool = False
    long_axis_mm: float | None = None
    short_axis_mm: float | None = None
    volume_ml: float | None = None
    seen: bool | None = True
    in_field: bool | None = None

    @property
    def diameter_mm(self) -> float | None:
        """The RECIST diameter: short axis of a node, long axis otherwise; 0 when gone, None
        when not evaluable."""
        if self.seen is None:
            return None
        if not self.seen:
            return 0.0
        return self.short_axis_mm if self.is_node else self.long_axis_mm

    @property
    def volume(self) -> float | None:
        """Volume in ml; 0 when gone, None when not evaluable or not measured."""
        if self.seen is None:
            return None
        return 0.0 if not self.seen else self.volume_ml

    def to_dict(self) -> dict[str, Any]:
        return {
            "tracking_uid": self.tracking_uid,
            "role": self.role.value,
            "organ": self.organ.value,
            "is_node": self.is_node,
            "long_axis_mm": self.long_axis_mm,
            "short_axis_mm": self.short_axis_mm,
            "volume_ml": self.volume_ml,
            "seen": self.seen,
            "in_field": self.in_field,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LesionMeasure:
        return cls(
            tracking_uid=str(d["tracking_uid"]),
            role=LesionRole(d["role"]),
            organ=Organ(d.get("organ", Organ.OTHER)),
            is_node=bool(d.get("is_node", False)),
            long_axis_mm=d.get("long_axis_mm"),
            short_axis_mm=d.get("short_axis_mm"),
            volume_ml=d.get("volume_ml"),
            seen=d.get("seen", True),
            in_field=d.get("in_field"),
        )


@dataclass(frozen=True)
class Timepoint:
    """Every tracked lesion at one assessment, and when it was.

    ``time`` is days (a number) or a datetime. ``nontarget_unequivocal_progression`` is the
    reader's call on the non-target lesions when known: True when they progress unequivocally
    at this timepoint (at the assessment after an iUPD that they made, True reads as their
    further increase), False when they do not; None applies the volume rule of this module.
    """

    time: Any
    lesions: tuple[LesionMeasure, ...]
    nontarget_unequivocal_progression: bool | None = None
    label: str = ""

    def of(self, *roles: LesionRole) -> list[LesionMeasure]:
        return [m for m in self.lesions if m.role in roles]


# ------------------------------------------------------------------------- selection


def is_measurable(
    is_node: bool,
    long_axis_mm: float,
    short_axis_mm: float,
    config: RecistConfig | None = None,
    organ: Organ | None = None,
) -> bool:
    """RECIST 1.1 measurability: long axis >= 10 mm; a node: short axis >= 15 mm; a bone
    lesion never (unless ``config.bone_measurable``)."""
    cfg = config or RecistConfig()
    if organ is Organ.BONE and not is_node and not cfg.bone_measurable:
        return False
    if is_node:
        return short_axis_mm >= cfg.node_measurable_mm
    return long_axis_mm >= cfg.measurable_mm


def _measurable_now(m: LesionMeasure, cfg: RecistConfig) -> bool:
    """Seen at this timepoint and measurable (:func:`is_measurable`)."""
    return bool(m.seen) and is_measurable(
        m.is_node, m.long_axis_mm or 0.0, m.short_axis_mm or 0.0, cfg, organ=m.organ
    )


def _diameter(m: LesionMeasure) -> float:
    d = m.diameter_mm
    return float(d) if d is not None else 0.0


def _pick(
    candidates: list[int],
    measures: Sequence[LesionMeasure],
    limit: int,
    per_organ: int,
    taken: dict,
) -> list[int]:
    """Indices chosen among ``candidates``: largest of each organ first, then by size."""
    order = sorted(candidates, key=lambda i: (-_diameter(measures[i]), i))
    chosen: list[int] = []
    for first_pass in (True, False):
        for i in order:
            if len(chosen) + sum(taken.values()) >= limit:
                return chosen
            if i in chosen:
                continue
            organ = measures[i].organ
            n = taken.get(organ, 0) + sum(1 for j in chosen if measures[j].organ == organ)
            if n >= per_organ or (first_pass and n > 0):
                continue
            chosen.append(i)
    return chosen


def baseline_role(m: LesionMeasure, config: RecistConfig | None = None) -> LesionRole:
    """Non-target or normal node, for a lesion that is not (or cannot be) a target."""
    cfg = config or RecistConfig()
    if m.is_node and (m.short_axis_mm or 0.0) < cfg.node_pathological_mm:
        return LesionRole.NORMAL_NODE
    return LesionRole.NON_TARGET


def select_baseline(
    measures: Sequence[LesionMeasure], config: RecistConfig | None = None
) -> list[LesionRole]:
    """The RECIST 1.1 role of each baseline lesion (same order as ``measures``; their
    ``role`` is ignored). Lymph nodes count as one organ, whatever ``organ`` says."""
    cfg = config or RecistConfig()
    nodes = [m if not m.is_node or m.organ is Organ.LYMPH_NODE else _as_node(m) for m in measures]
    measurable = [i for i, m in enumerate(nodes) if _measurable_now(m, cfg)]
    targets = set(_pick(measurable, nodes, cfg.max_targets, cfg.max_targets_per_organ, {}))
    return [
        LesionRole.TARGET if i in targets else baseline_role(m, cfg) for i, m in enumerate(nodes)
    ]


def _as_node(m: LesionMeasure) -> LesionMeasure:
    from dataclasses import replace

    return replace(m, organ=Organ.LYMPH_NODE)


def node_unequivocally_new(
    short_axis_mm: float,
    smallest_short_axis_mm: float | None = None,
    config: RecistConfig | None = None,
) -> bool:
    """Whether a node not pathological before (newly seen, or recorded normal) is an
    unequivocal new lesion at this short axis (module docstring, "Equivocal new nodes").

    ``smallest_short_axis_mm``: its smallest short axis at earlier timepoints, None when it was
    not seen before.
    """
    cfg = config or RecistConfig()
    if short_axis_mm < cfg.node_pathological_mm:
        return False
    if not cfg.equivocal_new_nodes or short_axis_mm >= cfg.node_measurable_mm:
        return True
    return (
        smallest_short_axis_mm is not None
        and short_axis_mm - smallest_short_axis_mm >= cfg.node_unequivocal_growth_mm
    )


def new_lesion_roles(
    new: Sequence[LesionMeasure],
    earlier_new: Iterable[LesionMeasure] = (),
    config: RecistConfig | None = None,
    smallest_short_axis_mm: Sequence[float | None] | None = None,
) -> list[LesionRole]:
    """iRECIST categories of lesions first seen at this timepoint, or of normal nodes grown
    pathological (same order as ``new``).

    Measurable new lesions become new target lesions while fewer than 5 new targets (2 per
    organ) exist, counting those of ``earlier_new`` (new lesions of earlier timepoints, with
    their roles); the others are new non-target. A node that is not an unequivocal new lesion
    (:func:`node_unequivocally_new`; under 10 mm short axis, or an equivocal 10 to 15 mm) is
    normal. ``smallest_short_axis_mm`` gives each node's smallest earlier short axis (None,
    or no sequence: not seen before).
    """
    cfg = config or RecistConfig()
    smallest = list(smallest_short_axis_mm or [None] * len(new))
    if len(smallest) != len(new):
        raise ValueError("smallest_short_axis_mm must give one value per new lesion")
    taken: dict[Organ, int] = {}
    for m in earlier_new:
        if m.role is LesionRole.NEW_TARGET:
            organ = Organ.LYMPH_NODE if m.is_node else m.organ
            taken[organ] = taken.get(organ, 0) + 1
    nodes = [_as_node(m) if m.is_node else m for m in new]
    measurable = [i for i, m in enumerate(nodes) if _measurable_now(m, cfg)]
    chosen = set(_pick(measurable, nodes, cfg.max_targets, cfg.max_targets_per_organ, taken))
    roles = []
    for i, m in enumerate(nodes):
        if i in chosen:
            roles.append(LesionRole.NEW_TARGET)
        elif m.is_node and not node_unequivocally_new(m.short_axis_mm or 0.0, smallest[i], cfg):
            roles.append(LesionRole.NORMAL_NODE)
        else:
            roles.append(LesionRole.NEW_NON_TARGET)
    return roles


# ------------------------------------------------------------------------- responses


def sum_of_diameters(
    lesions: Iterable[LesionMeasure], roles: Iterable[LesionRole] = (LesionRole.TARGET,)
) -> tuple[float, bool]:
    """Sum of RECIST diameters of the lesions with one of ``roles``, and whether every one of
    them was evaluable (the sum then covers them all)."""
    wanted = set(roles)
    total, complete = 0.0, True
    for m in lesions:
        if m.role not in wanted:
            continue
        d = m.diameter_mm
        if d is None:
            complete = False
        else:
            total += float(d)
    return total, complete


def _progression(value: float, nadir: float, cfg: RecistConfig) -> bool:
    return (
        value >= nadir * (1 + cfg.progression_fraction) and value - nadir >= cfg.progression_min_mm
    )


def target_response(
    targets: Sequence[LesionMeasure],
    baseline_sum_mm: float,
    nadir_sum_mm: float,
    config: RecistConfig | None = None,
) -> tuple[RecistResponse | None, float]:
    """Target-lesion response and sum of diameters; ``(None, 0)`` without target lesions.

    ``nadir_sum_mm`` is the smallest sum before this timepoint, baseline included.
    """
    cfg = config or RecistConfig()
    if not targets:
        return None, 0.0
    total, complete = sum_of_diameters(targets, (m.role for m in targets))
    if _progression(total, nadir_sum_mm, cfg):
        return RecistResponse.PD, total
    if not complete:
        return RecistResponse.NE, total
    gone = all(
        (m.seen is False) or (m.is_node and (m.short_axis_mm or 0.0) < cfg.node_pathological_mm)
        for m in targets
    )
    if gone:
        return RecistResponse.CR, total
    if total <= baseline_sum_mm * (1 - cfg.partial_response_fraction):
        return RecistResponse.PR, total
    return RecistResponse.SD, total


def nontarget_volume(lesions: Iterable[LesionMeasure]) -> float | None:
    """Sum of volumes (ml) of ``lesions``; None when one of them has no volume."""
    total = 0.0
    for m in lesions:
        v = m.volume
        if v is None:
            return None
        total += float(v)
    return total


def _grown(volume: float | None, nadir: float | None, cfg: RecistConfig) -> bool:
    """A volume 73 % (and ``nontarget_progression_min_ml``) over its nadir."""
    return (
        volume is not None
        and nadir is not None
        and volume >= nadir * (1 + cfg.nontarget_progression_volume_fraction)
        and volume - nadir >= cfg.nontarget_progression_min_ml
    )


def nontarget_response(
    nontargets: Sequence[LesionMeasure],
    nadir_volume_ml: float | None,
    unequivocal_progression: bool | None = None,
    config: RecistConfig | None = None,
    *,
    overall: tuple[float | None, float | None] | None = None,
) -> RecistResponse | None:
    """Non-target response; None without non-target lesions.

    ``nadir_volume_ml`` is the smallest non-target volume before this timepoint (baseline
    included), None when unknown; ``unequivocal_progression`` the reader's call, when made.
    ``overall``: for a patient with target disease, the overall tumour volume (target and
    non-target lesions, ml) now and its smallest before; the volume test then needs both to
    have grown (module docstring). None (no target disease), or a volume not known (a lesion
    without one): the non-target test alone.
    """
    cfg = config or RecistConfig()
    if not nontargets:
        return None
    if unequivocal_progression is True:
        return RecistResponse.PD
    if (
        unequivocal_progression is None
        and _grown(nontarget_volume(nontargets), nadir_volume_ml, cfg)
        and (
            overall is None
            or None in overall
            or not cfg.nontarget_overall_burden
            or _grown(*overall, cfg)
        )
    ):
        return RecistResponse.PD
    if any(m.seen is None for m in nontargets):
        return RecistResponse.NE
    gone = all(
        (m.seen is False) or (m.is_node and (m.short_axis_mm or 0.0) < cfg.node_pathological_mm)
        for m in nontargets
    )
    return RecistResponse.CR if gone else RecistResponse.NON_CR_NON_PD


def overall_response(
    target: RecistResponse | None, nontarget: RecistResponse | None, new_lesions: bool
) -> RecistResponse:
    """Overall response from the category responses (Eisenhauer 2009, tables 1 and 2).

    ``None`` for a category the patient has no lesions in.
    """
    if new_lesions or target is RecistResponse.PD or nontarget is RecistResponse.PD:
        return RecistResponse.PD
    if target is None:  # table 2: non-target disease only
        if nontarget is None:
            return RecistResponse.NE
        return nontarget
    if target is RecistResponse.CR:
        return RecistResponse.CR if nontarget in (None, RecistResponse.CR) else RecistResponse.PR
    return target  # PR, SD or NE, whatever the (non-PD) non-target response
