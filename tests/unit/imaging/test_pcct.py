"""Recognising multi-energy series: standard attributes first, vendor fallbacks second."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from models.imaging import is_iodine_map, is_multi_energy, vmi_kev


def _vmi(kev: float | None, description: str = "", standard: bool = True) -> Dataset:
    ds = Dataset()
    ds.Modality = "CT"
    ds.SeriesDescription = description
    ds.ManufacturerModelName = "SOMATOM"
    if standard:
        ds.MultienergyCTAcquisition = "YES"
        ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL", "VMI" if kev else "MAT_SPECIFIC"]
        item = Dataset()
        if kev is not None:
            item.MonoenergeticEnergyEquivalent = kev
        ds.MultienergyCTCharacteristicsSequence = Sequence([item])
    return ds


def test_standard_attributes() -> None:
    ds = _vmi(55.0)
    assert is_multi_energy(ds)
    assert vmi_kev(ds) == 55.0
    assert not is_iodine_map(ds)


def test_iodine_map_from_image_type() -> None:
    ds = _vmi(None, "Iodine map Qr40")
    assert is_iodine_map(ds)
    assert vmi_kev(ds) is None


def test_vendor_fallback_on_model_and_description() -> None:
    ds = _vmi(None, "Spectral 70 keV Qr40", standard=False)
    ds.ManufacturerModelName = "NAEOTOM Alpha"
    assert is_multi_energy(ds)
    assert vmi_kev(ds) == 70.0
    ds.SeriesDescription = "Iodine map"
    assert is_iodine_map(ds)


def test_conventional_ct_is_not_multi_energy() -> None:
    ds = _vmi(None, "Thorax 120 kV Br40", standard=False)
    assert not is_multi_energy(ds)
    assert vmi_kev(ds) is None
    assert not is_iodine_map(ds)
