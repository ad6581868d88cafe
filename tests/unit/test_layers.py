"""The layers of the house, enforced: import-linter's contracts (pyproject.toml) hold on the
tree, and a wrong-way import breaks them. No import cycle exists, not even one hidden in a
function."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.conftest import REPO

PACKAGES = ("schemas", "models", "core", "streams", "monitoring_app", "pacs", "clinic", "irtmon")
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``root`` (which come first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=300,
    )


def test_the_tree_keeps_every_contract() -> None:
    result = _lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and the contracts, copied so that a test may add a wrong import."""
    root = tmp_path_factory.mktemp("layers")
    for package in (*PACKAGES, "bench"):
        shutil.copytree(
            REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "wrong_import", "why"),
    [
        ("models/_wrong.py", "import core.db", "the science imports the core layer"),
        ("streams/_wrong.py", "import monitoring_app.data", "one middle package imports another"),
        ("core/_wrong.py", "import irtmon.cli", "the core layer imports the CLI"),
        ("models/_wrong_client.py", "import psycopg", "the science imports a database client"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(
    copy: Path, module: str, wrong_import: str, why: str
) -> None:
    path = copy / module
    path.write_text(f'"""{why}"""\n\n{wrong_import}\n')
    try:
        result = _lint(copy)
    finally:
        path.unlink()
    assert result.returncode != 0, why
    assert "BROKEN" in result.stdout, result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout


def test_no_import_cycle_anywhere() -> None:
    """Every import counts, those inside functions too: none closes a cycle."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = sorted(
        (module, imported)
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if graph.chain_exists(importer=imported, imported=module)
    )
    assert cycles == []
