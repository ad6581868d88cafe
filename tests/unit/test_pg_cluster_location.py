"""Where the local PostgreSQL cluster of a state folder lives (irtmon.stack.postgres)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from irtmon.stack import postgres


@pytest.fixture
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres, "_as_root", lambda: True)


def root_of(state: Path) -> Path:
    return postgres.cluster_root(Settings(state_dir=state))


@pytest.mark.usefixtures("as_root")
def test_as_root_each_state_folder_has_its_own_stable_system_cluster(tmp_path: Path) -> None:
    a = root_of(tmp_path / "clone-a" / ".irtmon")
    assert a.parent == postgres.SYSTEM_ROOT
    assert a.name.startswith("clone-a-.irtmon-")
    assert root_of(tmp_path / "clone-a" / ".irtmon") == a
    assert root_of(tmp_path / "clone-a" / "sub" / ".." / ".irtmon") == a  # the resolved path
    b = root_of(tmp_path / "clone-b" / ".irtmon")
    assert b != a and b.parent == postgres.SYSTEM_ROOT


@pytest.mark.usefixtures("as_root")
def test_as_root_a_cluster_made_in_the_state_folder_stays_there(tmp_path: Path) -> None:
    state = tmp_path / ".irtmon"
    (state / "postgres" / "data").mkdir(parents=True)
    (state / "postgres" / "data" / "PG_VERSION").write_text("15\n")
    assert root_of(state) == state.resolve() / "postgres"


def test_as_another_user_the_cluster_is_in_the_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "_as_root", lambda: False)
    assert root_of(tmp_path / ".irtmon") == (tmp_path / ".irtmon").resolve() / "postgres"
