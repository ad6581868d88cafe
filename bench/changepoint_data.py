"""Virtual-clinic trajectories with known change points, for the change-point benchmark and the
decision rule's calibration.

Each patient is drawn by :func:`clinic.story.sample_patient` and evaluated at its scan times:

* **burden**: every lesion's true longest diameter and volume (:func:`clinic.story.lesion_truth`)
  times log-normal measurement noise (``diameter_cv``, default 6 per cent per lesion and scan;
  ``volume_cv``, default 12 per cent), summed over the lesions;
* **ct_immune_score**: the latent immune activity plus a per-patient reading error (sd 0.5)
  and per-scan noise (sd 0.5), like the story's own imaging biomarkers;
* **response_probability**: what a multimodal response model would output from what it can
  observe: ``sigmoid(1.4 (activity + e_patient) - 0.35 - 1.5 log(V_t / V_0) + e_t)``, with
  its own noisy volume reading (``volume_cv``), a patient-level error (sd 0.7) and per-scan
  noise (sd 0.3).

The response class and the change point are *not* inputs of any simulated signal; they are
returned alongside as ground truth only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clinic.story import Patient, ResponseClass, lesion_truth, sample_patient
from models.changepoint.series import PatientSeries

SIM_VERSION = "vclinic-sim-1"


@dataclass(frozen=True)
class SimulatedPatient:
    """One virtual patient's observed series and its ground truth."""

    patient: Patient
    series: PatientSeries
    response: ResponseClass
    change_days: float | None  # days from the first fraction (None: no true change)
    days_from_fraction: np.ndarray  # each assessment's time, days from the first fraction

    @property
    def change_index(self) -> int | None:
        """First assessment at or after the true change (None: none, or after the last scan)."""
        if self.change_days is None:
            return None
        idx = np.nonzero(self.days_from_fraction >= self.change_days)[0]
        return int(idx[0]) if len(idx) else None


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def simulate_patient(
    rng: np.random.Generator,
    number: int,
    n_timepoints: int = 8,
    diameter_cv: float = 0.06,
    volume_cv: float = 0.12,
) -> SimulatedPatient:
    """Draw one patient and its observed series (see the module docstring)."""
    p = sample_patient(rng, number, n_timepoints=n_timepoints)
    days = np.array([tp.days for tp in p.timepoints])
    sums, vols, model_vols = [], [], []
    for d in days:
        s = v = mv = 0.0
        for les in p.lesions:
            vol, diam = lesion_truth(les, float(d))
            s += diam * math.exp(rng.normal(0.0, diameter_cv))
            v += vol * math.exp(rng.normal(0.0, volume_cv))
            mv += vol * math.exp(rng.normal(0.0, volume_cv))
        sums.append(s)
        vols.append(v)
        model_vols.append(mv)
    immune_bias = rng.normal(0.0, 0.5)
    immune = p.immune_activity + immune_bias + rng.normal(0.0, 0.5, len(days))
    rp_bias = rng.normal(0.0, 0.7)
    rp = np.array(
        [
            _sigmoid(
                1.4 * (p.immune_activity + rp_bias)
                - 0.35
                - 1.5 * math.log(mv / model_vols[0])
                + rng.normal(0.0, 0.3)
            )
            for mv in model_vols
        ]
    )
    series = PatientSeries(
        times=tuple(tp.at for tp in p.timepoints),
        sum_diameters_mm=np.array(sums),
        volume_ml=np.array(vols),
        response_probability=rp,
        immune_score=immune,
        model_versions={"simulation": SIM_VERSION},
    )
    return SimulatedPatient(p, series, p.response, p.change_point_days, days)


def simulate_cohort(
    n: int,
    seed: int,
    n_timepoints: int = 8,
    diameter_cv: float = 0.06,
    volume_cv: float = 0.12,
) -> list[SimulatedPatient]:
    """``n`` patients from one seeded generator."""
    rng = np.random.default_rng(seed)
    return [simulate_patient(rng, i + 1, n_timepoints, diameter_cv, volume_cv) for i in range(n)]
