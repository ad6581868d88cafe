"""RECIST 1.1 over every lesion (Eisenhauer et al. 2009) and iRECIST over it (Seymour et al.
2017): selection, category responses, the overall-response tables, and timepoint scenarios."""

from __future__ import annotations

import pytest

from models.changepoint import Irecist, IrecistConfig
from models.changepoint.recist import (
    LesionMeasure,
    RecistConfig,
    Timepoint,
    new_lesion_roles,
    node_unequivocally_new,
    nontarget_response,
    overall_response,
    select_baseline,
    sum_of_diameters,
    target_response,
)
from schemas.enums import IRecistState, LesionRole, Organ, RecistResponse

T, NT, NLT, NLNT, NN = (
    LesionRole.TARGET,
    LesionRole.NON_TARGET,
    LesionRole.NEW_TARGET,
    LesionRole.NEW_NON_TARGET,
    LesionRole.NORMAL_NODE,
)
CR, PR, SD, PD, NE, NN_ = (
    RecistResponse.CR,
    RecistResponse.PR,
    RecistResponse.SD,
    RecistResponse.PD,
    RecistResponse.NE,
    RecistResponse.NON_CR_NON_PD,
)
iCR, iPR, iSD, iUPD, iCPD, iNE = (  # noqa: N816
    IRecistState.ICR,
    IRecistState.IPR,
    IRecistState.ISD,
    IRecistState.IUPD,
    IRecistState.ICPD,
    IRecistState.INE,
)


def lesion(
    uid: str,
    long: float | None = 20.0,
    short: float | None = None,
    organ: Organ = Organ.LUNG,
    role: LesionRole = T,
    volume: float | None = None,
    seen: bool | None = True,
) -> LesionMeasure:
    node = organ is Organ.LYMPH_NODE
    if short is None and long is not None:
        short = 0.7 * long
    return LesionMeasure(uid, role, organ, node, long, short, volume, seen)


# ------------------------------------------------------------------------- selection


def test_measurability_and_node_categories_at_baseline() -> None:
    roles = select_baseline(
        [
            lesion("lung-9mm", 9.0),  # under 10 mm: non-measurable, non-target
            lesion("lung-10mm", 10.0),  # measurable
            lesion("node-16", 25.0, 16.0, Organ.LYMPH_NODE),  # measurable node
            lesion("node-12", 20.0, 12.0, Organ.LYMPH_NODE),  # pathological, non-measurable
            lesion("node-8", 14.0, 8.0, Organ.LYMPH_NODE),  # normal
        ]
    )
    assert roles == [NT, T, T, NT, NN]


def test_a_bone_lesion_is_non_target_unless_its_segment_is_the_soft_tissue_component() -> None:
    measures = [
        lesion("bone-40", 40.0, organ=Organ.BONE),  # the largest, but bone: non-measurable
        lesion("lung-20", 20.0),
        lesion("liver-15", 15.0, organ=Organ.LIVER),
    ]
    assert select_baseline(measures) == [NT, T, T]
    assert select_baseline(measures, RecistConfig(bone_measurable=True)) == [T, T, T]
    new = [lesion("bone-new", 30.0, organ=Organ.BONE), lesion("lung-new", 12.0)]
    assert new_lesion_roles(new) == [NLNT, NLT]


def test_at_most_five_targets_two_per_organ_nodes_one_organ() -> None:
    measures = [
        lesion("lung-50", 50),
        lesion("lung-45", 45),
        lesion("lung-40", 40),  # third in the lung: non-target
        lesion("liver-30", 30, organ=Organ.LIVER),
        lesion("node-a", 30, 20, Organ.LYMPH_NODE),
        lesion("node-b", 30, 18, Organ.LYMPH_NODE),
        lesion("node-c", 30, 17, Organ.LYMPH_NODE),  # third node: all nodes are one organ
        lesion("adrenal-12", 12, organ=Organ.ADRENAL),
    ]
    roles = select_baseline(measures)
    assert roles.count(T) == 5
    chosen = {m.tracking_uid for m, r in zip(measures, roles, strict=True) if r is T}
    # representative of every involved organ first (largest of each), then by size
    assert chosen == {"lung-50", "lung-45", "liver-30", "node-a", "adrenal-12"}
    assert roles[2] is NT and roles[6] is NT


