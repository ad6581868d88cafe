"""Lesions carried and refined on several threads give what one after another gives: the same
masks, the same failures in the same order, the same quality figures."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from models.imaging import propagation
from models.imaging.annotations import Lesion
from models.imaging.lesion import MaskSource
from models.imaging.propagation import propagate_lesions, register_study
from tests.unit.imaging.lesion_study import LESIONS, Ellipsoid, image, volume

SHIFT_MM = (0.0, 2.7, -3.6)  # z, y, x
NOTHING = Ellipsoid("nothing there", (30.0, 45.0, 45.0), (5.0, 6.0, 6.0))
"""A baseline "lesion" drawn on plain fat: it cannot be told from its background."""


@pytest.fixture(scope="module")
def study():
    baseline = volume(image())
    followup = volume(image([e.moved(SHIFT_MM, 0.9) for e in LESIONS], seed=1, shift_mm=SHIFT_MM))
    drawn = [*LESIONS[:2], NOTHING, *LESIONS[2:]]
    lesions = [
        Lesion(e.mask(), e.label, k, MaskSource.SEG, tracking_uid=f"2.25.{k + 1}")
        for k, e in enumerate(drawn, start=1)
    ]
    registration = register_study(followup, baseline, lesions, deformable=False)
    return followup, baseline, lesions, registration


def _run(study, threads: int, monkeypatch):
    followup, baseline, lesions, registration = study
    monkeypatch.setattr(propagation, "_LESION_THREADS", threads)
    return propagate_lesions(followup, baseline, lesions, registration=registration)


def test_threads_give_what_one_after_another_gives(study, monkeypatch) -> None:
    seen: set[int] = set()
    refine = propagation.refine_outline

    def counted(*args, **kwargs):
        seen.add(threading.get_ident())
        return refine(*args, **kwargs)

    monkeypatch.setattr(propagation, "refine_outline", counted)
    serial = _run(study, 1, monkeypatch)
    assert seen == {threading.get_ident()}
    seen.clear()
    threaded = _run(study, 2, monkeypatch)
    assert threading.get_ident() not in seen  # the lesions went to the pool

    # five lesions found, the one on plain fat not, in the baseline's order
    assert [lesion.label for lesion in serial.lesions] == [e.label for e in LESIONS]
    assert [f.label for f in serial.failures] == [NOTHING.label]
    assert [lesion.label for lesion in threaded.lesions] == [e.label for e in LESIONS]
    for a, b in zip(serial.lesions, threaded.lesions, strict=True):
        assert a.tracking_uid == b.tracking_uid
        assert a.mask.any()
        assert np.array_equal(a.mask, b.mask)
    assert [(f.label, f.problem, f.message) for f in serial.failures] == [
        (f.label, f.problem, f.message) for f in threaded.failures
    ]
    assert serial.quality == threaded.quality
