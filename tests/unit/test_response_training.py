"""Training runs of the response models: manifest handling, patient splits, reports, artefacts.

The runs take their histories from :func:`models.response.cohort.load_cohort`; here it is
replaced by synthetic histories (the feature extraction itself is the imaging pipeline's,
tested there), so the orchestration, reports and artefacts are checked in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from models.registry import load_artifact
from models.response import train as train_mod
from models.response.cohort import CohortData, select, studies_from_manifest
from models.response.nets import MlpConfig
from models.response.response import ResponseConfig
from models.response.signature import SignatureConfig
from tests.unit.test_response_models import synthetic_patient

FAST = MlpConfig(hidden=8, dropout=0.0, max_epochs=60, patience=20)


def request(cohort, out: Path, **kw) -> train_mod.TrainingRequest:
    """A training request over the fake loader's cohorts."""
    return train_mod.TrainingRequest(cohort=cohort, out=out, **kw)


def fake_cohort(seed: int, n: int) -> CohortData:
    import numpy as np

    rng = np.random.default_rng(seed)
    histories, labels, phenotypes, scan_labels = {}, {}, {}, {}
    for i in range(n):
        p, h, nr, ph = synthetic_patient(rng, i + 1000 * seed)
        histories[p], labels[p] = h, nr
        phenotypes[p] = ("inflamed", "excluded", "desert")[ph]
        for k, s in enumerate(h.scans):
            scan_labels[s.key] = "planning" if k == 0 else f"fu{k}"
    return CohortData(histories, labels, phenotypes, scan_labels, [])


@pytest.fixture
def fake_loader(monkeypatch):
    cohorts = {"train": fake_cohort(1, 60), "test": fake_cohort(2, 30), "site": fake_cohort(3, 20)}
    monkeypatch.setattr(
        train_mod, "load_cohort", lambda cohort, *a, **k: cohorts[Path(cohort).name]
    )
    return cohorts


def test_split_patients_is_stratified_and_reproducible() -> None:
    labels = {f"p{i}": i % 3 == 0 for i in range(30)}
    rest, held = train_mod.split_patients(labels, 0.3, seed=4)
    assert not set(rest) & set(held) and len(rest) + len(held) == 30
    assert sum(labels[p] for p in held) == 3 and len(held) == 9
    assert train_mod.split_patients(labels, 0.3, seed=4) == (rest, held)


