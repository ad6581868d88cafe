"""Every lesion of a SEG or an RTSTRUCT, and the bad annotations that refuse one lesion only.

The CT series is written by SimpleITK and the SEG by highdicom directly (not through the
virtual clinic's writer); every segment must be read and measured.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.uid import generate_uid

from models.exceptions import UnreadableInputError
from models.imaging import MaskSource, measure_burden, read_series
from models.imaging.annotations import (
    LesionProblem,
    RoiInfo,
    is_lesion_roi,
    organ_of,
    read_lesions,
)
from schemas.enums import Organ
from tests.unit.imaging import lesion_study as ls

FOUR = ls.LESIONS[:4]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("four-lesions")
    images = ls.write_ct_with_simpleitk(root / "CT", ls.image(FOUR))
    masks = [e.mask() for e in FOUR]
    fractions = [e.fraction() for e in FOUR]
    ls.write_seg_with_highdicom(root / "seg-binary.dcm", images, masks, FOUR)
    ls.write_seg_with_highdicom(
        root / "seg-fractional.dcm", images, masks, FOUR, fractional=True, fractions=fractions
    )
    return {"root": root, "images": images, "masks": masks, "series": read_series(root / "CT")}


@pytest.mark.parametrize("name", ["seg-binary.dcm", "seg-fractional.dcm"])
def test_every_segment_of_a_highdicom_seg_is_read_and_measured(study: dict, name: str) -> None:
    series = study["series"]
    found = read_lesions(study["root"] / name, series.volume, series.frame_of_reference_uid)
    assert found.failures == []
    assert [lesion.number for lesion in found.lesions] == [1, 2, 3, 4]
    for lesion, truth, mask in zip(found.lesions, FOUR, study["masks"], strict=True):
        assert lesion.label == truth.label
        assert lesion.source is MaskSource.SEG
        assert np.array_equal(lesion.mask, mask)
        burden = measure_burden(lesion.mask, series.volume.geometry)
        assert burden.longest_diameter_mm == pytest.approx(truth.long_mm, rel=0.05)
        assert burden.short_axis_mm == pytest.approx(truth.short_mm, rel=0.07)
        assert burden.volume_ml == pytest.approx(truth.volume_ml, rel=0.06)
    lung, liver, node, adrenal = found.lesions
    assert (lung.organ, liver.organ, node.organ, adrenal.organ) == (
        Organ.LUNG,
        Organ.LIVER,
        Organ.LYMPH_NODE,
        Organ.ADRENAL,
    )
    assert node.is_node and not lung.is_node
    assert lung.tracking_id == "reader lesion 1" and lung.tracking_uid
    assert lung.in_field is True and liver.in_field is None  # only "GTV" says so in a SEG


def test_a_label_map_seg_is_read(study: dict, tmp_path: Path) -> None:
    labels = np.zeros(study["masks"][0].shape, np.uint8)
    for i, mask in enumerate(study["masks"]):
        labels[mask] = i + 1
    seg = hd.seg.Segmentation(
        source_images=study["images"],
        pixel_array=labels,
        segmentation_type=hd.seg.SegmentationTypeValues.LABELMAP,
        segment_descriptions=[
            hd.seg.SegmentDescription(
                segment_number=i + 1,
                segment_label=e.label,
                segmented_property_category=hd.sr.CodedConcept(
                    "49755003", "SCT", "Morphologically Abnormal Structure"
                ),
                segmented_property_type=hd.sr.CodedConcept("108369006", "SCT", "Neoplasm"),
                algorithm_type="MANUAL",
            )
            for i, e in enumerate(FOUR)
        ],
        series_instance_uid=generate_uid(),
        series_number=7,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="tests",
        manufacturer_model_name="tests",
        software_versions="1",
        device_serial_number="1",
    )
    seg.save_as(tmp_path / "labels.dcm")
    series = study["series"]
    found = read_lesions(tmp_path / "labels.dcm", series.volume, series.frame_of_reference_uid)
    assert found.failures == []
    assert all(
        np.array_equal(a.mask, m) for a, m in zip(found.lesions, study["masks"], strict=True)
    )


def test_overlapping_segments_are_refused_and_named_the_rest_measured(
    study: dict, tmp_path: Path
) -> None:
    masks = list(study["masks"])
    masks[3] = masks[3] | np.roll(masks[2], 8, axis=2)  # the adrenal spills onto the node
    ls.write_seg_with_highdicom(tmp_path / "overlap.dcm", study["images"], masks, FOUR)
    series = study["series"]
    found = read_lesions(tmp_path / "overlap.dcm", series.volume, series.frame_of_reference_uid)
    assert [lesion.label for lesion in found.lesions] == ["GTV lung", "liver met"]
    assert {f.number for f in found.failures} == {3, 4}
    assert all(f.problem is LesionProblem.OVERLAP for f in found.failures)
    message = next(f.message for f in found.failures if f.number == 3)
    assert "segment 3 'LN subcarinal' overlaps segment 4 'adrenal'" in message


def test_an_empty_segment_is_named(study: dict, tmp_path: Path) -> None:
    masks = list(study["masks"])
    masks[1] = np.zeros_like(masks[1])
    ls.write_seg_with_highdicom(tmp_path / "empty.dcm", study["images"], masks, FOUR)
    series = study["series"]
    found = read_lesions(tmp_path / "empty.dcm", series.volume, series.frame_of_reference_uid)
    assert [lesion.number for lesion in found.lesions] == [1, 3, 4]
    (failure,) = found.failures
    assert failure.problem is LesionProblem.EMPTY
    assert "segment 2 'liver met' is empty" in failure.message


def test_a_seg_on_another_frame_of_reference_names_every_segment(
    study: dict, tmp_path: Path
) -> None:
    other = ls.write_ct_with_simpleitk(
        tmp_path / "other", ls.image(FOUR), frame_of_reference=generate_uid()
    )
    ls.write_seg_with_highdicom(tmp_path / "elsewhere.dcm", other, study["masks"], FOUR)
    series = study["series"]
    found = read_lesions(tmp_path / "elsewhere.dcm", series.volume, series.frame_of_reference_uid)
    assert found.lesions == []
    assert [f.number for f in found.failures] == [1, 2, 3, 4]
    assert all(f.problem is LesionProblem.FRAME_OF_REFERENCE for f in found.failures)
    assert "segment 2 'liver met' is on frame of reference" in found.failures[1].message


def test_a_segment_outside_the_image_is_named(study: dict, tmp_path: Path) -> None:
    """Frames placed beyond the last slice of the series (a SEG of a longer scan)."""
    images = study["images"]
    longer = ls.write_ct_with_simpleitk(
        tmp_path / "longer",
        np.concatenate([ls.image(FOUR), ls.image(())[:6]]),
        frame_of_reference=str(images[0].FrameOfReferenceUID),
    )
    masks = [np.concatenate([m, np.zeros_like(m[:6])]) for m in study["masks"]]
    masks[0][-3:, 40:50, 40:50] = True  # the lung lesion's segment reaches past slice 26
    ls.write_seg_with_highdicom(tmp_path / "beyond.dcm", longer, masks, FOUR)
    series = study["series"]
    found = read_lesions(tmp_path / "beyond.dcm", series.volume, series.frame_of_reference_uid)
    assert [lesion.number for lesion in found.lesions] == [2, 3, 4]
    (failure,) = found.failures
    assert failure.problem is LesionProblem.OUTSIDE_IMAGE
    assert "segment 1 'GTV lung'" in failure.message and "outside the image" in failure.message


# ------------------------------------------------------------------------------- RTSTRUCT


def test_every_lesion_roi_of_an_rtstruct(study: dict, tmp_path: Path) -> None:
    masks = study["masks"]
    body = np.ones_like(masks[0])
    rois = [(e.label, m) for e, m in zip(FOUR, masks, strict=True)]
    rois += [("PTV lung", masks[0]), ("Body", body)]
    path = ls.write_rtstruct(
        tmp_path / "rs.dcm",
        study["images"],
        rois,
        interpreted={"PTV lung": "PTV", "Body": "EXTERNAL", "liver met": ""},
    )
    series = study["series"]
    found = read_lesions(path, series.volume, series.frame_of_reference_uid)
    assert found.failures == []
    assert [lesion.label for lesion in found.lesions] == [e.label for e in FOUR]
    for lesion, mask in zip(found.lesions, masks, strict=True):
        dice = 2 * (lesion.mask & mask).sum() / (lesion.mask.sum() + mask.sum())
        assert dice > 0.95
        assert lesion.source is MaskSource.RTSTRUCT
    assert [lesion.in_field for lesion in found.lesions] == [True, False, False, False]
    assert found.lesions[2].is_node


def test_rtstruct_roi_outside_the_image_or_on_another_frame(study: dict, tmp_path: Path) -> None:
    masks = study["masks"]
    rois = [(e.label, m) for e, m in zip(FOUR, masks, strict=True)]
    path = ls.write_rtstruct(
        tmp_path / "rs-bad.dcm",
        study["images"],
        rois,
        shift_mm={"liver met": (0.0, 0.0, 200.0), "adrenal": (30.0, 0.0, 0.0)},
        roi_frames={"LN subcarinal": generate_uid()},
    )
    series = study["series"]
    found = read_lesions(path, series.volume, series.frame_of_reference_uid)
    assert [lesion.label for lesion in found.lesions] == ["GTV lung"]
    by_number = {f.number: f for f in found.failures}
    assert by_number[2].problem is LesionProblem.OUTSIDE_IMAGE
    assert "ROI 2 'liver met' has" in by_number[2].message
    assert by_number[3].problem is LesionProblem.FRAME_OF_REFERENCE
    assert "ROI 3 'LN subcarinal'" in by_number[3].message
    # shifted 30 mm in x: partly beyond the field of view, a clipped lesion
    assert by_number[4].problem is LesionProblem.OUTSIDE_IMAGE


def test_not_an_annotation(study: dict) -> None:
    series = study["series"]
    first = next((study["root"] / "CT").glob("*.dcm"))
    with pytest.raises(UnreadableInputError, match="neither RTSTRUCT nor SEG"):
        read_lesions(first, series.volume)


@pytest.mark.parametrize(
    ("name", "kind", "lesion"),
    [
        ("GTV", "", True),
        ("gtv_2", "ORGAN", False),  # the interpreted type is the reader's word
        ("PTV_60", "PTV", False),
        ("CTV", "", False),
        ("Lung_L", "ORGAN", False),
        ("LN 4R", "", True),
        ("liver met 2", "", True),
        ("Body", "EXTERNAL", False),
        ("Metal artefact", "", False),
        ("lesion", "GTV", True),
    ],
)
def test_which_rois_are_lesions(name: str, kind: str, lesion: bool) -> None:
    assert is_lesion_roi(RoiInfo(1, name, kind)) is lesion


def test_organ_from_codes_and_words() -> None:
    from pydicom.sr.codedict import codes

    assert organ_of([codes.SCT.Liver], "lesion 3") is Organ.LIVER
    assert organ_of([], "LN 4R") is Organ.LYMPH_NODE
    assert organ_of([], "right adrenal") is Organ.ADRENAL
    assert organ_of([], "lesion 3") is Organ.OTHER
