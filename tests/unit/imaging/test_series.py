"""Reading CT series: ordering, HU, geometry, compressed syntaxes, and clear refusals."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from models.exceptions import IrtmonError, LimitExceededError, UnreadableInputError
from models.imaging import index_folder, read_series, volume_from_datasets
from models.imaging.series import _native_pixels, decoded_bytes
from models.limits import GIB, ReadLimits
from tests.unit.imaging.synth import ct_datasets, phantom, write_series

PYDICOM_DATA = Path(pydicom.__file__).parent / "data" / "test_files"


def _local(name: str) -> str:
    """A pydicom test file shipped in the wheel (never a download)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not bundled with this pydicom")
    return str(path)


def test_slices_are_ordered_by_position_and_rescaled(tmp_path: Path) -> None:
    hu, _ = phantom()
    folder = write_series(tmp_path / "ct", ct_datasets(hu))
    series = read_series(folder)
    assert series.volume.array.shape == hu.shape
    assert np.allclose(series.volume.array, np.round(hu), atol=0.51)
    g = series.volume.geometry
    assert g.spacing == (2.0, 1.0, 1.0)
    assert g.origin == (0.0, 0.0, -20.0)
    assert g.normal == (0.0, 0.0, 1.0)
    assert series.kernel == "Br40"


def test_reversed_positions_are_sorted(tmp_path: Path) -> None:
    hu, _ = phantom()
    ds = ct_datasets(hu)
    for k, d in enumerate(ds):  # files numbered head-to-feet, positions feet-to-head
        d.InstanceNumber = len(ds) - k
    series = volume_from_datasets(list(reversed(ds)))
    assert np.allclose(series.volume.array, np.round(hu), atol=0.51)


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [
        ("CT_small.dcm", -1024, 3100),
        ("693_J2KI.dcm", -1024, 3100),  # JPEG 2000 (lossy), Pixel Padding Value outside the FOV
        ("J2K_pixelrep_mismatch.dcm", -1024, 3100),  # JPEG 2000 lossless, signed
    ],
)
def test_pydicom_real_ct_files_read_in_hu(name: str, low: float, high: float) -> None:
    ds = pydicom.dcmread(_local(name))
    series = volume_from_datasets([ds], source=name)
    arr = series.volume.array
    assert arr.shape[0] == 1
    assert low <= float(arr.min()) < float(arr.max()) <= high
    # soft tissue and air/fat present, as in any CT slice
    assert float(np.percentile(arr, 99)) > -100


def test_pydicom_examples_ct_matches_manual_rescale() -> None:
    from pydicom import examples

    ds = examples.ct
    series = volume_from_datasets([ds])
    manual = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    manual = np.maximum(manual, -1024.0)  # air floor; CT_small has no value below it anyway
    assert np.allclose(series.volume.array[0], manual)


@pytest.mark.parametrize("signed", [False, True])
def test_uncompressed_slices_are_taken_from_their_buffer_as_pydicom_decodes_them(
    signed: bool,
) -> None:
    hu, _ = phantom()

    def edit(k: int, ds: pydicom.Dataset) -> None:
        if signed:  # stored = HU, 12 bits in 16, as many scanners write
            ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 12, 11
            ds.RescaleIntercept = 0
            ds.PixelData = np.round(hu[k]).astype("<i2").tobytes()

    datasets = ct_datasets(hu, edit=edit)
    for ds in datasets:
        fast = _native_pixels(ds)
        assert fast is not None
        assert fast.dtype == ds.pixel_array.dtype
        assert np.array_equal(fast, ds.pixel_array)
    assert np.allclose(volume_from_datasets(datasets).volume.array, np.round(hu), atol=0.51)


@pytest.mark.parametrize("name", ["693_J2KI.dcm", "MR_small_bigendian.dcm"])
def test_compressed_or_big_endian_slices_are_left_to_pydicom(name: str) -> None:
    assert _native_pixels(pydicom.dcmread(_local(name))) is None