def test_selection_is_reproducible_on_ties() -> None:
    measures = [lesion(f"lung-{i}", 20.0) for i in range(4)]
    assert select_baseline(measures) == [T, T, NT, NT]
    assert select_baseline(measures) == select_baseline(list(measures))


def test_sum_uses_short_axis_of_nodes() -> None:
    measures = [lesion("lung", 30.0), lesion("node", 25.0, 16.0, Organ.LYMPH_NODE)]
    total, complete = sum_of_diameters(measures)
    assert total == pytest.approx(46.0) and complete


def test_new_lesion_categories() -> None:
    earlier = [lesion(f"n{i}", 20.0, role=NLT, organ=Organ.LIVER) for i in range(2)]
    new = [
        lesion("liver-new", 30.0, organ=Organ.LIVER),  # liver already has 2 new targets
        lesion("lung-new", 12.0),
        lesion("lung-small", 6.0),  # not measurable
        lesion("node-15", 20.0, 15.0, Organ.LYMPH_NODE),
        lesion("node-12", 20.0, 12.0, Organ.LYMPH_NODE),  # equivocal (10 to 15 mm): normal
        lesion("node-7", 10.0, 7.0, Organ.LYMPH_NODE),
        lesion("bone-new", 25.0, organ=Organ.BONE),  # bone: non-measurable
        lesion("adrenal-new", 11.0, organ=Organ.ADRENAL),
        lesion("kidney-new", 10.5, organ=Organ.KIDNEY),  # sixth would-be target: over 5
    ]
    roles = new_lesion_roles(new, earlier)
    # 2 earlier new targets + at most 3 now; the largest of each organ first
    assert roles == [NLNT, NLT, NLNT, NLT, NN, NN, NLNT, NLT, NLNT]
    assert roles[6] is NLNT and roles[7] is NLT  # the bone (25 mm) is not measurable
    literal = RecistConfig(equivocal_new_nodes=False)
    assert new_lesion_roles(new, earlier, literal)[4] is NLNT  # every node of 10 mm is new


def test_a_node_grown_across_10_mm_is_new_only_when_unequivocal() -> None:
    # EORTC RECIST FAQ: 9 -> 11 mm may not be true progression; under 15 mm, look again
    assert not node_unequivocally_new(9.9, None)
    assert not node_unequivocally_new(11.0, 9.0)  # grown 2 mm: equivocal
    assert not node_unequivocally_new(14.9, None)  # newly seen, under 15 mm: equivocal
    assert node_unequivocally_new(14.0, 9.0)  # grown 5 mm: beyond measurement error
    assert node_unequivocally_new(15.0, None)  # measurable: unequivocal
    assert node_unequivocally_new(10.0, 9.0, RecistConfig(equivocal_new_nodes=False))
    nodes = [lesion("a", 20.0, 11.0, Organ.LYMPH_NODE), lesion("b", 20.0, 14.0, Organ.LYMPH_NODE)]
    assert new_lesion_roles(nodes, (), None, [9.0, 9.0]) == [NN, NLNT]
    assert new_lesion_roles(nodes, (), None, [None, None]) == [NN, NN]
    with pytest.raises(ValueError, match="one value per new lesion"):
        new_lesion_roles(nodes, (), None, [9.0])


# ------------------------------------------------------------------------- responses


@pytest.mark.parametrize(
    ("diameters", "baseline", "nadir", "expected"),
    [
        ([0.0, 0.0], 50.0, 50.0, CR),
        ([35.0], 50.0, 50.0, PR),  # exactly 30 % down
        ([36.0], 50.0, 50.0, SD),
        ([48.0], 50.0, 40.0, PD),  # +20 % and +8 mm over the nadir
        ([12.0], 12.0, 10.0, SD),  # +20 % but only 2 mm
        ([47.9], 50.0, 40.0, SD),
        ([20.0, None], 50.0, 50.0, NE),
        ([60.0, None], 50.0, 40.0, PD),  # the evaluable ones already make PD
    ],
)
def test_target_response(diameters, baseline, nadir, expected) -> None:
    targets = [
        lesion(f"t{i}", d, seen=None if d is None else d > 0) for i, d in enumerate(diameters)
    ]
    response, _ = target_response(targets, baseline, nadir)
    assert response is expected


