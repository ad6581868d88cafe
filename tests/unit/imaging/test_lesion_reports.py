"""The SEG and SR of a five-lesion study: one segment and one measurement group per lesion,
read back, and valid for dciodvfy (dicom3tools)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from models.imaging import MaskSource, measure_burden, read_series
from models.imaging.annotations import read_lesions
from models.imaging.writers import LesionOutput, TimepointOutput, write_lesion_outputs
from schemas.enums import LesionRole, Organ, RecistResponse
from tests.unit.imaging import lesion_study as ls

ROLES = [
    LesionRole.TARGET,
    LesionRole.TARGET,
    LesionRole.TARGET,
    LesionRole.NON_TARGET,
    LesionRole.NEW_TARGET,
]
ORGANS = [Organ.LUNG, Organ.LIVER, Organ.LYMPH_NODE, Organ.ADRENAL, Organ.BONE]


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("five")
    ls.write_ct_with_simpleitk(root / "CT", ls.image())
    series = read_series(root / "CT")
    lesions = []
    for i, (e, organ, role) in enumerate(zip(ls.LESIONS, ORGANS, ROLES, strict=True)):
        mask = e.mask()
        lesions.append(
            LesionOutput(
                tracking_id=f"L{i + 1}",
                tracking_uid=f"1.2.826.0.1.3680043.10.1.{i + 1}",
                label=e.label,
                mask=mask,
                source=MaskSource.PROPAGATED if i == 4 else MaskSource.SEG,
                burden=measure_burden(mask, series.volume.geometry),
                organ=organ,
                role=role,
                in_field=i == 0,
            )
        )
    lesions.append(
        LesionOutput("L6", "1.2.826.0.1.3680043.10.1.6", "vanished", None, role=LesionRole.TARGET)
    )
    timepoint = TimepointOutput(
        order=2,
        irecist="iUPD",
        recist=RecistResponse.PD,
        target=RecistResponse.SD,
        nontarget=RecistResponse.NON_CR_NON_PD,
        sum_mm=68.5,
        new_lesions=1,
    )
    seg, sr = write_lesion_outputs(root / "out", series.headers, lesions, timepoint)
    return {"seg": seg, "sr": sr, "series": series, "lesions": lesions}


def test_one_segment_per_lesion_read_back(written: dict) -> None:
    series = written["series"]
    back = read_lesions(written["seg"], series.volume, series.frame_of_reference_uid)
    assert back.failures == []
    assert len(back.lesions) == 5
    for lesion, out in zip(back.lesions, written["lesions"], strict=False):
        assert np.array_equal(lesion.mask, out.mask)
        assert lesion.tracking_uid == out.tracking_uid
        assert lesion.tracking_id == out.tracking_id
    assert [lesion.organ for lesion in back.lesions] == ORGANS


def test_one_measurement_group_per_lesion(written: dict) -> None:
    ds = pydicom.dcmread(written["sr"])
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    measurements = next(
        item
        for item in ds.ContentSequence
        if item.ValueType == "CONTAINER"
        and item.ConceptNameCodeSequence[0].CodeMeaning == "Imaging Measurements"
    )
    groups = measurements.ContentSequence
    assert len(groups) == 7  # 5 seen, 1 not seen, 1 for the timepoint

    def values(group):
        out = {}
        for item in group.ContentSequence:
            name = item.ConceptNameCodeSequence[0].CodeMeaning
            if item.ValueType == "NUM":
                out[name] = float(item.MeasuredValueSequence[0].NumericValue)
            elif item.ValueType == "CODE":
                out[name] = item.ConceptCodeSequence[0].CodeMeaning
            elif item.ValueType in ("TEXT", "UIDREF"):
                out[name] = str(item.get("TextValue") or item.get("UID"))
        return out

    first = values(groups[0])
    out = written["lesions"][0]
    assert first["Tracking Identifier"] == "L1"
    assert first["Tracking Unique Identifier"] == out.tracking_uid
    assert first["Finding Site"] == "Lung"
    assert first["RECIST lesion role"] == "Target Lesion at Baseline"
    assert first["Long axis"] == pytest.approx(out.burden.longest_diameter_mm, abs=0.01)
    assert first["Short axis"] == pytest.approx(out.burden.short_axis_mm, abs=0.01)
    assert first["Volume"] == pytest.approx(out.burden.volume_ml, abs=1e-4)
    assert first["iRECIST timepoint response"] == "iRECIST iUPD"
    assert first["RECIST 1.1 timepoint response"] == "RECIST 1.1 PD"
    assert first["Within the radiotherapy field"] == "Yes"
    assert values(groups[4])["RECIST lesion role"] == "New target lesion"
    gone = values(groups[5])
    assert gone["Long axis"] == 0.0 and gone["Lesion seen at this timepoint"] == "No"
    summary = values(groups[6])
    assert summary["Sum of diameters of target lesions"] == pytest.approx(68.5)
    assert summary["Number of new lesions present"] == 1.0


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
@pytest.mark.parametrize("which", ["seg", "sr"])
def test_dciodvfy_finds_no_error(written: dict, which: str) -> None:
    run = subprocess.run(
        ["dciodvfy", str(written[which])], capture_output=True, text=True, check=False
    )
    report = run.stdout + run.stderr
    errors = [line for line in report.splitlines() if line.startswith("Error")]
    assert errors == [], report
