"""The deployment compose file cannot run here (no Docker engine), so this keeps it honest:
every service's command, port and variable must match what the code reads, and its trust
boundaries hold: Kafka SASL_SSL with a principal per service, secrets as compose secrets, a
least-privilege database role per service, the pseudonym key only where pseudonyms are made,
the app only behind the TLS proxy, the DICOM port on a configured interface."""

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
KAFKA_PROPERTIES = REPO / "docker" / "kafka" / "server.properties"
LOGIN_ROLES = REPO / "docker" / "postgres" / "10-login-roles.sh"
CADDYFILE = REPO / "docker" / "caddy" / "Caddyfile"
SECRET_WORDS = ("PASSWORD", "SECRET", "KEY")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def irtmon_commands(service: dict) -> list[list[str]]:
    command = service.get("command")
    if command is None:
        return []
    text = command[-1] if command[:2] == ["sh", "-c"] else shlex.join(command)
    parts = [shlex.split(part) for part in text.split("&&")]
    return [argv for argv in parts if argv[:1] == ["irtmon"]]


def test_every_irtmon_variable_is_a_setting(compose: dict) -> None:
    known = {f"IRTMON_{name.upper()}" for name in Settings.model_fields}
    seen = 0
    for name, service in compose["services"].items():
        for var in service.get("environment") or {}:
            if var.startswith("IRTMON_") and name != "proxy":
                assert var in known, f"{name}: {var} is not a setting of irtmon"
                seen += 1
    assert seen > 30  # the anchors' merges were read


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
    assert seen >= 6  # setup (3), worker, orthanc, app


def test_addresses_match_the_services(compose: dict) -> None:
    services = compose["services"]
    env = services["worker"]["environment"]
    host, port = env["IRTMON_KAFKA_BOOTSTRAP"].split(":")
    assert host == "kafka" and port == "9092"
    assert f"advertised.listeners=SASL_SSL://{host}:{port}" in KAFKA_PROPERTIES.read_text()
    db = re.match(r"postgresql://(\w+)@([\w-]+):(\d+)/(\w+)$", env["IRTMON_DATABASE_URL"])
    assert db, env["IRTMON_DATABASE_URL"]  # no password in the URL: it is a secret file
    _user, host, port, name = db.groups()
    pg = services["timescaledb"]["environment"]
    assert (host, port) == ("timescaledb", "5432")
    assert name == pg["POSTGRES_DB"]
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
            and not k.endswith("_FILE")
            and not str(v).startswith("${")  # set by the deployer (.env)
        }
    )
    http, dicom = settings.orthanc_http_port, settings.orthanc_dicom_port
    # the address the workers and the plugin use is this service's HTTP port
    assert settings.pacs_http == f"http://orthanc:{http}"
    assert settings.dicomweb_url == f"http://orthanc:{http}/dicom-web"
    assert services["worker"]["environment"]["IRTMON_PACS_URL"] == f"http://orthanc:{http}"
    published = {p.rsplit(":", 1)[-1] for p in pacs["ports"]}
    assert {str(http), str(dicom)} == published
    # DICOM only on the interface the deployer names (loopback by default), HTTP on loopback
    dicom_port = next(p for p in pacs["ports"] if p.endswith(f":{dicom}"))
    assert dicom_port.startswith("${IRTMON_DICOM_INTERFACE:-127.0.0.1}:")
    assert next(p for p in pacs["ports"] if p.endswith(f":{http}")).startswith("127.0.0.1:")
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
    assert argv[argv.index("--address") + 1] == "0.0.0.0"  # inside its networks only
    assert port in app_service["expose"]
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


# ----------------------------------------------------------------------------- boundaries


def env_of(service: dict) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def secrets_of(service: dict) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets") or []}


