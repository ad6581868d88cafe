"""Photon-counting / multi-energy CT: recognise the study, group its series by keV.

The standard attributes of DICOM Supplement 188 come first: Multi-energy CT Acquisition
(0018,9361) ``YES``, Image Type value 4 (``VMI``, or a material map such as ``MAT_SPECIFIC``),
Monoenergetic Energy Equivalent (0018,937C) inside the Multi-energy CT Characteristics Sequence
(0018,9364). Vendor exports often leave them empty, so the reader falls back on the model name
(e.g. "NAEOTOM Alpha") and the series description ("VMI 40 keV", "Iodine map", "Jod").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from models.imaging.series import SeriesIndex

__all__ = [
    "PCCT_MODELS",
    "PcctStudy",
    "find_pcct_series",
    "is_iodine_map",
    "is_multi_energy",
    "vmi_kev",
]

PCCT_MODELS: tuple[str, ...] = ("NAEOTOM", "PHOTON", "SPECTRAL CT", "IQON", "REVOLUTION CT APEX")
"""Model-name fragments of scanners whose series are multi-energy by construction."""

_KEV_RE = re.compile(r"(\d{2,3}(?:\.\d+)?)\s*ke[vV]", re.IGNORECASE)
_IODINE_RE = re.compile(r"iodine|\bjod\b|\biod|iodine\s*map|\bI\s*map", re.IGNORECASE)
_MATERIAL_TYPES = {"MAT_SPECIFIC", "MAT_VALUE_BASED", "MAT_FRACTIONAL"}


def _image_type(ds: Dataset) -> list[str]:
    return [str(v).upper() for v in (ds.get("ImageType") or [])]


def is_multi_energy(ds: Dataset) -> bool:
    """Whether ``ds`` comes from a multi-energy (e.g. photon-counting) acquisition."""
    if str(ds.get("MultienergyCTAcquisition", "")).upper() == "YES":
        return True
    itype = _image_type(ds)
    if len(itype) > 3 and (itype[3] == "VMI" or itype[3] in _MATERIAL_TYPES):
        return True
    model = str(ds.get("ManufacturerModelName", "")).upper()
    return any(m in model for m in PCCT_MODELS)


def vmi_kev(ds: Dataset) -> float | None:
    """The keV of a virtual monoenergetic image, or None when ``ds`` is not one.

    Monoenergetic Energy Equivalent (0018,937C) inside (0018,9364) first, then the same
    attribute at the top level, then a "<n> keV" in the series description of a multi-energy
    series.
    """
    for item in ds.get("MultienergyCTCharacteristicsSequence") or []:
        value = item.get("MonoenergeticEnergyEquivalent")
        if value not in (None, ""):
            return float(value)
    value = ds.get("MonoenergeticEnergyEquivalent")
    if value not in (None, ""):
        return float(value)
    itype = _image_type(ds)
    vmi_flag = len(itype) > 3 and itype[3] == "VMI"
    if vmi_flag or is_multi_energy(ds):
        match = _KEV_RE.search(str(ds.get("SeriesDescription", "")))
        if match:
            return float(match.group(1))
    return None


def is_iodine_map(ds: Dataset) -> bool:
    """Whether ``ds`` is an iodine (material) map of a multi-energy acquisition."""
    itype = _image_type(ds)
    description = str(ds.get("SeriesDescription", ""))
    if len(itype) > 3 and itype[3] in _MATERIAL_TYPES:
        return not description or bool(_IODINE_RE.search(description))
    return is_multi_energy(ds) and bool(_IODINE_RE.search(description))


@dataclass
class PcctStudy:
    """The series of one multi-energy study: VMIs by keV, the iodine map, the rest."""

    vmi: dict[float, str] = field(default_factory=dict)
    iodine_map: str | None = None
    other: list[str] = field(default_factory=list)

    @property
    def is_pcct(self) -> bool:
        """At least one VMI or an iodine map was found."""
        return bool(self.vmi) or self.iodine_map is not None

    def reference_kev(self, preferred: float = 70.0) -> float | None:
        """The keV closest to ``preferred`` (70 keV resembles a 120 kVp conventional CT)."""
        if not self.vmi:
            return None
        return min(self.vmi, key=lambda k: (abs(k - preferred), k))


def find_pcct_series(index: SeriesIndex) -> PcctStudy:
    """Group the image series of a folder into VMIs by keV and an iodine map."""
    study = PcctStudy()
    for uid in sorted(index.images):
        ds = index.headers[uid]
        if not is_multi_energy(ds):
            study.other.append(uid)
            continue
        kev = vmi_kev(ds)
        if kev is not None:
            study.vmi.setdefault(kev, uid)
        elif is_iodine_map(ds) and study.iodine_map is None:
            study.iodine_map = uid
        else:
            study.other.append(uid)
    return study
