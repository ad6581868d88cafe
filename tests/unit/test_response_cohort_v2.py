"""End to end on a tiny story-v2 cohort: every lesion read, tracked and summed per scan by the
cohort extraction (through ``irtmon cohort features``), then the virtual biopsy and the
response model trained with every baseline and the subgroup tables.

The cohort (test size, 14 patients, 3 scans each, seed 4242; plumbing, no accuracy is asserted
of the models), its extraction and the teacher are built once per session and shared with
``test_evaluate_command.py`` (:mod:`tests.unit.story_v2_cohort`). About five minutes on two
idle cores, far more on a loaded machine: marked slow.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from tests.unit.story_v2_cohort import PATIENTS, TIMEPOINTS, TrainingCohort

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # minutes on a loaded 2-core machine


@pytest.fixture(scope="module")
def world(story_v2_training_cohort: TrainingCohort, tmp_path_factory: pytest.TempPathFactory):
    shared = story_v2_training_cohort
    return {
        "root": tmp_path_factory.mktemp("v2"),  # this module's models and runs
        "cohort": shared.cohort,
        "cache": shared.cache,
        "throughput": shared.throughput,
        "teacher": shared.teacher,
    }


def test_every_scan_carries_every_lesion(world: dict) -> None:
    from models.response.cohort import ExtractionOptions, extract_features
    from schemas.manifest import read_manifest

    t = world["throughput"]
    assert t["patients"] == PATIENTS and t["studies_computed"] + t["skipped"] * TIMEPOINTS >= 40
    assert t["studies_per_hour_per_core"] > 0 and t["studies_per_cpu_hour"] > 0
    manifest = read_manifest(world["cohort"])
    run = extract_features(
        world["cohort"],
        manifest,
        world["cache"] / "scans",
        options=ExtractionOptions(radiomics=False),
    )
    assert run.studies_computed == 0 and run.studies_cached == t["studies_computed"]  # cached
    rows = pd.DataFrame(run.rows)
    assert rows["lesion_readout"].notna().all()
    readouts = pd.DataFrame(list(rows["lesion_readout"]))
    # the planning RTSTRUCT marks the irradiated lesions: the split is known for every scan
    assert readouts["in_field_mm"].notna().all() and (readouts["in_field_mm"] >= 0).all()
    assert (rows["label"] == "planning").sum() == PATIENTS - t["skipped"]
    assert readouts.loc[rows["label"] == "planning", "recist"].isna().all()
    assert readouts.loc[rows["label"] != "planning", "recist"].notna().all()
    # against the clinic's truth: RECIST diameters summed over every lesion seen
    truth = manifest[manifest["modality"].isin(["CT", "PCCT"])].drop_duplicates(
        ["patient", "timepoint"]
    )
    merged = rows.assign(
        measured=readouts["in_field_mm"] + readouts["out_of_field_mm"],
        in_field=readouts["in_field_mm"],
    ).merge(truth, on=["patient", "timepoint"])
    assert len(merged) == len(rows)
    error = (merged["measured"] - merged["sum_of_diameters_mm"]).abs() / merged[
        "sum_of_diameters_mm"
    ].clip(lower=10.0)
    assert error.median() < 0.15, merged[["measured", "sum_of_diameters_mm"]]
    in_error = (merged["in_field"] - merged["in_field_sum_mm"]).abs() / merged[
        "in_field_sum_mm"
    ].clip(lower=10.0)
    assert in_error.median() < 0.15
    # new lesions: the count found agrees with the truth at most scans
    found = pd.Series(readouts["new_lesions"].to_numpy(), index=merged.index)
    assert (found == merged["new_lesion_count"]).mean() >= 0.8


def test_training_reports_every_baseline_and_the_subgroups(world: dict) -> None:
    from models.response import train as train_mod
    from models.response.cohort import ExtractionOptions
    from models.response.nets import MlpConfig
    from models.response.response import ResponseConfig
    from models.response.signature import SignatureConfig

    fast = MlpConfig(hidden=8, dropout=0.0, max_epochs=40, patience=10)
    selection = train_mod.Selection(options=ExtractionOptions(radiomics=False))
    root = world["root"]
    request = train_mod.TrainingRequest(
        cohort=world["cohort"],
        out=root / "ct",
        pathology=world["teacher"],
        cache_dir=world["cache"],
        models_dir=root / "models",
        version="t1",
        test_fraction=0.3,
        selection=selection,
    )
    sig = train_mod.train_ct_signature(request, config=SignatureConfig(members=2, mlp=fast))
    resp = train_mod.train_response(
        replace(request, out=root / "resp", version="r1"),
        ct_signature=sig.artifact.folder,
        config=ResponseConfig(members=2, calibration_folds=2, mlp=fast),
    )
    m = resp.metrics
    # the features came from the cache the extraction wrote
    assert m["feature_extraction"]["training"]["studies_computed"] == 0
    assert m["story_versions"] == ["v2"]
    report = (root / "resp" / "report.md").read_text()
    keys = ("recist", "burden_all", "burden", "in_field", "out_of_field", "pd_l1", "pathology")
    assert set(m["baselines"]) == set(keys)
    est = m["estimates"]
    for key in (*keys, "recist_rule", "full_no_biopsy", "full_no_spectral"):
        assert f"response.full.auc_fu1_minus_{key}" in est, key
        assert f"`{key}`" in report
    for suffix in ("biopsy", "pcct", "ct"):
        assert f"response.full.auc_fu1@{suffix}" in est, suffix
    assert "### By whether a biopsy known at the scan" in report
    assert "### By whether the scan is a PCCT" in report
    # PD-L1 came from the biopsy events: the PD-L1 baseline saw real values
    rows, _, _, _ = train_mod._rows(
        train_mod._load(world["cohort"], world["cache"], world["teacher"], 1, None, selection),
        None,
    )
    assert np.mean([r["pd_l1_missing"] for r in rows]) == 0.0
    assert len({r["pd_l1_tps"] for r in rows}) > 3
    assert np.mean([r["has_out_of_field"] for r in rows]) > 0.9
