"""The worker's lesion SEG holds every lesion's voxels exactly, though only the slices that hold
a lesion are handed to highdicom: read back by irtmon's own SEG reader onto the series' grid,
each segment equals the mask it was written from, and the SEG's frames reference only those
slices' images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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
