"""`irtmon stack up | status | down`, run twice, as a user would, on a private stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from irtmon.stack import postgres
from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def processes_using(folder: Path) -> list[str]:
    """Command lines of live processes that mention ``folder`` (our broker and postmaster)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(folder) in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


@pytest.fixture
def cli_env() -> dict[str, str]:
    base = REPO / ".irtmon" / "test-stacks"
    base.mkdir(parents=True, exist_ok=True)
    state = base / f"cli-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRTMON_")}
    env.update(
        {
            "IRTMON_STATE_DIR": str(state),
            "IRTMON_CACHE_DIR": str(REPO / ".irtmon" / "cache"),
            "IRTMON_KAFKA_PORT": str(free_port()),
            "IRTMON_KAFKA_CONTROLLER_PORT": str(free_port()),
            "IRTMON_PG_PORT": str(free_port()),
            "IRTMON_KAFKA_HEAP": "384m",
            "IRTMON_MODELS_DIR": str(state / "models"),
            "COLUMNS": "200",
        }
    )
    yield env
    subprocess.run(
        [sys.executable, "-m", "irtmon", "stack", "down"], env=env, cwd=REPO, capture_output=True
    )
    postgres.delete_cluster(Settings(state_dir=state))
    shutil.rmtree(state, ignore_errors=True)


def irtmon(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "irtmon", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def status(env: dict[str, str]) -> dict:
    return json.loads(irtmon(env, "stack", "status", "--json"))


def test_up_status_down_twice(cli_env: dict[str, str]) -> None:
    state = Path(cli_env["IRTMON_STATE_DIR"])
    cluster = postgres.paths(Settings(state_dir=state)).root  # outside the state folder as root
    timescaledb = postgres.timescaledb_library(Settings()) is not None
    flavour = "timescale" if timescaledb else "plain"
    for round_ in range(2):
        out = irtmon(cli_env, "stack", "up")
        assert f"127.0.0.1:{cli_env['IRTMON_KAFKA_PORT']}" in out
        assert f"127.0.0.1:{cli_env['IRTMON_PG_PORT']}" in out
        first = status(cli_env)
        assert first["kafka"]["running"] and first["postgres"]["running"]
        assert first["topics"]["imaging.acquired"] == 8

        # a second `up` while running changes nothing: same processes
        irtmon(cli_env, "stack", "up")
        again = status(cli_env)
        assert again["kafka"]["pid"] == first["kafka"]["pid"]
        assert again["postgres"]["pid"] == first["postgres"]["pid"]

        if round_ == 1:  # the models folder deleted, the database kept (as root, elsewhere)
            shutil.rmtree(state / "models")
        migrated = irtmon(cli_env, "db", "migrate")
        assert f"database flavour: {flavour}" in migrated
        # a fresh registry gets the reference models, copied into the models folder; the
        # second migrate keeps what is promoted, and copies a missing reference folder back
        kept = irtmon(cli_env, "db", "migrate") if round_ == 1 else ""
        for name in ("pathology-mil", "ct-signature", "response"):
            if round_ == 0:
                assert f"model {name}: reference ref-v2-" in migrated
                assert "registered and promoted" in migrated
            else:
                assert f"model {name}: reference ref-v2-" in migrated
                assert "(promoted) copied back into its registered folder" in migrated
                assert f"model {name}: ref-v2-" in kept and "(promoted)" in kept
            card = next((state / "models" / name).glob("*/model.json"))
            assert "not for clinical use" in json.loads(card.read_text())["card"]
        listed = irtmon(cli_env, "models", "list")
        assert listed.count("yes") == 3 and "ref-v2-" in listed
        migrated_status = status(cli_env)
        assert migrated_status["database_flavour"] == flavour
        if timescaledb:  # the server preloads what bootstrap built; status names its version
            assert migrated_status["timescaledb"] == "2.28.3"
            assert "TimescaleDB 2.28.3" in migrated_status["postgres"]["detail"]
            assert "TimescaleDB 2.28.3" in irtmon(cli_env, "stack", "status")
        else:
            assert migrated_status["timescaledb"] is None
            assert "no TimescaleDB" in migrated_status["postgres"]["detail"]

        assert "kafka, postgres" in irtmon(cli_env, "stack", "down")
        assert processes_using(state) == [] and processes_using(cluster) == []
        stopped = status(cli_env)
        assert not stopped["kafka"]["running"] and not stopped["postgres"]["running"]
    assert "nothing was running" in irtmon(cli_env, "stack", "down")


def test_taken_port_gives_a_clear_error(cli_env: dict[str, str]) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", int(cli_env["IRTMON_KAFKA_PORT"])))
        blocker.listen()
        result = subprocess.run(
            [sys.executable, "-m", "irtmon", "stack", "up"],
            env=cli_env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=240,
        )
    assert result.returncode == 1
    assert "already taken" in result.stderr and "IRTMON_KAFKA_PORT" in result.stderr
