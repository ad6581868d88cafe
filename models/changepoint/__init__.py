"""Change-point detection over one patient's score series, and the alerting decision rule.

Every detector follows the same small estimator API: keyword-only constructor arguments,
``fit(...) -> Self`` and ``predict() -> ChangeResult`` (online detectors also ``update``).
"""

from models.changepoint.bocpd import Bocpd
from models.changepoint.cusum import Cusum
from models.changepoint.decision import (
    DEFAULT_COEFFICIENTS,
    FEATURES,
    Coefficients,
    Decision,
    DecisionConfig,
    DecisionRule,
    Flag,
    calibrate,
    features,
)
from models.changepoint.irecist import (
    Assessment,
    Irecist,
    IrecistConfig,
    recist_progression,
)
from models.changepoint.recist import (
    LesionMeasure,
    RecistConfig,
    Timepoint,
    new_lesion_roles,
    node_unequivocally_new,
    nontarget_response,
    overall_response,
    select_baseline,
    sum_of_diameters,
    target_response,
)
from models.changepoint.result import ChangeResult
from models.changepoint.series import PatientSeries

__all__ = [
    "DEFAULT_COEFFICIENTS",
    "FEATURES",
    "Assessment",
    "Bocpd",
    "ChangeResult",
    "Coefficients",
    "Cusum",
    "Decision",
    "DecisionConfig",
    "DecisionRule",
    "Flag",
    "Irecist",
    "IrecistConfig",
    "LesionMeasure",
    "PatientSeries",
    "RecistConfig",
    "Timepoint",
    "calibrate",
    "features",
    "new_lesion_roles",
    "node_unequivocally_new",
    "nontarget_response",
    "overall_response",
    "recist_progression",
    "select_baseline",
    "sum_of_diameters",
    "target_response",
]