def test_secrets_are_compose_secrets_never_plain_environment(compose: dict) -> None:
    from irtmon.stack.secrets import COMPOSE_SECRETS

    declared = compose["secrets"]
    assert set(declared) == set(COMPOSE_SECRETS)  # `irtmon stack secrets` writes all of them
    for name, spec in declared.items():
        assert spec == {"file": f"./secrets/{name}"}, name
    assert "docker/secrets/" in (REPO / ".gitignore").read_text().splitlines()
    for name, service in compose["services"].items():
        mounted = secrets_of(service)
        for var, value in env_of(service).items():
            if var.endswith("_FILE"):
                assert value.startswith("/run/secrets/"), (name, var)
                assert value.removeprefix("/run/secrets/") in mounted, (name, var)
                continue
            secretish = any(word in var for word in SECRET_WORDS) and var != "IRTMON_PSEUDONYM_KEY"
            assert not secretish or var == "POSTGRES_USER", f"{name}: {var} in plain environment"
            assert var != "IRTMON_PSEUDONYM_KEY", f"{name}: the pseudonym key in plain environment"
            if var.endswith("_URL") and "@" in value:  # no password inside a URL either
                assert ":" not in value.split("://", 1)[-1].split("@")[0], (name, var)
        for secret in mounted:  # every secret a service gets, it uses
            uses = [v for v in env_of(service).values() if v == f"/run/secrets/{secret}"]
            inside = name in ("kafka", "timescaledb", "orthanc")  # read by the server itself
            assert uses or inside, f"{name} is given {secret} and does not use it"
    text = COMPOSE.read_text()
    assert "IRTMON_DB_PASSWORD" not in text and "IRTMON_PSEUDONYM_KEY:" not in text


def test_the_pseudonym_key_only_where_pseudonyms_are_made(compose: dict) -> None:
    holders = {
        name
        for name, service in compose["services"].items()
        if "pseudonym_key" in secrets_of(service)
        or any("PSEUDONYM" in var for var in env_of(service))
    }
    assert holders == {"orthanc"}  # the PACS plugin; the publishing tools run on the side


def test_each_service_has_its_least_privilege_database_role(compose: dict) -> None:
    services = compose["services"]
    owner = services["timescaledb"]["environment"]["POSTGRES_USER"]
    users = {}
    for name, service in services.items():
        url = env_of(service).get("IRTMON_DATABASE_URL")
        if url:
            users[name] = re.match(r"postgresql://(\w+)@", url).group(1)  # type: ignore[union-attr]
    assert users == {"setup": owner, "worker": "worker", "app": "app"}
    # the login roles are made members of migration 0005's groups on the first start
    script = LOGIN_ROLES.read_text()
    assert "'CREATE ROLE %I LOGIN IN ROLE irtmon_worker', :'worker_user'" in script
    assert "'CREATE ROLE %I LOGIN IN ROLE irtmon_app', :'app_user'" in script
    assert "IRTMON_DB_WORKER_USER:-worker" in script and "IRTMON_DB_APP_USER:-app" in script
    grants = (REPO / "schemas" / "migrations" / "0005_roles.sql").read_text()
    assert "irtmon_worker" in grants and "irtmon_app" in grants
    mounts = services["timescaledb"]["volumes"]
    assert f"./postgres/{LOGIN_ROLES.name}:/docker-entrypoint-initdb.d/{LOGIN_ROLES.name}:ro" in (
        mounts
    )
    for name, role in (("worker", "db_worker_password"), ("app", "db_app_password")):
        assert env_of(services[name])["IRTMON_DATABASE_PASSWORD_FILE"] == f"/run/secrets/{role}"
        assert f"$secrets/{role}" in script
    for name in ("worker", "app", "orthanc", "proxy"):
        assert "db_owner_password" not in secrets_of(services[name]), name