def test_training_runs_write_reports_and_artefacts(tmp_path: Path, fake_loader) -> None:
    models_dir = tmp_path / "models"
    teacher = tmp_path / "teacher"
    sig = train_mod.train_ct_signature(
        request(
            Path("train"),
            tmp_path / "ct",
            pathology=teacher,
            test_cohort=Path("test"),
            models_dir=models_dir,
            version="t1",
        ),
        config=SignatureConfig(members=2, mlp=FAST),
    )
    assert sig.metrics["n_pairs"] == 30 and sig.metrics["test"] == "separate cohort"
    assert 0 <= sig.metrics["balanced_accuracy_vs_teacher"] <= 1
    assert (tmp_path / "ct" / "report.md").read_text().startswith("# CT virtual biopsy")
    assert (tmp_path / "ct" / "confusion.png").stat().st_size > 1000
    art = load_artifact(models_dir / "ct-signature" / "t1")
    assert art.training_data_hash and art.metrics["n_train_pairs"] == 60
    assert "enh_*" in art.card and "rad_*" not in art.card  # the families it really used
    assert sorted(art.extra["train_patients"]) == sorted(fake_loader["train"].histories)
    ba = sig.metrics["estimates"]["ct_signature.balanced_accuracy_vs_teacher"]
    assert ba["n"] == 30 and ba["method"] == "patient bootstrap, BCa"
    assert ba["value"] == pytest.approx(sig.metrics["balanced_accuracy_vs_teacher"])

    resp = train_mod.train_response(
        request(
            Path("train"),
            tmp_path / "resp",
            pathology=teacher,
            test_cohort=Path("test"),
            models_dir=models_dir,
            version="r1",
        ),
        ct_signature=art.folder,
        config=ResponseConfig(members=2, mlp=FAST),
    )
    m = resp.metrics
    # every baseline of issues #19 / #22, the RECIST rule and the two counterfactuals
    assert set(m["models"]) == {
        "full model",
        "RECIST 1.1, all target lesions",
        "burden trajectory, all lesions",
        "burden trajectory, primary lesion",
        "in-field burden alone",
        "out-of-field burden alone",
        "PD-L1 TPS alone",
        "pathology at baseline alone",
        "RECIST 1.1 category rule",
        "full model, biopsy withheld",
        "full model, spectral withheld",
    }
    assert m["n_test_patients"] == 30 and m["models"]["full model"]["n_fu1"] == 30
    # cross-fitted calibration: every training patient fits and calibrates
    assert m["n_train_patients"] == m["n_calibration_patients"] == 60
    assert m["calibration"].startswith("cross-fitted")
    assert m["best_baseline"] != "full model"
    report = (tmp_path / "resp" / "report.md").read_text()
    assert "RECIST 1.1 category rule" in report and "roc_fu1.png" in report
    assert "## Models compared" in report and "## Subgroups" in report
    assert m["calibration_method"] == "beta" and "beta calibration, cross-fitted" in report
    assert "beta calibration" in load_artifact(models_dir / "response" / "r1").card
    saved = json.loads((tmp_path / "resp" / "metrics.json").read_text())
    assert saved["auc_fu1"] == m["auc_fu1"]
    # every scan's AUC with DeLong, paired differences, calibration at fu1 one row per patient
    est = saved["estimates"]
    assert est["response.full.auc_fu1"]["method"] == "DeLong"
    assert est["response.full.auc_fu1"]["value"] == pytest.approx(m["auc_fu1"])
    assert est["response.full.auc_planning"]["n"] == 30
    for base in (
        "recist",
        "burden_all",
        "burden",
        "in_field",
        "out_of_field",
        "pd_l1",
        "pathology",
        "recist_rule",
        "full_no_biopsy",
        "full_no_spectral",
    ):
        assert est[f"response.full.auc_fu1_minus_{base}"]["method"] == "DeLong"
    # subgroups: with and without PCCT (the synthetic patients alternate CT and PCCT)
    assert est["response.full.auc_fu1@pcct"]["n"] == 30
    assert "response.full.auc_planning@ct" in est and "response.full.auc_planning@pcct" not in est
    assert m["subgroups"]["pcct"]["patients_fu1"] == 30
    assert m["subgroups"]["ct"]["patients_fu1"] == 0
    assert (
        est["response.full.ece_fu1"]["n"] == 30
        and m["ece_fu1"] == est["response.full.ece_fu1"]["value"]
    )
    assert "planning (pre-treatment)" in report and "Full model minus each baseline" in report
    art_r = load_artifact(models_dir / "response" / "r1")
    assert art_r.extra["ct_signature"] == {
        "name": "ct-signature",
        "version": "t1",
        "sha256": art.sha256,
    }
    # the synthetic signal is strong: the full model must find it
    assert m["auc_fu1"] > 0.8


def test_several_cohorts_are_merged_and_never_overlap(tmp_path: Path, fake_loader) -> None:
    teacher = tmp_path / "teacher"
    config = SignatureConfig(members=2, mlp=FAST)
    run = train_mod.train_ct_signature(
        request(
            [Path("train"), Path("site")],
            tmp_path / "ct",
            pathology=teacher,
            test_cohort=Path("test"),
        ),
        config=config,
    )
    assert run.metrics["n_train_patients"] == 80 and run.metrics["n_train_pairs"] == 80
    assert "`train` + `site`" in (tmp_path / "ct" / "report.md").read_text()
    # several held-out cohorts are pooled into one test set
    pooled = train_mod.train_ct_signature(
        request(
            Path("train"),
            tmp_path / "ct-pooled",
            pathology=teacher,
            test_cohort=[Path("test"), Path("site")],
        ),
        config=config,
    )
    assert pooled.metrics["n_patients"] == 50 and pooled.metrics["n_train_patients"] == 60
    assert pooled.metrics["test"] == "2 separate cohorts, pooled"
    assert "`test` + `site`" in (tmp_path / "ct-pooled" / "report.md").read_text()
    with pytest.raises(ValueError, match="is in both train and train"):
        train_mod.train_ct_signature(
            request([Path("train"), Path("train")], tmp_path / "x", pathology=teacher),
            config=config,
        )
    with pytest.raises(ValueError, match="30 patients are in both the training and the test"):
        train_mod.train_ct_signature(
            request(
                [Path("train"), Path("test")],
                tmp_path / "y",
                pathology=teacher,
                test_cohort=Path("test"),
            ),
            config=config,
        )


