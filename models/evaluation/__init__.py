"""Evaluation statistics and the evaluation protocol.

Statistics (pure: numpy, scipy):

- :mod:`~models.evaluation.estimate`: :class:`Estimate` (a value with its interval) and
  :class:`IntervalMethod`;
- :mod:`~models.evaluation.rows`: one row per patient, or a stated :class:`Aggregate`;
- :mod:`~models.evaluation.metrics`: weighted metrics computed for many resamples at once
  (AUC, balanced accuracy, sensitivity, specificity, Brier, equal-mass ECE, calibration slope
  and intercept, medians and rates);
- :mod:`~models.evaluation.resampling`: the patient-level bootstrap (percentile and BCa);
- :mod:`~models.evaluation.delong`: DeLong's AUC interval and paired AUC test (fast
  algorithm of Sun and Xu);
- :mod:`~models.evaluation.calibration`: slope, intercept, ECE with intervals; reliability
  table;
- :mod:`~models.evaluation.compare`: any metric with an interval; paired differences
  against a baseline;
- :mod:`~models.evaluation.alerts`: Wilson proportions, false alarms per patient-year,
  median detection delays;
- :mod:`~models.evaluation.targets`: the one rule that says whether a target is met;
- :mod:`~models.evaluation.plan`: :class:`EvaluationPlan`, the interval settings of one
  evaluation;
- :mod:`~models.evaluation.power`: how likely a test of a given size is to show a proportion
  target (for sizing a declaration before it is written).

Protocol (``docs/evaluation/README.md``): :mod:`~models.evaluation.declaration` (format,
validation, the pure clearance rules), :mod:`~models.evaluation.results` (results payload and
Markdown) and :mod:`irtmon.protocol` (git facts, looks log, results files; the
CLI's side, not imported by the science).
"""

from models.evaluation.alerts import false_alarm_rate, median_delay, poisson_rate, wilson
from models.evaluation.calibration import calibration_summary, ece_noise_floor, reliability_table
from models.evaluation.compare import difference_interval, metric_interval
from models.evaluation.delong import delong_auc, delong_covariance, delong_difference
from models.evaluation.estimate import Estimate, IntervalMethod
from models.evaluation.plan import EvaluationPlan, plan_from_declaration
from models.evaluation.power import proportion_power
from models.evaluation.resampling import bootstrap, replicates
from models.evaluation.rows import Aggregate, one_row_per_patient
from models.evaluation.targets import Direction, Target, Verdict, judge, render

__all__ = [
    "Aggregate",
    "Direction",
    "Estimate",
    "EvaluationPlan",
    "IntervalMethod",
    "Target",
    "Verdict",
    "bootstrap",
    "calibration_summary",
    "delong_auc",
    "delong_covariance",
    "delong_difference",
    "difference_interval",
    "ece_noise_floor",
    "false_alarm_rate",
    "judge",
    "median_delay",
    "metric_interval",
    "one_row_per_patient",
    "plan_from_declaration",
    "poisson_rate",
    "proportion_power",
    "reliability_table",
    "render",
    "replicates",
    "wilson",
]
