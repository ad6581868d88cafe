"""The app's controlled vocabularies: score names it knows, iRECIST states, roles, windows."""

from __future__ import annotations

from schemas.enums import IRECIST_SCORE
from schemas.enums import AlertVerb as AlertVerb
from schemas.enums import IRecistState as IRecistState  # the pages import it from here
from schemas.enums import Role as Role
from schemas.enums import carries_burden as carries_burden
from schemas.results import LESION_SCORES

RESPONSE_PROBABILITY = "response_probability"
"""Score name of the response model: P(response), with ``lower``/``upper`` as its band."""
IRECIST_STATE = IRECIST_SCORE
"""Score name of the iRECIST state per scan, the value being an :class:`IRecistState` code."""
SPECIAL_SCORES = frozenset({RESPONSE_PROBABILITY, IRECIST_STATE, *LESION_SCORES})
"""Scores drawn in their own panels (the lesion scores, sums in mm and the new-lesion count, are
drawn from the lesion tables in the burden and lesion panels); every other imaging-sourced score
is a CT virtual-biopsy signal and every biopsy-sourced score a pathology immune signature."""

RECIST_PR = -30.0
"""Partial response: sum of diameters down 30 per cent from baseline."""
RECIST_PD = 20.0
"""Progression: sum of diameters up 20 per cent from the nadir."""


NO_VALUE = "—"
"""Shown where nothing is stored."""


WINDOWS: dict[str, tuple[float, float]] = {
    "Lung": (-600.0, 1500.0),
    "Mediastinum": (40.0, 400.0),
    "Soft tissue": (50.0, 350.0),
    "Bone": (400.0, 1800.0),
}
"""CT window presets: (centre, width) in HU."""