def test_a_slice_without_file_meta_or_of_another_depth_is_left_to_pydicom() -> None:
    hu, _ = phantom()
    ds = ct_datasets(hu[:1])[0]
    assert _native_pixels(ds) is not None
    del ds.file_meta
    assert _native_pixels(ds) is None
    ds = ct_datasets(hu[:1])[0]
    ds.PixelData = ds.PixelData[:-2]  # shorter than Rows x Columns: pydicom says why
    assert _native_pixels(ds) is None
    with pytest.raises(UnreadableInputError, match="cannot be decoded"):
        volume_from_datasets([ds])


def test_pydicom_dicomdir_series_read_or_refused_with_reason() -> None:
    folder = PYDICOM_DATA / "dicomdirtests" / "98892001" / "CT5N"
    if not folder.is_dir():
        pytest.skip("dicomdir test files not bundled")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            series = read_series(folder)
        except UnreadableInputError as err:
            assert "98892001" in str(err) or "series" in str(err)
        else:
            assert series.volume.array.ndim == 3


def test_series_without_pixel_data_is_refused() -> None:
    folder = PYDICOM_DATA / "dicomdirtests" / "TINY_ALPHA"
    if not folder.is_dir():
        pytest.skip("dicomdir test files not bundled")
    with pytest.raises(UnreadableInputError, match=r"no pixel data|Pixel Spacing|Orientation"):
        read_series(folder / "PT000000" / "ST000000" / "SE000000")


def test_non_ct_is_refused() -> None:
    ds = pydicom.dcmread(_local("MR_small.dcm"))
    with pytest.raises(UnreadableInputError, match=r"is not CT \(Modality MR\)"):
        volume_from_datasets([ds])


def _series(tmp_path: Path, **kw: object) -> list[pydicom.Dataset]:
    hu, _ = phantom(shape=(8, 16, 16))
    return ct_datasets(hu, **kw)  # type: ignore[arg-type]


def test_duplicate_slices_are_refused(tmp_path: Path) -> None:
    ds = _series(tmp_path)
    ds[3].ImagePositionPatient = list(ds[2].ImagePositionPatient)
    with pytest.raises(UnreadableInputError, match="duplicate slices"):
        volume_from_datasets(ds)


def test_missing_slice_is_refused(tmp_path: Path) -> None:
    ds = _series(tmp_path)
    del ds[4]
    with pytest.raises(UnreadableInputError, match="1 missing slice"):
        volume_from_datasets(ds)


def test_inconsistent_spacing_is_refused(tmp_path: Path) -> None:
    ds = _series(tmp_path)
    for d in ds[5:]:
        d.ImagePositionPatient = [0.0, 0.0, float(d.ImagePositionPatient[2]) + 0.7]
    with pytest.raises(UnreadableInputError, match="inconsistent slice spacing"):
        volume_from_datasets(ds)


