"""The data a slide model trains and evaluates on: a labelled slide and its bag of tiles."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from schemas.enums import ImmunePhenotype


@dataclass(frozen=True)
class SlideRecord:
    """One labelled slide of a cohort."""

    slide_id: str
    patient: str
    path: Path
    phenotype: ImmunePhenotype
    til_density: float


@dataclass
class SlideBag:
    """A slide's tile features, with the clinic's tile truth when it exists."""

    record: SlideRecord
    features: np.ndarray
    coords: np.ndarray
    grid_index: np.ndarray
    tissue_fraction: np.ndarray
    tile_size_level0: int = 256
    dimensions: tuple[int, int] = (0, 0)
    lymphocyte_count: np.ndarray | None = None
    truth_tissue_fraction: np.ndarray | None = None
    guide: np.ndarray | None = None

    @property
    def slide_lymphocyte_density(self) -> float | None:
        """Ground-truth lymphocytes per mm² of tissue over the tiles used."""
        if self.lymphocyte_count is None or self.truth_tissue_fraction is None:
            return None
        return float(self.lymphocyte_count.sum() / max(self.truth_tissue_fraction.sum(), 1e-9))
