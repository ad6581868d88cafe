"""``bench.registration_accuracy`` measures what it says on a story-v2 cohort: unregistered, the
clinic's rigid moves put the lesions millimetres from their place on the baseline; registered,
every lesion's follow-up centre lands within a pixel of its true place there (the truth's frames
and the transform's direction agree), and the module's sample count is restored after."""

from __future__ import annotations

from pathlib import Path

from bench.registration_accuracy import measure
from models.imaging import registration


def test_registered_lesions_land_on_their_true_place(cohort_v2: Path) -> None:
    default = registration._LOCAL_SAMPLES
    results = measure(cohort_v2, None, [5000, default])
    assert results["follow_ups"] >= 4
    assert results["unregistered_worst_mm_median"] > 2.0  # the clinic moved the patients
    for row in results["by_samples"].values():
        assert row["worst_mm_max"] < 2.7  # within a test-size pixel of the truth
        assert row["lesion_mm_median"] < 1.0
    reference = results["by_samples"][str(default)]
    assert reference[f"from_{default}_mm_max"] == 0.0
    assert results["by_samples"]["5000"][f"from_{default}_mm_max"] > 0.0  # another transform
    restored = registration._LOCAL_SAMPLES
    assert restored == default