def test_mixed_sizes_and_orientations_are_refused(tmp_path: Path) -> None:
    ds = _series(tmp_path)
    ds[2].PixelSpacing = [0.5, 0.5]
    with pytest.raises(UnreadableInputError, match="pixel spacings"):
        volume_from_datasets(ds)
    ds = _series(tmp_path)
    ds[2].ImageOrientationPatient = [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    with pytest.raises(UnreadableInputError, match="orientations"):
        volume_from_datasets(ds)


def test_no_pixel_data_is_refused(tmp_path: Path) -> None:
    ds = _series(tmp_path)
    del ds[1].PixelData
    with pytest.raises(UnreadableInputError, match="has no pixel data"):
        volume_from_datasets(ds)


def test_truncated_file_is_refused_with_its_name(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", _series(tmp_path))
    victim = sorted(folder.iterdir())[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 300])
    with pytest.raises(UnreadableInputError) as info:
        read_series(folder)
    assert info.value.args[0].startswith("series ") or victim.name in str(info.value)


def test_corrupt_file_is_refused_with_its_name(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", _series(tmp_path))
    victim = sorted(folder.iterdir())[2]
    victim.write_bytes(b"\0" * 128 + b"DICM" + b"\xff\xee" * 40)
    with pytest.raises(UnreadableInputError, match=victim.name):
        read_series(folder)


def test_a_series_is_parsed_once_and_its_pixels_read_from_the_files(tmp_path: Path) -> None:
    """Indexing leaves the pixel data in the files; reading takes it from there and keeps none
    of it in the index; a file rewritten since it was indexed is read again whole."""
    import os

    hu, _ = phantom()
    folder = write_series(tmp_path / "ct", ct_datasets(hu))
    index = index_folder(folder)

    def pixels_left_in_files() -> bool:
        return all(
            ds.get_item(0x7FE00010, keep_deferred=True).value is None
            for ds in index.instances.values()
        )

    assert pixels_left_in_files()
    series = read_series(folder, index=index)
    assert np.allclose(series.volume.array, np.round(hu), atol=0.51)
    assert pixels_left_in_files()
    victim = sorted(folder.iterdir())[1]
    ds = pydicom.dcmread(victim)
    ds.ImageComments = "corrected and sent again: " + "x" * 200  # moves the pixel data
    ds.PixelData = np.full_like(ds.pixel_array, 40).tobytes()
    stat = victim.stat()
    ds.save_as(victim)
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = read_series(folder, index=index)
    changed = np.flatnonzero(np.any(again.volume.array != series.volume.array, axis=(1, 2)))
    assert len(changed) == 1
    expected = 40 * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert np.all(again.volume.array[changed[0]] == np.float32(expected))


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="does not exist"):
        index_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not DICOM")
    with pytest.raises(UnreadableInputError, match="no DICOM files"):
        index_folder(tmp_path / "empty")


def test_two_series_need_a_choice(tmp_path: Path) -> None:
    write_series(tmp_path / "a", _series(tmp_path))
    write_series(tmp_path / "b", _series(tmp_path))
    with pytest.raises(UnreadableInputError, match="holds 2 image series"):
        read_series(tmp_path)


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEGLSLossless", "JPEG2000Lossless"])
def test_compressed_transfer_syntaxes_round_trip(tmp_path: Path, syntax: str) -> None:
    import pydicom.uid as uids

    hu, _ = phantom(shape=(4, 32, 32))
    ds = ct_datasets(hu)
    for d in ds:
        try:
            d.compress(getattr(uids, syntax))
        except (RuntimeError, ValueError, NotImplementedError) as err:
            pytest.skip(f"no encoder for {syntax} here: {err}")
    folder = write_series(tmp_path / "ct", ds)
    series = read_series(folder)
    assert np.allclose(series.volume.array, np.round(hu), atol=0.51)


def test_errors_are_project_errors() -> None:
    assert issubclass(UnreadableInputError, IrtmonError)


# ----------------------------------------------------------------------------- limits


def _forged(rows: int, cols: int, frames: int) -> list[pydicom.Dataset]:
    """One slice whose header claims ``rows x cols x frames`` over a few bytes of pixel data."""
    hu, _ = phantom(shape=(1, 8, 8))
    ds = ct_datasets(hu)
    ds[0].Rows, ds[0].Columns = rows, cols
    ds[0].NumberOfFrames = frames
    return ds


def test_a_forged_frame_count_is_refused_before_decoding() -> None:
    # 8192 frames of 8192 x 8192: each dimension within 8192, 1 TiB once decoded
    ds = _forged(8192, 8192, 8192)
    assert decoded_bytes(ds[0]) == 8192**3 * 2
    with pytest.raises(LimitExceededError, match="8192 frames, more than the limit dicom_max_fr"):
        volume_from_datasets(ds)
    frames_ok = ReadLimits(dicom_max_frames=8192)
    with pytest.raises(LimitExceededError, match=r"1\.0 TiB .* dicom_max_series_bytes of 2\.0 GiB"):
        volume_from_datasets(ds, limits=frames_ok)


def test_a_matrix_past_the_limit_is_refused() -> None:
    with pytest.raises(LimitExceededError, match="9000 x 512 pixels, more than the limit dicom_m"):
        volume_from_datasets(_forged(9000, 512, 1))


def test_series_bytes_are_refused_before_the_pixel_data_is_decoded(tmp_path: Path) -> None:
    hu, _ = phantom(shape=(8, 16, 16))
    ds = ct_datasets(hu)
    for d in ds:  # pixel data that cannot be decoded: a refusal must come before decoding
        d.PixelData = b"\0" * 10
    limits = ReadLimits(dicom_max_series_bytes=7 * 16 * 16 * 2)
    with pytest.raises(LimitExceededError, match=r"\(4,096 bytes\) .* dicom_max_series_bytes"):
        volume_from_datasets(ds, limits=limits)
    with pytest.raises(UnreadableInputError, match="cannot be decoded"):
        volume_from_datasets(ds)  # within the default limits: decoded, and refused as corrupt


def test_folder_file_count_and_study_bytes_are_capped(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ct", _series(tmp_path))  # 8 files of 16 x 16 x 2 bytes
    with pytest.raises(
        LimitExceededError, match=r"more than 7 DICOM files \(limit dicom_max_files\)"
    ):
        index_folder(folder, limits=ReadLimits(dicom_max_files=7))
    with pytest.raises(LimitExceededError, match=r"\(4,096 bytes\).*dicom_max_study_bytes"):
        read_series(folder, limits=ReadLimits(dicom_max_study_bytes=4095))
    index = index_folder(folder)
    assert sum(index.decoded_bytes.values()) == 8 * 16 * 16 * 2
    with pytest.raises(LimitExceededError, match="dicom_max_series_bytes"):
        read_series(folder, index=index, limits=ReadLimits(dicom_max_series_bytes=4095))
    assert read_series(folder, index=index).volume.array.shape == (8, 16, 16)


def test_a_forged_header_in_a_folder_is_refused_on_indexing(tmp_path: Path) -> None:
    ds = _series(tmp_path)
    ds[3].NumberOfFrames = 100_000
    folder = write_series(tmp_path / "ct", ds)
    with pytest.raises(LimitExceededError, match="100000 frames, more than the limit"):
        index_folder(folder)


def test_decoded_bytes_of_one_bit_and_colour() -> None:
    ds = pydicom.Dataset()
    ds.Rows, ds.Columns, ds.NumberOfFrames, ds.BitsAllocated = 512, 512, 10, 1
    assert decoded_bytes(ds) == 512 * 512 * 10  # unpacked to a byte per pixel
    ds.BitsAllocated, ds.SamplesPerPixel, ds.NumberOfFrames = 8, 3, 1
    assert decoded_bytes(ds) == 512 * 512 * 3


def test_limits_are_validated() -> None:
    assert ReadLimits().dicom_max_series_bytes == 2 * GIB
    with pytest.raises(ValueError, match="dicom_max_files must be a positive number"):
        ReadLimits(dicom_max_files=0)
    with pytest.raises(ValueError, match="slide_min_mpp"):
        ReadLimits(slide_min_mpp=5.0, slide_max_mpp=1.0)
    with pytest.raises(ValueError, match="slide_max_mpp must be a positive number"):
        ReadLimits(slide_max_mpp=float("inf"))


def test_slice_headers_keep_every_element_but_the_pixels() -> None:
    from pydicom.dataset import Dataset

    datasets = ct_datasets(phantom((4, 16, 16))[0])
    series = volume_from_datasets(datasets)
    assert len(series.headers) == 4
    for header in series.headers:
        assert "PixelData" not in header
        original = next(d for d in datasets if d.SOPInstanceUID == header.SOPInstanceUID)
        assert "PixelData" in original  # the read slice keeps its pixels
        expected = Dataset()
        for elem in original:
            if elem.tag != 0x7FE00010:
                expected.add(elem)
        assert header == expected and header.file_meta == original.file_meta
