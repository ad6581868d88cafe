"""Tracking lesions across timepoints: stable UIDs, Hungarian matching, new and vanished
lesions, and the state that goes in and comes out."""

from __future__ import annotations

import json

import pytest

from models.changepoint import Irecist
from models.imaging.matching import (
    MatchConfig,
    MatchStatus,
    Observation,
    TrackedLesion,
    TrackingState,
    match_lesions,
    track,
)
from schemas.enums import IRecistState, LesionRole, Organ


def obs(
    key: str,
    centre: tuple[float, float, float],
    long: float = 20.0,
    short: float | None = None,
    organ: Organ = Organ.LUNG,
    uid: str = "",
) -> Observation:
    short = 0.7 * long if short is None else short
    return Observation(
        key,
        key,
        centre,
        long,
        short,
        long**3 / 2000,
        organ,
        organ is Organ.LYMPH_NODE,
        None,
        uid,
    )


BASELINE = [
    obs("lung-a", (0.0, 0.0, 0.0), 30.0),
    obs("lung-b", (40.0, 0.0, 0.0), 22.0),
    obs("liver", (0.0, 80.0, 0.0), 25.0, organ=Organ.LIVER),
    obs("node", (30.0, 30.0, 10.0), 24.0, 17.0, Organ.LYMPH_NODE),
    obs("small-node", (-30.0, 30.0, 10.0), 12.0, 7.0, Organ.LYMPH_NODE),
    obs("lung-c", (-40.0, 0.0, 0.0), 8.0),  # not measurable
]


@pytest.fixture
def baseline():
    return track(None, BASELINE, time=0, label="study-0", uid_root="study-0")


def test_baseline_roles_identifiers_and_reproducible_uids(baseline) -> None:
    by_key = baseline.by_key()
    assert by_key["lung-a"].role is LesionRole.TARGET
    assert by_key["node"].role is LesionRole.TARGET
    assert by_key["small-node"].role is LesionRole.NORMAL_NODE
    assert by_key["lung-c"].role is LesionRole.NON_TARGET
    assert by_key["lung-a"].tracking_id == "L1"  # targets first, largest first
    assert {a.status for a in baseline.assignments} == {MatchStatus.BASELINE}
    again = track(None, BASELINE, time=0, uid_root="study-0")
    assert [a.tracking_uid for a in again.assignments] == [
        a.tracking_uid for a in baseline.assignments
    ]
    other = track(None, BASELINE, time=0, uid_root="study-X")
    assert other.assignments[0].tracking_uid != baseline.assignments[0].tracking_uid
    assert len({a.tracking_uid for a in baseline.assignments}) == len(BASELINE)


def test_the_readers_tracking_uid_is_kept_at_baseline() -> None:
    update = track(None, [obs("a", (0, 0, 0), 20, uid="1.2.3.4")], time=0, uid_root="s")
    assert update.assignments[0].tracking_uid == "1.2.3.4"


def test_follow_up_matches_new_and_not_seen(baseline) -> None:
    # shuffled, shifted by a few mm (registration residue), lung-b gone, one new liver lesion
    follow = [
        obs("f-liver", (2.0, 83.0, 1.0), 20.0, organ=Organ.LIVER),
        obs("f-node", (31.0, 28.0, 11.0), 22.0, 15.0, Organ.LYMPH_NODE),
        obs("f-new", (30.0, 110.0, 0.0), 14.0, organ=Organ.LIVER),
        obs("f-lung-a", (-2.0, 1.0, 0.0), 26.0),
        obs("f-small", (-29.0, 31.0, 10.0), 11.0, 6.0, Organ.LYMPH_NODE),
        obs("f-lung-c", (-41.0, 1.0, 0.0), 8.0),
    ]
    update = track(baseline.state, follow, time=42, label="study-1", uid_root="study-1")
    base = baseline.by_key()
    got = update.by_key()
    for before, after in [
        ("liver", "f-liver"),
        ("node", "f-node"),
        ("lung-a", "f-lung-a"),
        ("small-node", "f-small"),
        ("lung-c", "f-lung-c"),
    ]:
        assert got[after].tracking_uid == base[before].tracking_uid
        assert got[after].status is MatchStatus.MATCHED
    assert got["f-new"].status is MatchStatus.NEW
    assert got["f-new"].role is LesionRole.NEW_TARGET
    assert got["f-new"].tracking_id == "L7"
    gone = [a for a in update.assignments if a.status is MatchStatus.NOT_SEEN]
    assert [a.tracking_uid for a in gone] == [base["lung-b"].tracking_uid]
    lung_b = next(m for m in update.timepoint.lesions if m.tracking_uid == gone[0].tracking_uid)
    assert lung_b.diameter_mm == 0.0 and lung_b.role is LesionRole.TARGET
    # the state carries everything RECIST needs: a new lesion is iUPD
    machine = Irecist().fit_timepoints(update.state.timepoints)
    assert machine.state is IRecistState.IUPD
    assert machine.assessments_[-1].new_lesions == 1


def test_state_round_trips_through_json(baseline) -> None:
    follow = [obs("x", (1.0, 0.0, 0.0), 31.0)]
    update = track(baseline.state, follow, time=42, uid_root="s1")
    text = json.dumps(update.state.to_dict())
    back = TrackingState.from_dict(json.loads(text))
    assert back == update.state


