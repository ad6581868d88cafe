"""Story-v2 variants: the same virtual clinic with one assumption moved, for the robustness
table of issue #22 (item 6).

A variant is a stress scenario, not a story parameter: it asks how the models trained on story
v2 hold when the world differs from it in one way. A variant draws the random numbers of
``base`` in the same order (it only changes what a draw is turned into, and the reader's extra
noise has its own stream), so a variant cohort with the seed of a base cohort holds the same
patients, lesions and scans, changed in that one way; under an immune variant, a patient whose
course the new link changes draws that course's own numbers after it (new lesions,
pseudo-progression timing), so the rest of that patient differs too. ``base`` is story v2 as
published in :mod:`clinic.story_v2.params`, byte for byte.

* ``immune-none`` / ``immune-weaker`` / ``immune-stronger``: the logit slope of response on the
  immune drive (:data:`~clinic.story_v2.params.RESPONSE_SLOPE`) times 0, 0.5 or 2, the
  intercept solved again so that 36 % still respond (the objective response rate of
  PEMBRO-RT). The instruments (biopsy, PD-L1, CT) see the immune state as before; only how much
  it decides response changes. An inflamed biopsy's odds ratio of response is then about 1.0,
  1.4 and 2.9 instead of 1.9 (:func:`inflamed_odds_ratio`); with the factor 0 the immune state
  carries no information on response.
* ``reader-noisier``: every lesion the reader outlines in a study's SEG is drawn with a margin
  of N(0, 2.5 mm) (in-plane dilation or erosion, dithered to whole pixels), so its diameter
  moves by about N(0, 5 mm): the upper end of the reader stress range of issue #22 item 5
  ("2 to 8 % plus 2 to 5 mm"). Truth tables are unchanged; the planning RTSTRUCT is not redrawn.
* ``no-pcct``: every follow-up on the conventional CT (no photon-counting sessions, so no
  virtual monoenergetic images or iodine maps).
* ``pseudo-half`` / ``pseudo-double``: pseudo-progression in 3 % or 12 % of patients instead of
  the pooled 6.0 % (:data:`~clinic.story_v2.params.PSEUDO_PROGRESSION_RATE`);
  ``hyper-half`` / ``hyper-double``: hyperprogression in 6.6 % or 26.4 % instead of the pooled
  13.2 % (:data:`~clinic.story_v2.params.HYPERPROGRESSION_RATE`). The stress on pseudo- and
  hyperprogression rates of issue #22 item 5. The response rate stays 36 %: a pseudo-progression
  is a responder whose lesions first grow, taken from the late responders first (with 12 % none
  are left, and a few early responders become pseudo-progressions too); a hyperprogression is a
  non-responder, taken from or given back to the plain progressions (durable stable disease is
  left as it is).

Without biopsies is not a generated variant: the analysis withholds the biopsies of the base test
cohort (``full_no_biopsy`` in :mod:`models.response.baselines`), which is the same question.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

from clinic.story_v2 import params
from schemas.enums import ImmunePhenotype

BASE = "base"


@dataclass(frozen=True)
class StoryVariant:
    """One variant of story v2 (module docstring)."""

    name: str = BASE
    immune_effect: float = 1.0
    """Factor on the logit slope of response on the immune drive."""
    reader_margin_sd_mm: float = 0.0
    """SD of the margin (mm) by which the reader's outline of a lesion misses its edge."""
    pcct: bool = True
    """Whether follow-ups may be photon-counting CT sessions (half of them in story v2)."""
    pseudo_progression_factor: float = 1.0
    """Factor on the share of patients with pseudo-progression."""
    hyperprogression_factor: float = 1.0
    """Factor on the share of patients with hyperprogression."""

    @property
    def pseudo_progression_rate(self) -> float:
        """Share of all patients whose response starts as a pseudo-progression."""
        return params.PSEUDO_PROGRESSION_RATE * self.pseudo_progression_factor

    @property
    def hyperprogression_rate(self) -> float:
        """Share of all patients with hyperprogression."""
        return params.HYPERPROGRESSION_RATE * self.hyperprogression_factor

    def response_link(self) -> tuple[float, float]:
        """(intercept, slope) of ``logit P(response) = b0 + b * immune_drive``."""
        if self.immune_effect == 1.0:
            return params.RESPONSE_INTERCEPT, params.RESPONSE_SLOPE
        slope = params.RESPONSE_SLOPE * self.immune_effect
        return _intercept_for_rate(slope, params.OBJECTIVE_RESPONSE_RATE), slope


VARIANTS: dict[str, StoryVariant] = {
    v.name: v
    for v in (
        StoryVariant(),
        StoryVariant("immune-none", immune_effect=0.0),
        StoryVariant("immune-weaker", immune_effect=0.5),
        StoryVariant("immune-stronger", immune_effect=2.0),
        StoryVariant("reader-noisier", reader_margin_sd_mm=2.5),
        StoryVariant("no-pcct", pcct=False),
        StoryVariant("pseudo-half", pseudo_progression_factor=0.5),
        StoryVariant("pseudo-double", pseudo_progression_factor=2.0),
        StoryVariant("hyper-half", hyperprogression_factor=0.5),
        StoryVariant("hyper-double", hyperprogression_factor=2.0),
    )
}
"""The variants a cohort can be generated with (``irtmon clinic generate --variant``)."""


def variant(name: str) -> StoryVariant:
    """The variant called ``name``.

    Raises
    ------
    ValueError
        No such variant (the message lists them).
    """
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(
            f"unknown story variant {name!r}; choose one of {', '.join(VARIANTS)}"
        ) from None


@cache
def _intercept_for_rate(slope: float, rate: float) -> float:
    """The intercept giving ``E[expit(b0 + slope * Z)] = rate`` for a standard normal Z
    (Gauss-Hermite quadrature, 80 nodes)."""
    z, w = np.polynomial.hermite_e.hermegauss(80)
    w = w / w.sum()
    return float(
        optimize.brentq(lambda b0: float(np.dot(w, expit(b0 + slope * z))) - rate, -20.0, 20.0)
    )


def inflamed_odds_ratio(v: StoryVariant, n: int = 400_000, seed: int = 3) -> float:
    """Odds ratio of response, inflamed biopsy vs not, under ``v`` (a Monte Carlo check of the
    docstring's figures, on the latent model of :mod:`clinic.story_v2.calibration`)."""
    g = np.random.default_rng(seed)
    i, a, e = g.standard_normal((3, n))
    rho, r = params.LESION_INFILTRATION_CORRELATION, params.SAMPLING_RELIABILITY
    lesion = math.sqrt(rho) * i + math.sqrt(1 - rho) * g.standard_normal(n)
    read = math.sqrt(r) * lesion + math.sqrt(1 - r) * e
    b0, b = v.response_link()
    responds = g.uniform(size=n) < expit(b0 + b * (i + a) / math.sqrt(2.0))
    inflamed = read > stats.norm.ppf(1.0 - params.PHENOTYPE_SHARES[ImmunePhenotype.INFLAMED])
    p1, p0 = responds[inflamed].mean(), responds[~inflamed].mean()
    return float((p1 / (1 - p1)) / (p0 / (1 - p0)))
