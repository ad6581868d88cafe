"""Every benchmark module imports: a benchmark that no longer starts (bench.stream_latency did,
after a refactoring moved what it imported) is found by the tests, not by the next person
who runs it."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench

MODULES = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
DATA_ONLY = {"changepoint_data"}  # trajectories for bench.changepoint_detection, not run alone


def test_there_are_benchmarks() -> None:
    assert {"stream_latency", "imaging_study", "changepoint_detection"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_module_imports_and_has_a_main(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    if name in DATA_ONLY:
        return
    assert callable(getattr(module, "main", None)), f"bench.{name} has no main()"
