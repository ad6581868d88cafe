"""Photon-counting CT: virtual monoenergetic image (VMI) series and an iodine map series.

Each series is CT Image Storage with the multi-energy attributes of DICOM Supplement 188:
Multi-energy CT Acquisition (0018,9361) ``YES``; the Multi-energy CT Image module with one
photon-counting detector path; Image Type value 4 ``VMI`` (or ``MAT_SPECIFIC`` for the iodine
map); Monoenergetic Energy Equivalent (0018,937C, keV) inside the Multi-energy CT
Characteristics Sequence (0018,9364). The model name ("NAEOTOM Alpha") and series descriptions
("VMI 40 keV", "Iodine map") follow vendor exports, for readers that must fall back on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import partial

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from clinic.ct import SeriesSpec
from clinic.dicomio import uid

PCCT_MANUFACTURER = "Siemens Healthineers"
PCCT_MODEL = "NAEOTOM Alpha"
DEFAULT_ENERGIES_KEV: tuple[float, ...] = (40.0, 55.0, 70.0, 100.0, 140.0)
IODINE_SLOPE = 0.01
"""Iodine maps are stored in units of 0.01 mg/ml."""


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def _add_ct_acquisition_macros(item: Dataset) -> None:
    """CT Acquisition Details, X-Ray Details, Exposure and Geometry of the acquisition."""
    details = Dataset()
    details.DataCollectionDiameter = "500"
    details.GantryDetectorTilt = "0"
    details.TableHeight = "160"
    details.RotationDirection = "CW"
    details.RevolutionTime = 0.25
    details.SingleCollimationWidth = 0.4
    details.TotalCollimationWidth = 57.6
    details.ReferencedPathIndex = [1, 2]
    item.CTAcquisitionDetailsSequence = DicomSequence([details])
    xray = Dataset()
    xray.KVP = "120"
    xray.FocalSpots = ["1.0"]
    xray.FilterType = "FLAT"
    xray.FilterMaterial = ["ALUMINUM"]
    item.CTXRayDetailsSequence = DicomSequence([xray])
    exposure = Dataset()
    exposure.ExposureTimeInms = 250.0
    exposure.XRayTubeCurrentInmA = 180.0
    exposure.ExposureInmAs = 45.0
    exposure.CTDIvol = 4.1
    exposure.CTDIPhantomTypeCodeSequence = DicomSequence(
        [_code("113691", "DCM", "IEC Body Dosimetry Phantom")]
    )
    exposure.ExposureModulationType = "NONE"
    exposure.ReferencedXRaySourceIndex = 1
    item.CTExposureSequence = DicomSequence([exposure])
    geometry = Dataset()
    geometry.DistanceSourceToDetector = 1085.6
    geometry.DistanceSourceToDataCollectionCenter = 595.0
    geometry.ReferencedPathIndex = [1, 2]
    item.CTGeometrySequence = DicomSequence([geometry])


def add_multienergy(ds: Dataset, kev: float | None, acquired: datetime) -> None:
    """Add the Multi-energy CT Image module to a CT slice (``kev`` None: an iodine map)."""
    ds.MultienergyCTAcquisition = "YES"
    when = acquired.strftime("%Y%m%d%H%M%S")

    source = Dataset()
    source.XRaySourceIndex = 1
    source.XRaySourceID = "TUBE_A"
    source.MultienergySourceTechnique = "CONSTANT_SOURCE"
    source.SourceStartDateTime = when
    source.SourceEndDateTime = when
    detectors, paths = [], []
    for n, (low, high) in enumerate(((20.0, 65.0), (65.0, 120.0)), start=1):
        detector = Dataset()
        detector.XRayDetectorIndex = n
        detector.XRayDetectorID = f"QUANTAMAX_BIN{n}"
        detector.MultienergyDetectorType = "PHOTON_COUNTING"
        detector.XRayDetectorLabel = f"Photon-counting energy bin {n}"
        detector.NominalMaxEnergy = f"{high:g}"
        detector.NominalMinEnergy = f"{low:g}"
        detectors.append(detector)
        path = Dataset()
        path.MultienergyCTPathIndex = n
        path.ReferencedXRaySourceIndex = 1
        path.ReferencedXRayDetectorIndex = [n]
        paths.append(path)
    acquisition = Dataset()
    acquisition.MultienergyCTXRaySourceSequence = DicomSequence([source])
    acquisition.MultienergyCTXRayDetectorSequence = DicomSequence(detectors)
    acquisition.MultienergyCTPathSequence = DicomSequence(paths)
    _add_ct_acquisition_macros(acquisition)
    ds.MultienergyCTAcquisitionSequence = DicomSequence([acquisition])

    processing = Dataset()
    processing.DecompositionMethod = "PROJECTION_BASED"
    processing.DecompositionDescription = "Two-material (water, iodine) basis decomposition"
    ds.MultienergyCTProcessingSequence = DicomSequence([processing])

    characteristics = Dataset()
    if kev is not None:
        characteristics.MonoenergeticEnergyEquivalent = float(kev)
    ds.MultienergyCTCharacteristicsSequence = DicomSequence([characteristics])


def pcct_series(
    seed: object,
    study_uid: str,
    acquired: datetime,
    energies: Sequence[float] = DEFAULT_ENERGIES_KEV,
) -> list[tuple[float | None, SeriesSpec]]:
    """(keV or None for the iodine map, series spec) for every series of one PCCT study."""
    specs: list[tuple[float | None, SeriesSpec]] = []
    for n, kev in enumerate(energies):
        specs.append(
            (
                kev,
                SeriesSpec(
                    series_uid=uid(seed, study_uid, "vmi", kev),
                    number=10 + n,
                    description=f"VMI {kev:g} keV Qr40",
                    image_type=("DERIVED", "PRIMARY", "AXIAL", "VMI"),
                    rescale_type="HU",
                    kvp=None,
                    extra=partial(add_multienergy, kev=kev, acquired=acquired),
                ),
            )
        )
    specs.append(
        (
            None,
            SeriesSpec(
                series_uid=uid(seed, study_uid, "iodine"),
                number=10 + len(energies),
                description="Iodine map Qr40",
                image_type=("DERIVED", "PRIMARY", "AXIAL", "MAT_SPECIFIC"),
                rescale_slope=IODINE_SLOPE,
                rescale_intercept=0.0,
                rescale_type="MGML",
                units=("mg/mL", "milligram per milliliter"),
                window=(2.0, 6.0),
                kvp=None,
                extra=partial(add_multienergy, kev=None, acquired=acquired),
            ),
        )
    )
    return specs
