"""The registration runs ITK on a fixed number of threads and a pinned threader, so its transform
is the same on every re-run and whatever ITK settings the site's process starts with, and it
leaves those settings as it found them."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813

from models.imaging.registration import register
from models.imaging.volume import Volume
from tests.unit.imaging.lesion_study import LESIONS, image, volume

SHIFT_MM = (0.0, 3.2, -4.1)  # z, y, x


@pytest.fixture(scope="module")
def pair() -> tuple[Volume, Volume, list[np.ndarray]]:
    baseline = volume(image())
    moved = [e.moved(SHIFT_MM, 1.1) for e in LESIONS]
    followup = volume(image(moved, seed=1, shift_mm=SHIFT_MM))
    return followup, baseline, [e.mask() for e in LESIONS]


@pytest.fixture
def itk_settings():
    """Whatever the test sets, the process's ITK settings afterwards are those before."""
    obj = sitk.ProcessObject
    before = obj.GetGlobalDefaultThreader(), obj.GetGlobalDefaultNumberOfThreads()
    yield
    obj.SetGlobalDefaultThreader(before[0])
    obj.SetGlobalDefaultNumberOfThreads(before[1])


def _parameters(pair) -> tuple[float, ...]:
    followup, baseline, masks = pair
    return register(followup, baseline, masks).transform.GetParameters()


def test_re_runs_give_the_same_transform_to_the_last_digit(pair) -> None:
    first = _parameters(pair)
    # it found the shift (x, y translation in mm, follow-up -> baseline)
    assert first[3] == pytest.approx(-SHIFT_MM[2], abs=1.0)
    assert first[4] == pytest.approx(-SHIFT_MM[1], abs=1.0)
    for _ in range(3):
        assert _parameters(pair) == first


@pytest.mark.parametrize(("threader", "threads"), [("Pool", 7), ("Platform", 1), ("Pool", 2)])
def test_the_sites_itk_settings_change_nothing_and_are_kept(
    pair, itk_settings, threader: str, threads: int
) -> None:
    expected = _parameters(pair)
    obj = sitk.ProcessObject
    obj.SetGlobalDefaultThreader(threader)
    obj.SetGlobalDefaultNumberOfThreads(threads)
    assert _parameters(pair) == expected
    assert obj.GetGlobalDefaultThreader() == threader
    assert obj.GetGlobalDefaultNumberOfThreads() == threads
