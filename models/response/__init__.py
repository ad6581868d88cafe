"""Response models: the CT virtual biopsy of the immune signature and the per-timepoint
probability of non-response, with their training, evaluation and artefacts.

- :mod:`models.response.history`: a patient's history and the leakage-free inputs of a timepoint;
- :mod:`models.response.cohort`: a cohort manifest turned into histories (cached features);
- :mod:`models.response.signature`: the virtual biopsy (``ct-signature``);
- :mod:`models.response.response`: the calibrated response ensemble (``response``);
- :mod:`models.response.train`: training runs with reports and baselines;
- :mod:`models.response.inference`: loading promoted models and scoring one timepoint.
"""
