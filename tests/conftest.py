"""Shared fixtures: repository paths and free loopback ports."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


from irtmon.stack.private import free_port  # noqa: E402,F401 - re-exported for the tests


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
