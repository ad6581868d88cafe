"""The virtual clinic: synthetic immuno-radiotherapy patients written as real artefacts.

The generative story is told in :mod:`clinic.story`. Public API::

    generate_cohort(out_dir, n_patients, seed, size="test")   # DICOM, slides, truth, events
    load_events(cohort_dir)                                   # pydantic events, time order
    replay(events_or_cohort_dir, speedup)                     # (delay_seconds, event) pairs
    read_manifest(cohort_dir)                                 # the training manifest
"""

from clinic.cohort import SIZES, demo_key, generate_cohort
from clinic.events import load_events, replay
from clinic.story import ResponseClass
from schemas.manifest import MANIFEST_COLUMNS, read_manifest

__all__ = [
    "MANIFEST_COLUMNS",
    "SIZES",
    "ResponseClass",
    "demo_key",
    "generate_cohort",
    "load_events",
    "read_manifest",
    "replay",
]