def test_a_tuning_cohort_calibrates_every_model(tmp_path: Path, fake_loader) -> None:
    models_dir, teacher = tmp_path / "models", tmp_path / "teacher"
    sig = train_mod.train_ct_signature(
        request(
            Path("train"),
            tmp_path / "ct",
            pathology=teacher,
            test_cohort=Path("test"),
            models_dir=models_dir,
            version="t1",
        ),
        config=SignatureConfig(members=2, mlp=FAST),
    )
    options = {
        "ct_signature": sig.artifact.folder,
        "config": ResponseConfig(members=2, mlp=FAST),
    }
    req = request(Path("train"), tmp_path / "r", pathology=teacher, test_cohort=Path("test"))
    run = train_mod.train_response(req, calibration_cohort=Path("site"), **options)
    m = run.metrics
    assert m["n_train_patients"] == 60 and m["n_calibration_patients"] == 20
    assert m["n_test_patients"] == 30 and m["calibration"] == "tuning cohort `site`"
    assert "tuning cohort `site`" in (tmp_path / "r" / "report.md").read_text()
    for other, role in (("train", "training"), ("test", "test")):  # a tuning patient is in neither
        with pytest.raises(ValueError, match=f"tuning cohort are in the {role} cohort"):
            train_mod.train_response(req, calibration_cohort=Path(other), **options)


def test_manifest_studies_group_series_and_find_the_contour(tmp_path: Path) -> None:
    rows = []
    for tp, kind in ((0, "CT"), (1, "PCCT")):
        folder = f"patients/psn-a/tp{tp}"
        series = ["CT"] if kind == "CT" else ["VMI_70keV", "VMI_40keV", "IODINE"]
        for s in series:
            rows.append(
                {
                    "patient": "psn-a",
                    "timepoint": tp,
                    "timepoint_label": "planning" if tp == 0 else "fu1",
                    "acquired_at": f"2026-0{tp + 1}-01T10:00:00+00:00",
                    "modality": kind,
                    "path": f"{folder}/{s}",
                }
            )
    rows.append(
        {
            "patient": "psn-a",
            "timepoint": 0,
            "timepoint_label": "planning",
            "acquired_at": "2026-01-01T10:00:00+00:00",
            "modality": "SEG",
            "path": "patients/psn-a/tp0/SEG.dcm",
        }
    )
    manifest = pd.DataFrame(rows)
    studies = studies_from_manifest(tmp_path, manifest)
    assert [(s.timepoint, s.modality) for s in studies] == [(0, "CT"), (1, "PCCT")]
    assert studies[0].lesion_path == tmp_path / "patients/psn-a/tp0/SEG.dcm"
    assert studies[1].lesion_path is None
    assert studies[1].folder == tmp_path / "patients/psn-a/tp1"
    assert len(select(manifest, None, 0)) == 2
    assert select(manifest, 0 + 1, None).patient.unique().tolist() == ["psn-a"]


@pytest.fixture
def variant_loader(fake_loader, monkeypatch):
    """The fake cohorts plus a fourth, of other patients (a story variant's test cohort)."""
    cohorts = dict(fake_loader, variant=fake_cohort(4, 24))
    monkeypatch.setattr(
        train_mod, "load_cohort", lambda cohort, *a, **k: cohorts[Path(cohort).name]
    )
    return cohorts


def _json(estimates) -> str:
    return json.dumps(estimates, sort_keys=True)  # nan-safe equality