def test_target_complete_response_allows_nodes_under_10mm() -> None:
    targets = [
        lesion("lung", seen=False),
        lesion("node", 14.0, 9.0, Organ.LYMPH_NODE),  # still seen, but normal in size
    ]
    response, total = target_response(targets, 60.0, 40.0)
    assert response is CR and total == pytest.approx(9.0)  # the sum need not be 0
    targets[1] = lesion("node", 16.0, 10.0, Organ.LYMPH_NODE)
    assert target_response(targets, 60.0, 40.0)[0] is PR


@pytest.mark.parametrize(
    ("volumes", "nadir", "flag", "expected"),
    [
        ([2.0, 1.0], 3.0, None, NN_),
        ([4.0, 1.2], 3.0, None, PD),  # +73 % and +2.2 ml
        ([0.2, 0.1], 0.15, None, NN_),  # doubled, but only 0.15 ml: noise, not unequivocal
        ([2.0, 1.0], 3.0, True, PD),  # the reader says so
        ([4.0, 1.2], 3.0, False, NN_),  # the reader says no
        ([None, 1.0], 3.0, None, NE),
    ],
)
def test_nontarget_response(volumes, nadir, flag, expected) -> None:
    nts = [
        lesion(f"nt{i}", 8.0, role=NT, volume=v, seen=None if v is None else True)
        for i, v in enumerate(volumes)
    ]
    assert nontarget_response(nts, nadir, flag) is expected


def test_with_target_disease_the_overall_burden_must_grow_too() -> None:
    # RECIST 1.1, 4.3.3: with measurable disease, a modest increase of one non-target lesion is
    # not unequivocal progression; the overall tumour burden must have grown as PD requires
    nts = [lesion("nt", 8.0, role=NT, volume=4.0)]  # from a nadir of 2 ml: +100 %
    assert nontarget_response(nts, 2.0) is PD  # non-target disease only (table 2)
    assert nontarget_response(nts, 2.0, overall=(14.0, 12.0)) is NN_  # targets hold 10 ml
    assert nontarget_response(nts, 2.0, overall=(24.0, 12.0)) is PD  # overall +100 %
    assert nontarget_response(nts, 2.0, overall=(None, 12.0)) is PD  # not known: as table 2
    old_rule = RecistConfig(nontarget_overall_burden=False)
    assert nontarget_response(nts, 2.0, None, old_rule, overall=(14.0, 12.0)) is PD


def test_the_irecist_machine_weighs_a_growing_node_against_every_lesion() -> None:
    def tp(day: float, node_ml: float) -> Timepoint:
        return Timepoint(
            day,
            (
                lesion("lung", 30.0, role=T, volume=14.0),
                lesion("liver", 25.0, role=T, organ=Organ.LIVER, volume=8.0),
                lesion("node", 20.0, 14.0, Organ.LYMPH_NODE, NT, node_ml),
            ),
        )

    machine = Irecist().fit_timepoints([tp(0, 1.5), tp(42, 3.0), tp(84, 5.0)])
    # the node triples (non-target +233 %) while the overall burden grows 15 %: not PD
    assert [a.recist for a in machine.assessments_[1:]] == [SD, SD]
    machine = Irecist().fit_timepoints([tp(0, 1.5), tp(42, 30.0)])
    assert machine.assessments_[1].recist is PD  # overall +122 %


def test_nontarget_complete_response() -> None:
    nts = [lesion("a", role=NT, seen=False), lesion("n", 12, 8, Organ.LYMPH_NODE, NT, 0.3)]
    assert nontarget_response(nts, 1.0) is CR


