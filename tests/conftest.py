"""Shared fixtures: repository paths and free loopback ports; the order of the test modules
and their grouping for parallel runs (``make test`` runs pytest with ``-n 2 --dist loadfile``)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if missing): one test process at a
    time past this point (the workers of a parallel run, or two runs in one checkout)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


from irtmon.stack.private import free_port  # noqa: E402,F401 - re-exported for the tests

SLOWEST_FIRST = (
    # minutes each (a serial run on this 2-core machine under load, --durations): started
    # first, so that a parallel run does not end waiting for one of them
    "tests/unit/test_response_cohort_v2.py",
    "tests/unit/test_evaluate_command.py",
    "tests/integration/test_demo.py",
    "tests/integration/test_lesion_stream.py",
    "tests/integration/test_faults.py",
    "tests/integration/test_imaging_cohort.py",
    "tests/integration/test_pathology_training.py",
    "tests/integration/test_response_scoring.py",
    "tests/integration/test_pacs.py",
    "tests/integration/test_streams.py",
    "tests/unit/test_response_training.py",
    "tests/integration/test_stack_cli.py",
)
SAME_WORKER = {
    # module: the module whose worker also runs it, for a session fixture both use
    "tests/unit/test_evaluate_command.py": "tests/unit/test_response_cohort_v2.py",
}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slowest modules first (:data:`SLOWEST_FIRST`); the rest keep their order."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """With ``-n N --dist loadfile`` (``make test``): a module is a unit of work, which runs
    whole in one worker (its module-scoped fixtures are built once), and the modules of
    :data:`SAME_WORKER` are one unit. Units go out in collection order with
    ``--no-loadscope-reorder``. (xdist's ``loadgroup``, which would do this with marks, does
    not group with pytest 9.2's node ids: pytest-dev/pytest-xdist#1386.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class ModuleScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = super()._split_scope(nodeid)
            return SAME_WORKER.get(module, module)

    return ModuleScheduling(config, log)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--retrain-reference",
        action="store_true",
        default=False,
        help="Also retrain the reference models with their one command (about ten minutes on 2 "
        "idle cores) and compare them with the committed ones (tests/integration/"
        "test_reference_models.py).",
    )
    parser.addoption(
        "--reference-work",
        default=None,
        help="Work folder for --retrain-reference (a cohort already there is reused once its "
        "events' hash matches the committed one); default: a temporary folder.",
    )
