"""Recompute the ``derived`` constants of :mod:`clinic.story_v2.params` from their published
targets.

Run ``python -m clinic.story_v2.calibration`` (about a minute): it prints each derived value
next to the one in ``params``. Nothing here looks at a model: every target is a published
number (the docstrings in ``params`` name them), and the latent model is the one
:mod:`clinic.story_v2.patient` draws from.

The latent model, per patient: infiltration ``I``, activation ``A`` and constitutive PD-L1
``K``, independent standard normals. Lesion ``j`` has infiltration
``I_j = sqrt(rho) I + sqrt(1 - rho) eta_j``. Its PD-L1 latent is
``P_j = c (I_j + A) / sqrt(2) + sqrt(1 - c^2) K``; a biopsy reads
``M = sqrt(r) P_j + sqrt(1 - r) e`` and its TIL count ``S = sqrt(r) I_j + sqrt(1 - r) e'``.
Response: ``logit p = b0 + b (I + A) / sqrt(2)``.

* ``r`` gives the PD-L1 category kappa of two biopsies of one tumour (0.711), and
  ``r * corr(P_j, P_k)`` the kappa of two lesions (0.533); ``corr(P_j, P_k) =
  1 - c^2 (1 - rho) / 2`` then ties ``rho`` to ``c``;
* ``b0`` gives 36 % responders, ``b`` the odds ratio 1.90 of an inflamed biopsy, ``c`` the
  PD-L1 AUC 0.65.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats
from scipy.special import expit

from clinic.story_v2 import params


def category_kappa(r: float, shares: tuple[float, ...] = params.PDL1_SHARES) -> float:
    """Cohen's kappa of two readings of a 3-category score whose latents correlate ``r``."""
    cuts = np.concatenate([[-np.inf], stats.norm.ppf(np.cumsum(shares)[:-1]), [np.inf]])
    mvn = stats.multivariate_normal([0.0, 0.0], [[1.0, r], [r, 1.0]])

    def cdf(x: float, y: float) -> float:
        return float(mvn.cdf([np.clip(x, -12, 12), np.clip(y, -12, 12)]))

    n = len(shares)
    table = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            table[i, j] = (
                cdf(cuts[i + 1], cuts[j + 1])
                - cdf(cuts[i], cuts[j + 1])
                - cdf(cuts[i + 1], cuts[j])
                + cdf(cuts[i], cuts[j])
            )
    observed = np.trace(table)
    expected = float((table.sum(axis=1) ** 2).sum())
    return (observed - expected) / (1.0 - expected)


def latent_correlations() -> tuple[float, float]:
    """(repeat-biopsy correlation r, lesion-to-lesion correlation of the readings)."""
    r_same = optimize.brentq(
        lambda r: category_kappa(r) - params.PDL1_KAPPA_REPEAT_BIOPSY, 0.01, 0.99
    )
    r_diff = optimize.brentq(
        lambda r: category_kappa(r) - params.PDL1_KAPPA_PRIMARY_METASTASIS, 0.01, 0.99
    )
    return r_same, r_diff


def _auc(score: np.ndarray, label: np.ndarray) -> float:
    u = stats.mannwhitneyu(score[label], score[~label]).statistic
    return float(u / (label.sum() * (~label).sum()))


def response_model(n: int = 300_000, seed: int = 1) -> dict[str, float]:
    """Solve slope, loading and intercept for the response targets (Monte Carlo, fixed seed)."""
    r_same, r_diff = latent_correlations()
    q = r_diff / r_same
    rng = np.random.default_rng(seed)
    infil, act, const, eta, e1, e2 = (rng.normal(size=n) for _ in range(6))
    u = rng.uniform(size=n)
    inflamed_cut = stats.norm.ppf(
        1.0 - params.PHENOTYPE_SHARES[next(iter(params.PHENOTYPE_SHARES))]
    )
    drive = (infil + act) / math.sqrt(2.0)

    def simulate(b: float, c: float) -> dict[str, float]:
        rho = 1.0 - 2.0 * (1.0 - q) / (c * c)
        lesion = math.sqrt(rho) * infil + math.sqrt(1.0 - rho) * eta
        pdl1 = c * (lesion + act) / math.sqrt(2.0) + math.sqrt(1.0 - c * c) * const
        reading = math.sqrt(r_same) * pdl1 + math.sqrt(1.0 - r_same) * e1
        til = math.sqrt(r_same) * lesion + math.sqrt(1.0 - r_same) * e2
        b0 = optimize.brentq(
            lambda z: expit(z + b * drive).mean() - params.OBJECTIVE_RESPONSE_RATE, -10, 10
        )
        resp = u < expit(b0 + b * drive)
        hot = til > inflamed_cut
        p1, p0 = resp[hot].mean(), resp[~hot].mean()
        return {
            "intercept": b0,
            "rho": rho,
            "odds_ratio": (p1 / (1 - p1)) / (p0 / (1 - p0)),
            "response_inflamed": p1,
            "response_not_inflamed": p0,
            "auc_pdl1": _auc(reading, resp),
            "auc_til": _auc(til, resp),
            "auc_drive": _auc(drive, resp),
        }

    def residual(x: np.ndarray) -> list[float]:
        out = simulate(float(x[0]), float(x[1]))
        return [
            out["odds_ratio"] - params.INFLAMED_RESPONSE_ODDS_RATIO,
            out["auc_pdl1"] - params.PDL1_RESPONSE_AUC,
        ]

    b, c = optimize.fsolve(residual, [0.8, 0.85], epsfcn=1e-3)
    return {"slope": float(b), "loading": float(c), "r_same": r_same, **simulate(b, c)}