def test_state_with_datetimes_round_trips() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    first = track(None, BASELINE, time=t0, uid_root="s0")
    second = track(first.state, BASELINE[:3], time=t0 + timedelta(days=42), uid_root="s1")
    back = TrackingState.from_dict(json.loads(json.dumps(second.state.to_dict())))
    assert back == second.state
    assert Irecist().fit_timepoints(back.timepoints).assessments_[-1].time == t0 + timedelta(42)


def test_a_propagated_lesion_is_matched_by_its_uid(baseline) -> None:
    uid = baseline.by_key()["lung-b"].tracking_uid
    far = obs("p", (90.0, 90.0, 90.0), 22.0, uid=uid)  # far away, yet the same lesion
    update = track(baseline.state, [far], time=42, uid_root="s1")
    assert update.by_key()["p"].status is MatchStatus.BY_UID
    assert update.by_key()["p"].tracking_uid == uid


def test_hungarian_prefers_the_globally_best_assignment() -> None:
    tracked = [
        TrackedLesion(
            "u1", "L1", "", LesionRole.TARGET, Organ.LUNG, False, None, (0.0, 0.0, 0.0), 20.0, 0, 0
        ),
        TrackedLesion(
            "u2", "L2", "", LesionRole.TARGET, Organ.LUNG, False, None, (12.0, 0.0, 0.0), 20.0, 0, 0
        ),
    ]
    # o1 is nearest to u2's centre... but only o1 is near u1: the pair sum decides
    found = [obs("o1", (7.0, 0.0, 0.0)), obs("o2", (20.0, 0.0, 0.0))]
    pairs = {
        (tracked[i].tracking_uid, found[j].key) for i, j, _, _ in match_lesions(tracked, found)
    }
    assert pairs == {("u1", "o1"), ("u2", "o2")}


def test_overlap_breaks_a_distance_tie_and_organs_are_respected() -> None:
    t = [
        TrackedLesion(
            "u1", "L1", "", LesionRole.TARGET, Organ.OTHER, False, None, (0.0, 0.0, 0.0), 20.0, 0, 0
        ),
    ]
    found = [
        obs("a", (5.0, 0.0, 0.0), organ=Organ.OTHER),
        obs("b", (-5.0, 0.0, 0.0), organ=Organ.OTHER),
    ]
    (pair,) = match_lesions(t, found, overlap={("u1", "b"): 0.6})
    assert found[pair[1]].key == "b"
    liver = [
        TrackedLesion(
            "u1", "L1", "", LesionRole.TARGET, Organ.LIVER, False, None, (0.0, 0.0, 0.0), 20.0, 0, 0
        ),
    ]
    assert match_lesions(liver, [obs("lung", (1.0, 0.0, 0.0))]) == []
    assert match_lesions(liver, [obs("far", (60.0, 0.0, 0.0), organ=Organ.LIVER)]) == []
    wide = MatchConfig(gate_mm=80.0)
    assert (
        len(match_lesions(liver, [obs("far", (60.0, 0.0, 0.0), organ=Organ.LIVER)], config=wide))
        == 1
    )


def test_unread_lesions_make_the_unmatched_not_evaluable(baseline) -> None:
    update = track(baseline.state, [], time=42, uid_root="s1", unattributed_failures=1)
    assert {a.status for a in update.assignments} == {MatchStatus.NOT_EVALUABLE}
    assert all(m.seen is None for m in update.timepoint.lesions)
    machine = Irecist().fit_timepoints(update.state.timepoints)
    assert machine.state is IRecistState.INE


def test_a_normal_node_grown_pathological_is_a_new_lesion(baseline) -> None:
    small = baseline.by_key()["small-node"]
    grown = obs("g", (-30.0, 30.0, 10.0), 22.0, 16.0, Organ.LYMPH_NODE)
    update = track(baseline.state, [grown], time=42, uid_root="s1")
    a = update.by_key()["g"]
    assert a.tracking_uid == small.tracking_uid and a.status is MatchStatus.NEW
    assert a.role is LesionRole.NEW_TARGET


def test_a_normal_node_just_across_10_mm_stays_normal_until_unequivocal(baseline) -> None:
    # baseline 7 mm; 11 mm is equivocal (EORTC RECIST FAQ), 12.5 mm is 5.5 mm above its
    # smallest: a new non-target lesion from then on, under the same tracking UID
    small = baseline.by_key()["small-node"]
    state = baseline.state
    for short, role, status in [
        (11.0, LesionRole.NORMAL_NODE, MatchStatus.MATCHED),
        (12.5, LesionRole.NEW_NON_TARGET, MatchStatus.NEW),
    ]:
        node = obs("n", (-30.0, 30.0, 10.0), 16.0, short, Organ.LYMPH_NODE)
        update = track(state, [node], time=42, uid_root=f"s{short}")
        a = update.by_key()["n"]
        assert (a.tracking_uid, a.role, a.status) == (small.tracking_uid, role, status)
        state = update.state
    lesion = next(t for t in state.lesions if t.tracking_uid == small.tracking_uid)
    assert lesion.role is LesionRole.NEW_NON_TARGET and lesion.tracking_id == small.tracking_id
