"""Story v2 of the virtual clinic: several lesions, several latent factors, every number sourced.

Modules: :mod:`.params` (every number and its source), :mod:`.calibration` (recomputes the
derived numbers), :mod:`.patient` (draws a patient), :mod:`.course` (lesions in time),
:mod:`.anatomy` (organs and lesion slots), :mod:`.render` (one CT slice), :mod:`.annotations`
(the reader's SEG and the planning RTSTRUCT), :mod:`.writer` (one patient's files). Generate a
cohort with ``clinic.generate_cohort(..., story="v2")``; the story in words is in
``docs/clinic/story-v2.md``.
"""
