"""Story-v2 variants (issue #22 item 6): each moves one assumption and nothing else.

The variant draws the base story's random numbers in the same order, so the same seed gives
the same patients (up to a course the variant changed); the immune variants keep 36 %
responders and change only how much the immune drive decides response; the reader's extra
noise has its own stream and leaves the truth alone; ``no-pcct`` only turns the
photon-counting sessions into conventional ones.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
from scipy import stats
from typer.testing import CliRunner

from clinic import generate_cohort
from clinic.story_v2 import params
from clinic.story_v2.annotations import misdraw
from clinic.story_v2.patient import Course, PatientV2, sample_patient
from clinic.story_v2.variants import VARIANTS, StoryVariant, inflamed_odds_ratio, variant
from irtmon.cli import app

N = 3000


def _draw(v: StoryVariant, n: int = N, seed: int = 5) -> list[PatientV2]:
    return [sample_patient(np.random.default_rng([seed, i, 0]), i, 5, v) for i in range(1, n + 1)]


@pytest.fixture(scope="module")
def cohorts() -> dict[str, list[PatientV2]]:
    return {name: _draw(v) for name, v in VARIANTS.items() if name.startswith(("base", "immune"))}


def test_base_is_story_v2_as_published() -> None:
    assert VARIANTS["base"].response_link() == (params.RESPONSE_INTERCEPT, params.RESPONSE_SLOPE)
    assert abs(inflamed_odds_ratio(VARIANTS["base"]) - params.INFLAMED_RESPONSE_ODDS_RATIO) < 0.1


def test_unknown_variant_is_named_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="immune-none"):
        variant("immune-huge")
    with pytest.raises(ValueError, match="unknown story variant"):
        generate_cohort(tmp_path / "c", 1, 0, story="v2", variant="immune-huge")
    with pytest.raises(ValueError, match="story v1 has none"):
        generate_cohort(tmp_path / "c", 1, 0, story="v1", variant="no-pcct")


def test_immune_variants_keep_the_response_rate_and_move_the_effect(
    cohorts: dict[str, list[PatientV2]],
) -> None:
    ors = {}
    for name, patients in cohorts.items():
        resp = np.array([p.responder for p in patients])
        assert abs(resp.mean() - params.OBJECTIVE_RESPONSE_RATE) < 0.035, name  # 4 SE at n=3000
        drive = np.array([p.latents.immune_drive for p in patients])
        rho = stats.pointbiserialr(resp, drive).statistic
        ors[name] = inflamed_odds_ratio(VARIANTS[name])
        if name == "immune-none":
            assert abs(rho) < 0.07  # about 4 SE: the immune state says nothing on response
        else:
            assert rho > 0.07, name
    assert ors["immune-none"] < ors["immune-weaker"] < ors["base"] < ors["immune-stronger"]
    assert abs(ors["immune-none"] - 1.0) < 0.05


def test_a_variant_draws_the_same_patients(cohorts: dict[str, list[PatientV2]]) -> None:
    base, none = cohorts["base"], cohorts["immune-none"]
    assert [p.latents for p in base] == [p.latents for p in none]
    # where the new link leaves the course as it was, the patient is drawn identically; a
    # changed course draws its own numbers after it (new lesions, pseudo-progression timing)
    same = [(a, b) for a, b in zip(base, none, strict=True) if a.course == b.course]
    assert N * 3 // 4 < len(same) < N
    for a, b in same:
        assert (a.lesions, a.biopsies, a.timepoints) == (b.lesions, b.biopsies, b.timepoints)
    no_pcct = _draw(VARIANTS["no-pcct"], 200)
    assert not any(tp.pcct for p in no_pcct for tp in p.timepoints)
    assert any(tp.pcct for p in base[:200] for tp in p.timepoints)
    for a, b in zip(base[:200], no_pcct, strict=True):
        assert b.timepoints == tuple(replace(tp, pcct=False) for tp in a.timepoints)
        assert (a.course, a.lesions, a.latents) == (b.course, b.lesions, b.latents)


@pytest.mark.parametrize(
    ("name", "course", "published"),
    [
        ("pseudo-half", Course.PSEUDO_PROGRESSION, params.PSEUDO_PROGRESSION_RATE),
        ("pseudo-double", Course.PSEUDO_PROGRESSION, params.PSEUDO_PROGRESSION_RATE),
        ("hyper-half", Course.HYPERPROGRESSION, params.HYPERPROGRESSION_RATE),
        ("hyper-double", Course.HYPERPROGRESSION, params.HYPERPROGRESSION_RATE),
    ],
)
def test_rate_variants_move_one_course_and_keep_the_response_rate(
    cohorts: dict[str, list[PatientV2]], name: str, course: Course, published: float
) -> None:
    v = VARIANTS[name]
    patients = _draw(v)
    courses = np.array([p.course for p in patients])
    want = published * (2.0 if name.endswith("double") else 0.5)
    se = np.sqrt(want * (1 - want) / N)
    assert abs((courses == course).mean() - want) < 4 * se, name
    base = np.array([p.course for p in cohorts["base"]])
    assert abs((base == course).mean() - published) < 4 * np.sqrt(published * 0.9 / N)
    responders = np.mean([p.responder for p in patients])
    assert abs(responders - params.OBJECTIVE_RESPONSE_RATE) < 0.035, name  # 4 SE at n=3000
    if name == "pseudo-double":  # 12 % of patients is a third of the responders: no late ones
        assert not (courses == Course.LATE_RESPONDER).any()
    # the same patients: the latents and, where the course is the base one, everything
    assert [p.latents for p in patients] == [p.latents for p in cohorts["base"]]
    same = [(a, b) for a, b in zip(cohorts["base"], patients, strict=True) if a.course == b.course]
    assert N * 3 // 4 < len(same) < N
    for a, b in same[:300]:
        assert (a.lesions, a.timepoints) == (b.lesions, b.timepoints)


def _discs() -> np.ndarray:
    seg = np.zeros((3, 40, 40), dtype=np.uint8)
    yy, xx = np.mgrid[:40, :40]
    seg[:, (yy - 12) ** 2 + (xx - 12) ** 2 <= 36] = 1  # radius 6 px
    seg[1, (yy - 28) ** 2 + (xx - 28) ** 2 <= 4] = 2  # radius 2 px, one slice
    seg[1, 12, 18:24] = 3  # a thin line next to segment 1
    return seg


def test_misdraw_moves_outlines_within_the_slice_and_never_erases() -> None:
    seg = _discs()
    areas = {1: [], 2: []}
    for s in range(300):
        out = misdraw(seg, [1, 2, 3], 3.0, 1.0, np.random.default_rng(s))
        assert set(np.unique(out)) == {0, 1, 2, 3}  # nothing erased
        assert (out[seg == 3] == 3).all()  # a one-pixel line cannot shrink: left as drawn
        # growth takes background only: segment 3's voxels never become 1
        assert not ((seg == 3) & (out == 1)).any()
        # in-plane: a segment never reaches a slice it was not drawn on
        assert not (out[[0, 2]] == 2).any()
        for n in areas:
            areas[n].append(int((out == n).sum()))
    a1 = np.array(areas[1])
    assert a1.min() < (seg == 1).sum() < a1.max()  # outwards and inwards
    # same stream, same drawing: two draws per segment whatever they do
    g1, g2 = np.random.default_rng(9), np.random.default_rng(9)
    misdraw(seg, [1, 2, 3], 3.0, 1.0, g1)
    for _ in range(3):
        g2.normal(), g2.uniform()
    assert g1.uniform() == g2.uniform()
    assert np.array_equal(
        misdraw(seg, [1, 2, 3], 3.0, 1.0, np.random.default_rng(4)),
        misdraw(seg, [1, 2, 3], 3.0, 1.0, np.random.default_rng(4)),
    )
    assert np.array_equal(misdraw(seg, [1, 2, 3], 0.0, 1.0, np.random.default_rng(4)), seg)


def test_noisier_reader_changes_only_the_seg(tmp_path: Path) -> None:
    base = generate_cohort(tmp_path / "base", 1, 41, n_timepoints=2, story="v2")
    noisy = generate_cohort(
        tmp_path / "noisy", 1, 41, n_timepoints=2, story="v2", variant="reader-noisier"
    )
    assert json.loads((base / "cohort.json").read_text())["story_variant"] == "base"
    assert json.loads((noisy / "cohort.json").read_text())["story_variant"] == "reader-noisier"
    for name in ("ground_truth/lesions.csv", "manifest.csv"):
        assert (base / name).read_text() == (noisy / name).read_text()
    segs = sorted(base.glob("patients/*/tp*/SEG.dcm"))
    assert segs
    moved = 0
    for path in segs:
        other = noisy / path.relative_to(base)
        a, b = pydicom.dcmread(path), pydicom.dcmread(other)
        assert len(a.SegmentSequence) == len(b.SegmentSequence)  # the same lesions seen
        moved += int(
            a.pixel_array.shape != b.pixel_array.shape or (a.pixel_array != b.pixel_array).any()
        )
        ct = sorted(path.parent.glob("CT/*.dcm"))[:1]
        for f in ct:
            assert f.read_bytes() == (noisy / f.relative_to(base)).read_bytes()
    assert moved > 0


def test_cli_refuses_a_variant_it_cannot_draw(tmp_path: Path) -> None:
    run = CliRunner()
    out = str(tmp_path / "c")
    v1 = run.invoke(app, ["clinic", "generate", "--out", out, "--variant", "no-pcct"])
    assert v1.exit_code == 1 and "add --story v2" in v1.output
    bad = run.invoke(app, ["clinic", "generate", "--out", out, "--story", "v2", "--variant", "x"])
    assert bad.exit_code == 1 and "unknown story variant 'x'" in bad.output
    assert not (tmp_path / "c").exists()
