"""The worker's lesion SEG holds every lesion's voxels exactly, though only the slices that hold
a lesion are handed to highdicom: read back by irtmon's own SEG reader onto the series' grid,
each segment equals the mask it was written from, and the SEG's frames reference only those
slices' images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.imaging import writers
from models.imaging.annotations import lesions_from_seg
from models.imaging.lesion import MaskSource
from models.imaging.series import read_series
from models.imaging.writers import LesionOutput, build_lesions_seg
from tests.unit.imaging import lesion_study as ls


def test_each_segment_reads_back_as_its_mask(tmp_path: Path) -> None:
    images = ls.write_ct_with_simpleitk(tmp_path / "CT", ls.image())
    volume = read_series(tmp_path / "CT").volume
    masks = [e.mask() for e in ls.LESIONS]
    assert all(m.shape == volume.geometry.shape for m in masks)
    lesions = [
        LesionOutput(f"L{i}", "", e.label, m, MaskSource.PROPAGATED)
        for i, (e, m) in enumerate(zip(ls.LESIONS, masks, strict=True), start=1)
    ]
    lesions.insert(2, LesionOutput("L9", "", "gone", None))  # not seen now: no segment
    seg = build_lesions_seg(images, lesions)
    seg.save_as(tmp_path / "lesions-seg.dcm", enforce_file_format=True)

    read = lesions_from_seg(tmp_path / "lesions-seg.dcm", volume)
    assert not read.failures
    assert [r.label.split(" ", 1)[1] for r in read.lesions] == [e.label for e in ls.LESIONS]
    for lesion, mask in zip(read.lesions, masks, strict=True):
        assert np.array_equal(lesion.mask, mask), lesion.label

    holding = np.flatnonzero(np.any([m.any(axis=(1, 2)) for m in masks], axis=0))
    assert 0 < len(holding) < len(images)  # the phantom leaves slices without a lesion
    referenced = {
        ref.ReferencedSOPInstanceUID
        for series in seg.ReferencedSeriesSequence
        for ref in series.ReferencedInstanceSequence
    }
    assert referenced == {images[int(i)].SOPInstanceUID for i in holding}


def test_a_mask_off_the_series_is_refused(tmp_path: Path) -> None:
    images = ls.write_ct_with_simpleitk(tmp_path / "CT", ls.image())
    mask = ls.LESIONS[0].mask()[:-1]
    with pytest.raises(ValueError, match="one slice per source image"):
        build_lesions_seg(images, [LesionOutput("L1", "", "GTV", mask)])


def test_a_label_map_gives_the_seg_a_stack_of_masks_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """highdicom is handed the lesions as one label map when none overlap (it then skips a
    full-size sum over the segments): the SEG's frames and their references are those of the
    masks stacked one per segment."""
    images = ls.write_ct_with_simpleitk(tmp_path / "CT", ls.image())
    lesions = [
        LesionOutput(f"L{i}", "1.2.3.4", e.label, e.mask(), MaskSource.PROPAGATED)
        for i, e in enumerate(ls.LESIONS, start=1)
    ]
    assert writers._segment_pixels([x.mask for x in lesions]).ndim == 3
    labelled = build_lesions_seg(images, lesions)
    monkeypatch.setattr(
        writers, "_segment_pixels", lambda masks, keep: np.stack([m[keep] for m in masks], -1)
    )
    stacked = build_lesions_seg(images, lesions)
    assert labelled.NumberOfFrames == stacked.NumberOfFrames > len(lesions)
    assert labelled.PixelData == stacked.PixelData

    def frames(seg):  # (segment, referenced image) of each frame, in order
        return [
            (
                f.SegmentIdentificationSequence[0].ReferencedSegmentNumber,
                f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID,
            )
            for f in seg.PerFrameFunctionalGroupsSequence
        ]

    assert frames(labelled) == frames(stacked)


def test_overlapping_masks_are_handed_over_stacked() -> None:
    a = np.zeros((4, 10, 10), bool)
    b = np.zeros_like(a)
    a[1:3, 2:5, 2:5] = True
    b[2:4, 5:9, 5:9] = True
    labels = writers._segment_pixels([a, b])
    assert labels.shape == a.shape
    assert np.array_equal(labels == 1, a) and np.array_equal(labels == 2, b)
    b[2, 5, 5] = True
    a[2, 5, 5] = True  # one shared voxel
    stacked = writers._segment_pixels([a, b])
    assert stacked.shape == (*a.shape, 2)
    assert np.array_equal(stacked[..., 0], a) and np.array_equal(stacked[..., 1], b)


def test_the_label_map_on_the_kept_slices_is_the_whole_one_cut_to_them() -> None:
    rng = np.random.default_rng(3)
    masks = []
    for k in range(4):  # boxes in z with gaps between the lesions' slices
        m = np.zeros((30, 16, 16), bool)
        z0 = 2 + 7 * k
        m[z0 : z0 + 4, 3 + k : 9 + k, 4:12] = rng.random((4, 6, 8)) < 0.6
        m[z0 + 1] = False  # a slice inside the box without a voxel of it
        masks.append(m)
    seen = np.any(masks, axis=(0, 2, 3))
    keep = np.flatnonzero(seen)
    assert len(keep) < 30
    whole = writers._segment_pixels(masks)
    assert np.array_equal(writers._segment_pixels(masks, keep), whole[keep])
    masks[3][keep[-1], 0, 0] = masks[2][keep[-1], 0, 0] = True  # overlap: stacked, kept slices
    stacked = writers._segment_pixels(masks, keep)
    assert stacked.shape == (len(keep), 16, 16, 4)
    assert all(np.array_equal(stacked[..., i], m[keep]) for i, m in enumerate(masks))
