"""Fixtures shared by unit-test modules."""

from __future__ import annotations

import pytest

from tests.unit import story_v2_cohort


@pytest.fixture(scope="session")
def story_v2_training_cohort(
    tmp_path_factory: pytest.TempPathFactory,
) -> story_v2_cohort.TrainingCohort:
    """The tiny story-v2 training cohort, its feature cache and teacher (built once; read only:
    see :mod:`tests.unit.story_v2_cohort`)."""
    return story_v2_cohort.build(tmp_path_factory.mktemp("story-v2-training"))
