"""The response models' pure core: leakage-free inputs, fitting, calibration, artefacts."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from models.exceptions import ModelError
from models.registry import save_artifact
from models.response.history import (
    ALL_INPUTS,
    Biopsy,
    History,
    LabResult,
    LesionReadout,
    Scan,
    Signature,
    Treatment,
    recist_category,
    response_inputs,
)
from models.response.inference import load_models, score_timepoint
from models.response.nets import MlpConfig
from models.response.response import (
    ResponseConfig,
    fit_response,
    load_response,
    save_response,
)
from models.response.signature import (
    Pair,
    SignatureConfig,
    fit_signature,
    load_signature,
    pair_scans,
    save_signature,
)
from schemas.enums import IRecistState, RecistResponse

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
FAST = MlpConfig(hidden=8, dropout=0.0, max_epochs=60, patience=20)


def synthetic_patient(rng: np.random.Generator, i: int) -> tuple[str, History, bool, int]:
    """A patient whose immune activity shows in CT features, slides and response."""
    phenotype = int(rng.integers(0, 3))
    activity = 1.0 - phenotype + rng.normal(0, 0.5)
    non_responder = bool(rng.uniform() > 1 / (1 + math.exp(-2 * activity)))
    scans = []
    v0 = rng.uniform(10, 40)
    d0 = 2 * (3 * v0 * 1000 / (4 * math.pi)) ** (1 / 3)
    for k in range(4):
        factor = 1.0 + (0.25 * k if non_responder else -0.15 * k)
        pcct = bool(k % 2)
        # every lesion (no random draw, so the rest of the patient is as before): the
        # irradiated lesion shrinks whatever happens, the others follow the course
        in_field = d0 * factor ** (1 / 3) * (1.0 - 0.05 * k)
        out_field = 1.5 * d0 * (1.0 + (0.2 * k if non_responder else -0.2 * k))
        change = (in_field + out_field) / (2.5 * d0) - 1.0
        readout = LesionReadout(
            sum_diameters_mm=in_field + out_field,
            total_volume_ml=v0 * factor * 3,
            new_lesions=int(non_responder and k >= 2),
            in_field_mm=in_field,
            out_of_field_mm=out_field,
            recist=None
            if k == 0
            else (
                RecistResponse.PD
                if non_responder and k >= 2
                else (RecistResponse.PR if change <= -0.3 else RecistResponse.SD)
            ),
            irecist=None
            if k == 0
            else (IRecistState.IUPD if non_responder and k >= 2 else IRecistState.ISD),
        )
        feats: dict[str, float | None] = {
            "enh_texture": activity + rng.normal(0, 0.3),
            "enh_rim": float(phenotype == 1) + rng.normal(0, 0.3),
            "burden_volume_ml": v0 * factor,
            "spec_iodine_mg_ml": (1.5 + 0.5 * activity + rng.normal(0, 0.2)) if pcct else None,
        }
        scans.append(
            Scan(
                at=T0 + timedelta(days=-10 + 49 * k),
                volume_ml=v0 * factor,
                diameter_mm=2 * (3 * v0 * factor * 1000 / (4 * math.pi)) ** (1 / 3),
                features=feats,
                pcct=pcct,
                key=f"p{i}/{k}",
                lesions=readout,
            )
        )
    probs = np.zeros(3)
    probs[phenotype] = 0.8
    probs[probs == 0] = 0.1
    biopsies = (
        Biopsy(T0 - timedelta(days=25), Signature(*probs.tolist(), 500 * math.exp(activity))),
    )
    treatment = Treatment(T0, tuple(T0 + timedelta(days=21 * c) for c in range(8)))
    labs = (LabResult(T0 - timedelta(days=25), (60.0, 20.0, 0.0)[phenotype]),)
    history = History(tuple(scans), biopsies, treatment, labs)
    return f"p{i}", history, non_responder, phenotype


@pytest.fixture(scope="module")
def cohort() -> dict[str, tuple[History, bool, int]]:
    rng = np.random.default_rng(5)
    out = {}
    for i in range(60):
        p, h, nr, ph = synthetic_patient(rng, i)
        out[p] = (h, nr, ph)
    return out


def test_recist_categories_follow_the_published_thresholds() -> None:
    assert recist_category([40.0]) == "baseline"
    assert recist_category([40.0, 27.0]) == "PR"  # -32.5 %
    assert recist_category([40.0, 30.0]) == "SD"
    assert recist_category([40.0, 30.0, 36.0]) == "PD"  # +20 % and +6 mm over the nadir
    assert recist_category([20.0, 20.0, 24.0]) == "SD"  # +20 % but only 4 mm


def test_a_later_timepoint_never_changes_an_earlier_score(cohort) -> None:
    """No future leakage: rewrite everything after fu1 and the fu1 inputs and score stay."""
    h, _, _ = cohort["p3"]
    sig_model = fit_signature(
        pair_scans({p: v[0] for p, v in cohort.items()}),
        SignatureConfig(members=2, mlp=FAST),
    )
    rows = [
        response_inputs(v[0], s.at, sig_model.signature)
        for v in cohort.values()
        for s in v[0].scans
    ]
    labels = [v[1] for v in cohort.values() for _ in v[0].scans]
    pats = [p for p, v in cohort.items() for _ in v[0].scans]
    resp = fit_response(
        rows[:160],
        labels[:160],
        pats[:160],
        ALL_INPUTS,
        rows[160:],
        labels[160:],
        ResponseConfig(members=2, mlp=FAST),
    )
    at = h.scans[1].at
    before = response_inputs(h, at, sig_model.signature)
    p_before = resp.predict([before]).p[0]
    future_readout = LesionReadout(
        sum_diameters_mm=400.0,
        total_volume_ml=900.0,
        new_lesions=7,
        in_field_mm=1.0,
        out_of_field_mm=399.0,
        recist=RecistResponse.PD,
        irecist=IRecistState.ICPD,
    )
    changed = History(
        scans=h.scans[:2]
        + tuple(
            dataclasses.replace(
                s,
                volume_ml=s.volume_ml * 5,
                diameter_mm=s.diameter_mm * 3,
                lesions=future_readout,
            )
            for s in h.scans[2:]
        )
        + (
            Scan(
                at + timedelta(days=1),
                500.0,
                99.0,
                {"enh_texture": -9.0},
                key="new",
                lesions=future_readout,
            ),
        ),
        biopsies=(*h.biopsies, Biopsy(at + timedelta(hours=1), Signature(0, 0, 1, 0.0))),
        treatment=Treatment(h.treatment.rt_start, (*h.treatment.ici_doses, at + timedelta(days=2))),
        labs=(*h.labs, LabResult(at + timedelta(hours=2), 100.0)),
    )
    after = response_inputs(changed, at, sig_model.signature)
    assert after == before
    assert before["has_lesion_readout"] == 1.0 and before["pd_l1_missing"] == 0.0
    assert resp.predict([after]).p[0] == p_before
    # and the later timepoint itself does see the change
    later = h.scans[2].at
    for name in ("log_volume_vs_baseline", "log_out_of_field_vs_baseline", "new_lesion_count"):
        assert response_inputs(changed, later)[name] != pytest.approx(
            response_inputs(h, later)[name]
        )
    # a PD-L1 reported only after the scan is unknown at the scan
    late = History(h.scans, h.biopsies, h.treatment, (LabResult(later, 80.0),))
    assert response_inputs(late, at)["pd_l1_missing"] == 1.0
    assert response_inputs(late, later)["pd_l1_tps"] == pytest.approx(0.8)


def test_inputs_need_a_scan_at_or_before_the_time(cohort) -> None:
    h, _, _ = cohort["p1"]
    with pytest.raises(ValueError, match="no scan at or before"):
        response_inputs(h, h.scans[0].at - timedelta(days=1))


def test_virtual_biopsy_learns_the_teacher_and_works_without_spectral(cohort) -> None:
    hist = {p: v[0] for p, v in cohort.items()}
    pairs = pair_scans(hist)
    assert len(pairs) == 60  # each biopsy pairs with the planning scan, 15 days later
    model = fit_signature(pairs[:45], SignatureConfig(members=3, mlp=FAST))
    test = pairs[45:]
    probs, til, spread = model.predict([p.scan for p in test])
    teacher = [
        int(np.argmax([p.teacher.p_inflamed, p.teacher.p_excluded, p.teacher.p_desert]))
        for p in test
    ]
    assert np.mean(probs.argmax(axis=1) == np.array(teacher)) > 0.6
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (til > 0).all() and (spread >= 0).all()
    pcct = dataclasses.replace(
        test[0].scan, pcct=True, features={**test[0].scan.features, "spec_iodine_mg_ml": 2.0}
    )
    with_spec, _, _ = model.predict([pcct])
    without, _, _ = model.predict([pcct], use_spectral=False)
    assert np.isfinite(with_spec).all() and np.isfinite(without).all()


def _artefacts(tmp_path: Path, cohort) -> tuple[Path, Path]:
    hist = {p: v[0] for p, v in cohort.items()}
    sig = fit_signature(pair_scans(hist), SignatureConfig(members=2, mlp=FAST))
    rows = [response_inputs(h, s.at, sig.signature) for h, _, _ in cohort.values() for s in h.scans]
    labels = [nr for h, nr, _ in cohort.values() for _ in h.scans]
    pats = [p for p, (h, _, _) in cohort.items() for _ in h.scans]
    resp = fit_response(
        rows[:160],
        labels[:160],
        pats[:160],
        ALL_INPUTS,
        rows[160:],
        labels[160:],
        ResponseConfig(members=3, mlp=FAST),
    )
    s_art = save_artifact(
        tmp_path, "ct-signature", "v1", save_signature(sig, tmp_path / "ct-signature.pt")
    )
    r_art = save_artifact(tmp_path, "response", "v1", save_response(resp, tmp_path / "response.pt"))
    return s_art.folder, r_art.folder


def test_artefacts_round_trip_and_score_a_timepoint(tmp_path, cohort) -> None:
    s_folder, r_folder = _artefacts(tmp_path, cohort)
    models = load_models((s_folder, None, "v1"), (r_folder, None, "v1"))
    h, _, _ = cohort["p2"]
    scores = {s.name: s for s in score_timepoint(h, h.scans[1].at, models)}
    assert set(scores) == {
        "ct_immune_score",
        "ct_p_inflamed",
        "ct_p_excluded",
        "ct_p_desert",
        "ct_til_density",
        "response_probability",
    }
    rp = scores["response_probability"]
    assert 0 < rp.value < 1 and rp.lower <= rp.value <= rp.upper
    assert rp.model_name == "response" and rp.model_version == "v1"
    # loading again gives the same numbers
    again = {s.name: s.value for s in score_timepoint(h, h.scans[1].at, models)}
    assert again["response_probability"] == rp.value


def test_a_tampered_or_unversioned_model_is_refused(tmp_path, cohort) -> None:
    s_folder, r_folder = _artefacts(tmp_path, cohort)
    with pytest.raises(ModelError, match="not a ct-signature model"):
        load_signature(r_folder)
    weights = r_folder / "response.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="do not match their recorded hash"):
        load_response(r_folder)
    card = s_folder / "model.json"
    card.write_text(card.read_text().replace('"version": "v1"', '"version": ""'))
    with pytest.raises(ModelError, match="has no 'version'"):
        load_signature(s_folder)


@pytest.mark.parametrize("method", ["beta", "platt", "isotonic"])
def test_calibration_is_monotone_and_bounded(method: str) -> None:
    rng = np.random.default_rng(0)
    rows = [{k: float(rng.normal()) for k in ("a", "b")} for _ in range(400)]
    labels = [bool(r["a"] + rng.normal(0, 0.7) > 0) for r in rows]
    pats = [f"q{i // 4}" for i in range(400)]
    model = fit_response(
        rows[:300],
        labels[:300],
        pats[:300],
        ["a", "b"],
        rows[300:],
        labels[300:],
        ResponseConfig(members=3, mlp=FAST, calibration=method),
    )
    assert model.calibration.method == method
    grid = [{"a": a, "b": 0.0} for a in np.linspace(-3, 3, 25)]
    p = model.predict(grid).p
    assert (np.diff(p) >= -1e-9).all()
    if method in ("beta", "platt"):  # keep the ranking strictly, away from the floor and ceiling
        inside = (p[:-1] > 0.006) & (p[1:] < 0.994)
        assert inside.sum() >= 5 and (np.diff(p)[inside] > 0).all()
    assert p.min() >= 0.005 and p.max() <= 0.995
    pred = model.predict(rows[300:])
    assert (pred.lower <= pred.p).all() and (pred.p <= pred.upper).all()


def test_beta_calibration_mends_one_over_confident_tail() -> None:
    """Raw probabilities over-confident near 0 only (true rate 1.5 % where the model says
    0.1 %, right near 1): beta calibration recovers the true map, Platt's single slope
    cannot, and the fitted map stays monotone."""
    from models.response.response import Calibration, _beta_terms

    rng = np.random.default_rng(7)
    raw = rng.uniform(0.001, 0.999, 6000)
    a, b, c = 0.35, 1.0, 0.3  # the true map: flat near 0, steep near 1
    truth = 1.0 / (1.0 + np.exp(-(_beta_terms(raw) @ np.array([a, b]) + c)))
    y = rng.uniform(size=raw.size) < truth
    beta = Calibration.fit(raw, y, "beta")
    platt = Calibration.fit(raw, y, "platt")
    assert beta.method == "beta"
    np.testing.assert_allclose(beta.params, [a, b, c], atol=0.15)
    grid = np.linspace(0.001, 0.999, 200)
    true_grid = 1.0 / (1.0 + np.exp(-(_beta_terms(grid) @ np.array([a, b]) + c)))
    assert np.abs(beta(grid) - true_grid).max() < 0.03
    assert np.abs(platt(grid) - true_grid).max() > 0.06
    assert (np.diff(beta(grid)) >= 0).all()


def test_beta_calibration_never_turns_the_ranking_around() -> None:
    """Outcomes that fall as ln p rises would give a negative slope: that term is dropped,
    so the map stays non-decreasing."""
    from models.response.response import Calibration

    rng = np.random.default_rng(8)
    raw = rng.uniform(0.01, 0.99, 3000)
    truth = np.where(raw < 0.3, 0.6 - raw, 0.3 + 0.5 * (raw - 0.3))  # dips, then rises
    y = rng.uniform(size=raw.size) < truth
    cal = Calibration.fit(raw, y, "beta")
    assert cal.method == "beta" and min(cal.params[:2]) == 0.0
    assert (np.diff(cal(np.linspace(0.01, 0.99, 100))) >= 0).all()


def test_pairs_keep_patients_apart() -> None:
    scan = Scan(T0, 10.0, 20.0, {"rad_x": 1.0})
    far = Biopsy(T0 - timedelta(days=90), Signature(1, 0, 0, 1.0))
    near = Biopsy(T0 - timedelta(days=20), Signature(0, 1, 0, 1.0))
    pairs = pair_scans({"a": History((scan,), (far, near))})
    assert pairs == [Pair("a", scan, near.signature)]


def test_cross_fitted_calibration_never_predicts_a_patient_it_trained_on() -> None:
    """A patient's out-of-fold prediction comes from members that never saw it: changing
    that patient's labels leaves its prediction exactly as it was, while the predictions of
    patients in other folds (whose members did train on it) move."""
    from models.response.response import cross_fitted_raw

    rng = np.random.default_rng(3)
    rows = [{k: float(rng.normal()) for k in ("a", "b")} for _ in range(160)]
    labels = [bool(r["a"] + rng.normal(0, 0.7) > 0) for r in rows]
    pats = [f"q{i // 4}" for i in range(160)]
    config = ResponseConfig(members=3, mlp=FAST)
    before = cross_fitted_raw(rows, labels, pats, ["a", "b"], config)
    flipped = [not y if p == "q7" else y for y, p in zip(labels, pats, strict=True)]
    after = cross_fitted_raw(rows, flipped, pats, ["a", "b"], config)
    mine = np.array([p == "q7" for p in pats])
    assert np.isfinite(before).all()
    np.testing.assert_array_equal(before[mine], after[mine])
    assert np.abs(before[~mine] - after[~mine]).max() > 1e-4

    model = fit_response(rows, labels, pats, ["a", "b"], config=config)
    assert model.calibration.method == "beta"
    p = model.predict([{"a": a, "b": 0.0} for a in (-2.0, 0.0, 2.0)]).p
    assert p[0] < 0.3 < 0.7 < p[2]


def test_balanced_accuracy_counts_a_class_absent_from_the_test_set_quietly() -> None:
    import warnings

    from models.response.evaluate import balanced_accuracy

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning escapes
        # classes 0 and 1 present; one 0 called 2 (absent): recall 1/2 and 1
        assert balanced_accuracy([0, 0, 1, 1], [0, 2, 1, 1]) == 0.75


def test_ece_noise_floor_is_what_a_calibrated_model_shows() -> None:
    from models.response.evaluate import binary_ece, ece_if_calibrated

    rng = np.random.default_rng(4)
    p = rng.uniform(0.02, 0.98, 200)
    median, p90 = ece_if_calibrated(p, draws=400)
    assert 0.02 < median < p90 < 0.12  # a few per cent at 200 predictions
    # a calibrated model's observed ECE sits under the 90th percentile most of the time...
    calibrated = [binary_ece(rng.uniform(size=200) < p, p) for _ in range(200)]
    assert np.mean(np.array(calibrated) <= p90) > 0.8
    # ...a badly over-confident one does not
    sharp = np.where(p > 0.5, 0.99, 0.01)
    assert binary_ece(rng.uniform(size=200) < p, sharp) > p90
    assert ece_if_calibrated(np.full(4000, 0.3), draws=50)[1] < 0.02  # more data, lower floor
