"""Shared fixtures: repository paths and free loopback ports."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


from irtmon.stack.private import free_port  # noqa: E402,F401 - re-exported for the tests


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--retrain-reference",
        action="store_true",
        default=False,
        help="Also retrain the reference models with their one command (about an hour on 2 "
        "cores) and compare them with the committed ones (tests/integration/"
        "test_reference_models.py).",
    )
    parser.addoption(
        "--reference-work",
        default=None,
        help="Work folder for --retrain-reference (a cohort already there is reused once its "
        "events' hash matches the committed one); default: a temporary folder.",
    )
