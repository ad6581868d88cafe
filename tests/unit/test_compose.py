"""The deployment compose file cannot run here (no Docker engine), so this keeps it honest:
every service's command, port and variable must match what the code reads."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from core.settings import Settings
from irtmon.cli import app
from tests.conftest import REPO

COMPOSE = REPO / "docker" / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def irtmon_commands(service: dict) -> list[list[str]]:
    command = service.get("command")
    if command is None:
        return []
    text = command[-1] if command[:2] == ["sh", "-c"] else shlex.join(command)
    return [shlex.split(part) for part in text.split("&&") if "irtmon" in part]


def test_every_irtmon_variable_is_a_setting(compose: dict) -> None:
    known = {f"IRTMON_{name.upper()}" for name in Settings.model_fields}
    for name, service in compose["services"].items():
        for var in service.get("environment") or {}:
            if var.startswith("IRTMON_"):
                assert var in known, f"{name}: {var} is not a setting of irtmon"


def test_every_command_is_a_real_cli_command(compose: dict) -> None:
    cli = get_command(app)
    seen = 0
    for name, service in compose["services"].items():
        for argv in irtmon_commands(service):
            assert argv[0] == "irtmon", name
            group = cli
            for word in argv[1:]:
                if word.startswith("-"):
                    break
                assert word in group.commands, f"{name}: `{' '.join(argv)}` is not a command"
                group = group.commands[word]
            seen += 1
    assert seen >= 5  # setup (2), worker, orthanc, app


def test_addresses_match_the_services(compose: dict) -> None:
    services = compose["services"]
    env = services["worker"]["environment"]
    host, port = env["IRTMON_KAFKA_BOOTSTRAP"].split(":")
    assert host == "kafka" and port == "9092"
    assert (
        f"PLAINTEXT://{host}:{port}"
        == services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    )
    db = re.match(r"postgresql://(\w+):.*@([\w-]+):(\d+)/(\w+)", env["IRTMON_DATABASE_URL"])
    assert db, env["IRTMON_DATABASE_URL"]
    user, host, port, name = db.groups()
    pg = services["timescaledb"]["environment"]
    assert (host, port) == ("timescaledb", "5432")
    assert (user, name) == (pg["POSTGRES_USER"], pg["POSTGRES_DB"])
    # the worker's health port is the one it serves and the one its healthcheck asks
    web_port = env["IRTMON_WORKER_WEB_PORT"]
    assert Settings(worker_web_port=int(web_port)).worker_web_port == 6066
    assert web_port in services["worker"]["expose"]
    assert f":{web_port}/health" in " ".join(services["worker"]["healthcheck"]["test"])
    # the data root the worker reads is the one mounted
    assert env["IRTMON_DATA_ROOTS"] == '["/data"]'
    assert any(v.endswith(":/data:ro") for v in services["worker"]["volumes"])


def test_long_running_services_have_healthchecks_and_order(compose: dict) -> None:
    services = compose["services"]
    for name in ("kafka", "timescaledb", "worker", "orthanc", "app"):
        assert "healthcheck" in services[name], name
    assert services["worker"]["depends_on"]["setup"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["worker"]["deploy"]["replicas"] >= 2


def test_the_image_builds_from_files_that_exist() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies missing {source}"
    assert Path(REPO / "constraints.txt").is_file()


def test_orthanc_matches_the_settings_and_the_plugin(compose: dict) -> None:
    from irtmon.stack.orthanc import PLUGIN_DIR, PLUGINS

    services = compose["services"]
    pacs = services["orthanc"]
    env = pacs["environment"]
    settings = Settings(
        **{
            k.removeprefix("IRTMON_").lower(): v
            for k, v in env.items()
            if k.startswith(("IRTMON_ORTHANC_", "IRTMON_PACS_"))
        }
    )
    http, dicom = settings.orthanc_http_port, settings.orthanc_dicom_port
    # the address the workers and the plugin use is this service's HTTP port
    assert settings.pacs_http == f"http://orthanc:{http}"
    assert settings.dicomweb_url == f"http://orthanc:{http}/dicom-web"
    assert services["worker"]["environment"]["IRTMON_PACS_URL"] == f"http://orthanc:{http}"
    published = {p.rsplit(":", 1)[-1] for p in pacs["ports"]}
    assert {str(http), str(dicom)} == published
    assert f":{http}/system" in " ".join(pacs["healthcheck"]["test"])
    # the configuration Orthanc runs is the one `irtmon pacs config` writes
    text = pacs["command"][-1]
    config_step, run_step = (part.strip() for part in text.split("&&"))
    out = shlex.split(config_step)[shlex.split(config_step).index("--out") + 1]
    assert shlex.split(run_step) == ["exec", "Orthanc", out]
    assert "--remote-access" in config_step
    storage = shlex.split(config_step)[shlex.split(config_step).index("--storage") + 1]
    assert any(v.endswith(f":{storage}") for v in pacs["volumes"])
    # the image installs Debian's Orthanc and both plugins where the configuration looks
    dockerfile = (REPO / "docker" / "Dockerfile.orthanc").read_text()
    for package in ("orthanc", "orthanc-python", "orthanc-dicomweb"):
        assert f" {package}" in dockerfile, package
    assert str(PLUGIN_DIR) == "/usr/share/orthanc/plugins"
    assert PLUGINS == ("libOrthancDicomWeb.so", "libOrthancPython.so")
    assert "COPY pacs ./pacs" in dockerfile
    assert pacs["depends_on"]["setup"]["condition"] == "service_completed_successfully"


def test_the_app_and_the_workers_write_where_volumes_are(compose: dict) -> None:
    services = compose["services"]
    app_service = services["app"]
    argv = app_service["command"]
    port = argv[argv.index("--port") + 1]
    assert argv[argv.index("--address") + 1] == "0.0.0.0"
    assert any(p.endswith(f":{port}") for p in app_service["ports"])
    assert f":{port}/_stcore/health" in " ".join(app_service["healthcheck"]["test"])
    worker_env = services["worker"]["environment"]
    derived = worker_env["IRTMON_DERIVED_DIR"]
    assert any(v.endswith(f":{derived}") for v in services["worker"]["volumes"])
    assert Settings(pacs_write_back=worker_env["IRTMON_PACS_WRITE_BACK"]).pacs_write_back


def test_the_orthanc_image_builds_from_files_that_exist() -> None:
    dockerfile = (REPO / "docker" / "Dockerfile.orthanc").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (REPO / source).exists(), f"Dockerfile.orthanc copies missing {source}"