def ct_noise(n: int = 400_000, seed: int = 2) -> float:
    """Noise SD on a lesion's infiltration that gives AUC 0.67 for CD8 high vs low."""
    rng = np.random.default_rng(seed)
    lesion, noise = rng.normal(size=n), rng.normal(size=n)
    high = lesion > 0.0
    return optimize.brentq(
        lambda s: _auc(lesion + s * noise, high) - params.CT_CD8_AUC, 0.1, 5.0, xtol=1e-3
    )


def local_failure_hazard() -> float:
    """Daily hazard of local failure giving one-year control 89.5 % over radiosensitivity."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()

    def control(lam: float) -> float:
        hazard = lam * np.exp(-params.LOCAL_FAILURE_RADIOSENSITIVITY * nodes)
        return float((weights * np.exp(-hazard * 365.0)).sum())

    return optimize.brentq(lambda lam: control(lam) - params.LOCAL_CONTROL_1Y, 1e-6, 1e-2)


def rt_plateau_mean() -> float:
    """Mean plateau diameter after SBRT alone with 15 % of lesions at or below 0.7."""
    return 0.7 - stats.norm.ppf(params.RT_ONLY_PARTIAL_RESPONSE) * params.RT_PLATEAU_DIAMETER_SD


def rt_onset_check() -> tuple[float, float]:
    """(share of lung changes by 6 months, share first seen after 1 year) of the onset law."""
    law = stats.lognorm(
        s=params.RT_LUNG_CHANGE_ONSET_LOG_SD, scale=params.RT_LUNG_CHANGE_ONSET_MEDIAN_DAYS
    )
    return float(law.cdf(182.6)), float(law.sf(365.25))


def dissociated_given_eligible() -> float:
    """P(dissociated | >= 2 non-irradiated lesions) giving 12.5 % of all patients."""
    lo, hi = params.LESION_COUNT
    counts = range(lo, hi + 1)
    eligible = 0.0
    for n in counts:
        two_in = params.TWO_LESIONS_IN_FIELD if n >= 3 else 0.0
        eligible += ((n - 1 >= 2) * (1 - two_in) + (n - 2 >= 2) * two_in) / len(counts)
    return params.DISSOCIATED_RESPONSE_RATE / eligible


def main() -> None:
    resp = response_model()
    rows = [
        ("SAMPLING_RELIABILITY", resp["r_same"], params.SAMPLING_RELIABILITY),
        ("RESPONSE_SLOPE", resp["slope"], params.RESPONSE_SLOPE),
        ("RESPONSE_INTERCEPT", resp["intercept"], params.RESPONSE_INTERCEPT),
        ("PDL1_IMMUNE_LOADING", resp["loading"], params.PDL1_IMMUNE_LOADING),
        ("LESION_INFILTRATION_CORRELATION", resp["rho"], params.LESION_INFILTRATION_CORRELATION),
        ("CT_NOISE_SD", ct_noise(), params.CT_NOISE_SD),
        (
            "LOCAL_FAILURE_HAZARD_PER_DAY",
            local_failure_hazard(),
            params.LOCAL_FAILURE_HAZARD_PER_DAY,
        ),
        ("RT_PLATEAU_DIAMETER_MEAN", rt_plateau_mean(), params.RT_PLATEAU_DIAMETER_MEAN),
        (
            "DISSOCIATED_GIVEN_ELIGIBLE",
            dissociated_given_eligible(),
            params.DISSOCIATED_GIVEN_ELIGIBLE,
        ),
    ]
    print(f"{'constant':34s} {'derived':>12s} {'in params':>12s}")
    for name, value, used in rows:
        print(f"{name:34s} {value:12.4g} {used:12.4g}")
    print(
        "checks: response inflamed {response_inflamed:.3f} / not {response_not_inflamed:.3f}, "
        "odds ratio {odds_ratio:.2f}; AUC PD-L1 {auc_pdl1:.3f}, TIL {auc_til:.3f}, "
        "immune drive (oracle) {auc_drive:.3f}".format(**resp)
    )
    by6, after1y = rt_onset_check()
    print(f"lung changes after SBRT: {by6:.2f} by 6 months, {after1y:.2f} after one year")


if __name__ == "__main__":
    main()