# Eisenhauer 2009, table 1 (target +/- non-target) and table 2 (non-target only)
@pytest.mark.parametrize(
    ("target", "nontarget", "new", "overall"),
    [
        (CR, CR, False, CR),
        (CR, None, False, CR),
        (CR, NN_, False, PR),
        (CR, NE, False, PR),
        (PR, NN_, False, PR),
        (PR, NE, False, PR),
        (SD, NN_, False, SD),
        (SD, NE, False, SD),
        (NE, NN_, False, NE),
        (PD, CR, False, PD),
        (CR, PD, False, PD),
        (CR, CR, True, PD),
        (SD, NN_, True, PD),
        (None, CR, False, CR),
        (None, NN_, False, NN_),
        (None, NE, False, NE),
        (None, PD, False, PD),
        (None, NN_, True, PD),
    ],
)
def test_overall_response_tables(target, nontarget, new, overall) -> None:
    assert overall_response(target, nontarget, new) is overall


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="max_targets"):
        RecistConfig(max_targets=0)


# ------------------------------------------------------------------------- iRECIST scenarios


def tp(day: float, *lesions: LesionMeasure, flag: bool | None = None) -> Timepoint:
    return Timepoint(day, tuple(lesions), nontarget_unequivocal_progression=flag)


def run(*timepoints: Timepoint, **cfg) -> Irecist:
    return Irecist(config=IrecistConfig(**cfg)).fit_timepoints(timepoints)


def states(machine: Irecist) -> list[IRecistState]:
    return [a.state for a in machine.assessments_]


def recist(machine: Irecist) -> list[RecistResponse | None]:
    return [a.recist for a in machine.assessments_]


def base(day: float = 0.0, nt_volume: float = 1.0) -> list[LesionMeasure]:
    return [
        lesion("t1", 30.0),
        lesion("t2", 20.0, organ=Organ.LIVER),
        lesion("nt1", 8.0, role=NT, volume=nt_volume),
    ]


def test_new_lesion_makes_iupd_and_recist_pd_then_new_target_sum_confirms() -> None:
    m = run(
        tp(0, *base()),
        tp(42, *base(), lesion("n1", 12.0, role=NLT)),
        tp(84, *base(), lesion("n1", 17.0, role=NLT)),  # new target sum +5 mm
    )
    assert states(m) == [iSD, iUPD, iCPD]
    assert recist(m) == [None, PD, PD]
    assert "new target lesions' sum" in m.assessments_[-1].reason
    assert m.assessments_[1].new_appeared == 1 and m.assessments_[1].new_lesions == 1


def test_unchanged_new_lesions_keep_iupd_and_more_new_lesions_confirm() -> None:
    m = run(
        tp(0, *base()),
        tp(42, *base(), lesion("n1", 12.0, role=NLT)),
        tp(84, *base(), lesion("n1", 13.0, role=NLT)),  # +1 mm: unchanged
        tp(126, *base(), lesion("n1", 13.0, role=NLT), lesion("n2", 6.0, role=NLNT)),
    )
    assert states(m) == [iSD, iUPD, iUPD, iCPD]
    assert "new lesion(s) since iUPD" in m.assessments_[-1].reason


def test_pseudoprogression_resets_after_ipr() -> None:
    grown = [lesion("t1", 40.0), lesion("t2", 25.0, organ=Organ.LIVER), base()[2]]
    shrunk = [lesion("t1", 20.0), lesion("t2", 10.0, organ=Organ.LIVER), base()[2]]
    m = run(tp(0, *base()), tp(42, *grown), tp(84, *shrunk))
    assert states(m) == [iSD, iUPD, iPR]
    assert "reset" in m.assessments_[-1].reason
    # a later rise is a new iUPD, judged against the nadir (30 mm), not a confirmation
    regrown = [lesion("t1", 25.0), lesion("t2", 12.0, organ=Organ.LIVER), base()[2]]
    m.assess(tp(126, *regrown))
    assert m.state is iUPD


def test_target_iupd_confirmed_by_a_new_lesion_newly_appearing() -> None:
    grown = [lesion("t1", 40.0), lesion("t2", 22.0, organ=Organ.LIVER), base()[2]]
    m = run(tp(0, *base()), tp(42, *grown), tp(84, *grown, lesion("n1", 5.0, role=NLNT)))
    assert states(m) == [iSD, iUPD, iCPD]