def test_frozen_models_evaluate_any_test_cohort_as_a_run_on_it_would(
    tmp_path: Path, variant_loader
) -> None:
    """Fitting and evaluation are separate: the frozen models give, on a cohort, exactly the
    estimates of a run trained the same way with that cohort as its test cohort."""
    from models.evaluation.plan import EvaluationPlan

    plan = EvaluationPlan(resamples=1000, seed=3)
    teacher, models_dir = tmp_path / "teacher", tmp_path / "models"
    sig_config = SignatureConfig(members=2, mlp=FAST)
    resp_config = ResponseConfig(members=2, mlp=FAST)

    def runs(test: str, tag: str):
        sig = train_mod.train_ct_signature(
            request(
                Path("train"), tmp_path / f"ct-{tag}", pathology=teacher,
                test_cohort=Path(test), models_dir=models_dir, version=tag, plan=plan,
            ),
            config=sig_config,
        )  # fmt: skip
        resp = train_mod.train_response(
            request(
                Path("train"), tmp_path / f"r-{tag}", pathology=teacher,
                test_cohort=Path(test), plan=plan,
            ),
            ct_signature=sig.artifact.folder,
            config=resp_config,
            calibration_cohort=Path("site"),
        )  # fmt: skip
        return sig, resp

    sig, resp = runs("test", "a")
    assert isinstance(resp.model, train_mod.ResponseModels) and sig.model is not None
    # the same cohort again: the same numbers
    again = train_mod.evaluate_response(resp.model, variant_loader["test"], plan)
    assert _json(train_mod.ev.estimates_to_json(again.estimates)) == _json(
        resp.metrics["estimates"]
    )
    sig_again = train_mod.evaluate_signature_on(sig.model, variant_loader["test"], plan)
    assert _json(sig_again["estimates"]) == _json(sig.metrics["estimates"])
    # another cohort: what a run with it as the test cohort reports
    on_variant = train_mod.evaluate_response(resp.model, variant_loader["variant"], plan)
    sig_on_variant = train_mod.evaluate_signature_on(sig.model, variant_loader["variant"], plan)
    sig_v, resp_v = runs("variant", "b")
    assert _json(train_mod.ev.estimates_to_json(on_variant.estimates)) == _json(
        resp_v.metrics["estimates"]
    )
    assert _json(sig_on_variant["estimates"]) == _json(sig_v.metrics["estimates"])
    assert on_variant.n_patients == 24 and on_variant.results == resp_v.metrics["models"]
    # a cohort the models were fitted or calibrated on is no test cohort
    resp.model.check_unseen(variant_loader["variant"], "variant test")
    for cohort, role in (("train", "training"), ("site", "tuning")):
        with pytest.raises(ValueError, match=f"variant test cohort are in the {role} cohort"):
            resp.model.check_unseen(variant_loader[cohort], "variant test")


def test_the_declared_analysis_evaluates_each_variant(tmp_path: Path, variant_loader) -> None:
    from models.evaluation.plan import EvaluationPlan
    from models.response.analysis import AnalysisCohorts, declared_analysis

    analysis = declared_analysis(
        AnalysisCohorts(
            training=Path("train"),
            tuning=Path("site"),
            test=Path("test"),
            variants={"immune-none": Path("variant")},
        ),
        tmp_path / "run",
        pathology=tmp_path / "teacher",
        plan=EvaluationPlan(resamples=1000, seed=3),
        models_dir=tmp_path / "models",
        versions=("s1", "r1"),
        signature_config=SignatureConfig(members=2, mlp=FAST),
        response_config=ResponseConfig(members=2, mlp=FAST),
    )
    est = analysis.estimates
    base = [k for k in est if "@variant:" not in k]
    on_variant = [k for k in est if k.endswith("@variant:immune-none")]
    assert "response.full.auc_fu1" in base and "ct_signature.balanced_accuracy_vs_teacher" in base
    assert sorted(on_variant) == sorted(f"{k}@variant:immune-none" for k in base)
    assert est["response.full.auc_fu1@variant:immune-none"].n == 24
    assert est["response.full.auc_fu1"].n == 30
    summary = analysis.summary["variants"]["immune-none"]
    assert summary["n_test_patients"] == 24 and summary["ct_signature_pairs"] == 24
    saved = json.loads((tmp_path / "run" / "variants" / "immune-none.json").read_text())
    assert "response.full.auc_fu1_minus_burden_all" in saved["estimates"]
