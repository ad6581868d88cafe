"""The virtual clinic: synthetic immuno-radiotherapy patients written as real artefacts.

Two generative stories: :mod:`clinic.story` (v1, the default) and :mod:`clinic.story_v2` (v2:
several lesions, new lesions, a reader's SEG per study; docs/clinic/story-v2.md). Public API::

    generate_cohort(out_dir, n_patients, seed, size="test", story="v1")   # DICOM, slides, ...
    load_events(cohort_dir)                                   # pydantic events, time order
    replay(events_or_cohort_dir, speedup)                     # (delay_seconds, event) pairs
    read_manifest(cohort_dir)                                 # the training manifest
"""

from clinic.cohort import SIZES, STORIES, demo_key, generate_cohort
from clinic.events import load_events, replay
from clinic.story import ResponseClass
from schemas.manifest import MANIFEST_COLUMNS, read_manifest

__all__ = [
    "MANIFEST_COLUMNS",
    "SIZES",
    "STORIES",
    "ResponseClass",
    "demo_key",
    "generate_cohort",
    "load_events",
    "read_manifest",
    "replay",
]
