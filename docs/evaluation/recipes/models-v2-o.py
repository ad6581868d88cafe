"""The v2-o virtual biopsy and response model: response-v2-h's recipe at the current commit.

Trained as ``irtmon evaluate`` trains them (:func:`models.response.analysis.declared_analysis`):
on the training cohort v2-train-24101 (200 patients, 3 sessions), calibrated on the tuning
cohort v2-tune-24202 (100 patients); the analysis's test slot holds a 20-patient stand-in of a
throwaway seed (99102), which is not test data and whose numbers are not evidence. The teacher
is ``irtmon train pathology --cohort .irtmon/evidence/v2-train-24101 --version v2-o --seed 1
--no-register --workers 2 --models-dir .irtmon/models --out .irtmon/runs/patho-v2-o``.

Cohorts (``irtmon clinic generate --story v2 --timepoints 3 --workers 2``): ``--seed 24101
--patients 200 --out .irtmon/evidence/v2-train-24101``, ``--seed 24202 --patients 100 --out
.irtmon/evidence/v2-tune-24202``, ``--seed 99102 --patients 20 --out
.irtmon/evidence/v2-standin-99102``. Run from the repository root with ``PYTHONPATH=.``.
"""

from pathlib import Path

from models.evaluation.plan import EvaluationPlan
from models.response.analysis import AnalysisCohorts, declared_analysis

EVIDENCE = Path(".irtmon/evidence")

analysis = declared_analysis(
    AnalysisCohorts(
        training=EVIDENCE / "v2-train-24101",
        tuning=EVIDENCE / "v2-tune-24202",
        test=EVIDENCE / "v2-standin-99102",
    ),
    Path(".irtmon/runs/models-v2-o"),
    pathology=Path(".irtmon/models/pathology-mil/v2-o"),
    plan=EvaluationPlan(seed=1),
    models_dir=Path(".irtmon/models"),
    versions=("v2-o", "v2-o"),
    cache_dir=Path(".irtmon/derived/training-cache"),
    workers=2,
)
print(f"{len(analysis.estimates)} estimates on the stand-in (not evidence)")