def test_kafka_is_sasl_ssl_with_a_principal_per_service(compose: dict) -> None:
    from irtmon.stack.kafka_security import (
        COMPOSE_CERTS_DIR,
        ROLES,
        compose_server_properties,
        password_secret,
        principal,
    )

    services = compose["services"]
    assert KAFKA_PROPERTIES.read_text() == compose_server_properties(), (
        "docker/kafka/server.properties is stale: write compose_server_properties() into it"
    )
    broker = services["kafka"]
    command = broker["command"][-1]
    assert "/etc/irtmon/kafka/server.properties" in command
    assert "./kafka/server.properties:/etc/irtmon/kafka/server.properties:ro" in broker["volumes"]
    assert f"certs:{COMPOSE_CERTS_DIR}:ro" in broker["volumes"]
    assert secrets_of(broker) == {password_secret(role) for role in ROLES}
    assert "ports" not in broker  # inside the deployment's network only
    principals = {}
    for name, service in services.items():
        env = env_of(service)
        if "IRTMON_KAFKA_BOOTSTRAP" not in env:
            continue
        settings = Settings(
            kafka_bootstrap=env["IRTMON_KAFKA_BOOTSTRAP"],
            kafka_security_protocol=env["IRTMON_KAFKA_SECURITY_PROTOCOL"],
            kafka_sasl_mechanism=env["IRTMON_KAFKA_SASL_MECHANISM"],
            kafka_sasl_username=env["IRTMON_KAFKA_SASL_USERNAME"],
            kafka_sasl_password="checked-below",
        )
        assert settings.kafka_security_protocol == "SASL_SSL", name
        assert env["IRTMON_KAFKA_SSL_CAFILE"] == f"{COMPOSE_CERTS_DIR}/ca.crt", name
        assert f"certs:{COMPOSE_CERTS_DIR}:ro" in service["volumes"], name
        role = env["IRTMON_KAFKA_SASL_USERNAME"].removeprefix("irtmon-")
        assert principal(role) == env["IRTMON_KAFKA_SASL_USERNAME"]
        assert env["IRTMON_KAFKA_SASL_PASSWORD_FILE"] == f"/run/secrets/{password_secret(role)}"
        principals[name] = role
    assert principals == {"setup": "admin", "worker": "worker", "orthanc": "orthanc"}
    assert "irtmon stack acls" in services["setup"]["command"][-1]
    # the certificate of the listener names the host the clients connect to, owned by the
    # broker's user (uid 1000 in apache/kafka)
    assert "kafka=DNS:kafka,DNS:localhost=1000" in services["certs"]["command"]


def test_the_app_is_reached_only_through_the_tls_proxy(compose: dict) -> None:
    services = compose["services"]
    app_service, proxy = services["app"], services["proxy"]
    assert "ports" not in app_service
    assert "proxy" in app_service["networks"] and proxy["networks"] == ["proxy"]
    assert [p.rsplit(":", 1)[-1] for p in proxy["ports"]] == ["443"]
    port = app_service["command"][app_service["command"].index("--port") + 1]
    caddy = CADDYFILE.read_text()
    assert f"reverse_proxy app:{port}" in caddy
    assert "tls /etc/irtmon/certs/proxy.crt /etc/irtmon/certs/proxy.key" in caddy
    assert "./caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert any(
        a.startswith("proxy=DNS:${IRTMON_APP_HOSTNAME") for a in services["certs"]["command"]
    )
    # nothing else is published on all interfaces
    for name, service in services.items():
        for mapping in service.get("ports") or []:
            assert mapping.startswith(("127.0.0.1:", "${IRTMON_")), (name, mapping)


def test_the_certificates_are_made_by_the_script_the_image_carries(compose: dict) -> None:
    certs = compose["services"]["certs"]
    assert certs["command"][:3] == ["sh", "/opt/irtmon/docker/certs.sh", "/etc/irtmon/certs"]
    assert "COPY docker/certs.sh ./docker/certs.sh" in (REPO / "docker" / "Dockerfile").read_text()
    assert "openssl" in (REPO / "docker" / "Dockerfile").read_text()
    for name in ("kafka", "setup", "worker", "orthanc", "proxy"):
        condition = compose["services"][name].get("depends_on", {})
        upstream = condition.get("certs") or condition.get("setup") or condition.get("kafka")
        assert upstream, f"{name} starts before the certificates exist"


def test_orthanc_stores_only_from_the_allowed_callers(compose: dict) -> None:
    env = env_of(compose["services"]["orthanc"])
    assert env["IRTMON_ORTHANC_ALLOWED_CALLERS"].startswith("${IRTMON_ORTHANC_ALLOWED_CALLERS:?")
    assert env["IRTMON_PACS_PASSWORD_FILE"] == "/run/secrets/pacs_password"
    assert env_of(compose["services"]["worker"])["IRTMON_PACS_PASSWORD_FILE"] == (
        "/run/secrets/pacs_password"
    )


def test_the_workers_are_restarted_when_an_outage_stops_them(compose: dict) -> None:
    # past IRTMON_TRANSIENT_RETRY_S a worker exits (status 70) without acknowledging the event;
    # only a restart consumes it again
    assert compose["services"]["worker"]["restart"] in ("always", "unless-stopped", "on-failure")