def test_target_iupd_needs_a_further_5mm() -> None:
    grown = [lesion("t1", 40.0), lesion("t2", 22.0, organ=Organ.LIVER), base()[2]]
    more = [lesion("t1", 44.0), lesion("t2", 22.0, organ=Organ.LIVER), base()[2]]
    most = [lesion("t1", 45.0), lesion("t2", 22.0, organ=Organ.LIVER), base()[2]]
    m = run(tp(0, *base()), tp(42, *grown), tp(84, *more), tp(126, *most))
    # +4 mm: not yet; +5 mm over the iUPD sum (increases add up): confirmed
    assert states(m) == [iSD, iUPD, iUPD, iCPD]


def test_nontarget_unequivocal_progression_then_further_growth_confirms() -> None:
    m = run(
        tp(0, *base(nt_volume=2.0)),
        tp(42, *base(nt_volume=4.0)),  # +100 %: unequivocal by the volume rule
        tp(84, *base(nt_volume=4.2)),  # +5 %: within noise
        tp(126, *base(nt_volume=5.5)),  # +37 % over the iUPD volume: further increase
    )
    assert states(m) == [iSD, iUPD, iUPD, iCPD]
    assert [a.nontarget for a in m.assessments_[1:]] == [PD, PD, PD]


def test_reader_flag_for_nontarget_progression() -> None:
    m = run(tp(0, *base()), tp(42, *base(), flag=True), tp(84, *base(), flag=True))
    assert states(m) == [iSD, iUPD, iCPD]
    assert recist(m)[1] is PD


def test_not_evaluable_target_is_ine_and_keeps_an_open_iupd() -> None:
    grown = [lesion("t1", 40.0), lesion("t2", 22.0, organ=Organ.LIVER), base()[2]]
    lost = [lesion("t1", None, seen=None), lesion("t2", 22.0, organ=Organ.LIVER), base()[2]]
    bigger = [lesion("t1", 46.0), lesion("t2", 22.0, organ=Organ.LIVER), base()[2]]
    m = run(tp(0, *base()), tp(42, *lost))
    assert states(m) == [iSD, iNE] and recist(m)[1] is NE
    m = run(tp(0, *base()), tp(42, *grown), tp(70, *lost), tp(98, *bigger))
    assert states(m) == [iSD, iUPD, iNE, iCPD]
    assert m.predict().index == 1


def test_non_target_only_disease() -> None:
    nts = [lesion("nt1", 8.0, role=NT, volume=1.0), lesion("nt2", 7.0, role=NT, volume=0.5)]
    gone = [lesion("nt1", role=NT, seen=False), lesion("nt2", role=NT, seen=False)]
    m = run(tp(0, *nts), tp(42, *nts), tp(84, *gone))
    assert states(m) == [iSD, iSD, iCR]
    assert recist(m) == [None, NN_, CR]


def test_complete_response_with_a_normal_sized_target_node() -> None:
    baseline = [lesion("t1", 30.0), lesion("node", 25.0, 18.0, Organ.LYMPH_NODE)]
    after = [lesion("t1", seen=False), lesion("node", 12.0, 8.0, Organ.LYMPH_NODE)]
    m = run(tp(0, *baseline), tp(42, *after))
    assert states(m) == [iSD, iCR] and recist(m)[1] is CR
    assert m.assessments_[1].sum_mm == pytest.approx(8.0)


def test_disappeared_new_lesions_let_a_responding_patient_reset() -> None:
    m = run(
        tp(0, *base()),
        tp(42, *base(), lesion("n1", 8.0, role=NLNT)),
        tp(84, *base(), lesion("n1", role=NLNT, seen=False)),
    )
    assert states(m) == [iSD, iUPD, iSD]


def test_the_single_sum_api_is_the_same_machine() -> None:
    """``update`` reads a sum as one target lesion and a count as new non-target lesions."""
    by_sum = Irecist().fit([50, 40, 50, 51], [0, 42, 84, 126], [0, 0, 0, 1])
    by_lesion = run(
        tp(0, lesion("s", 50.0)),
        tp(42, lesion("s", 40.0)),
        tp(84, lesion("s", 50.0)),
        tp(126, lesion("s", 51.0), lesion("new-1", None, role=NLNT)),
    )
    assert states(by_sum) == states(by_lesion) == [iSD, iSD, iUPD, iCPD]
