"""The local Apache Kafka broker: one KRaft node (broker and controller) on loopback.

Its jars come from Maven Central through ``mvn`` (``kafka-pom.xml``) and are cached under
``<cache>/kafka-<version>/lib``; storage is formatted on first start; logs go to
``<state>/kafka/logs``. The registry's topics are created once the broker answers.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from core.settings import Settings
from irtmon.stack.kafka_security import BrokerSecurity, server_properties
from irtmon.stack.process import (
    StackError,
    ensure_ports_free,
    live_pid,
    port_open,
    start_server,
    stop_server,
    tail,
)

log = logging.getLogger(__name__)

MAIN_CLASS = "kafka.Kafka"


@dataclass(frozen=True)
class KafkaPaths:
    root: Path
    lib: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log4j(self) -> Path:
        return self.root / "log4j.properties"

    @property
    def pid_file(self) -> Path:
        return self.root / "kafka.pid"

    @property
    def console(self) -> Path:
        return self.logs / "console.log"

    @property
    def cluster_id_file(self) -> Path:
        return self.root / "cluster.id"


def paths(settings: Settings) -> KafkaPaths:
    return KafkaPaths(
        root=settings.state_dir.resolve() / "kafka",
        lib=settings.cache_path.resolve() / f"kafka-{settings.kafka_version}" / "lib",
    )


def ensure_jars(settings: Settings) -> Path:
    """Resolve the broker's jars with Maven once; return the folder holding them."""
    lib = paths(settings).lib
    marker = lib / ".complete"
    if marker.exists():
        return lib
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not on PATH; install it (apt-get install maven)")
    java = shutil.which("java")
    if java is None:
        raise StackError("Java is not on PATH; install a JDK 17 (apt-get install openjdk-17-jdk)")
    tmp = lib.with_name("lib.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pom = resources.files("irtmon.stack").joinpath("kafka-pom.xml")
    with resources.as_file(pom) as pom_path:
        log.info(
            "resolving Kafka %s jars from Maven Central (first run only)", settings.kafka_version
        )
        result = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom_path),
                f"-Dkafka.version={settings.kafka_version}",
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp}",
                "-DincludeScope=runtime",
            ],
            capture_output=True,
            text=True,
        )
    if result.returncode != 0:
        raise StackError(
            f"mvn could not resolve Kafka {settings.kafka_version}:\n"
            + (result.stdout + result.stderr)[-3000:]
        )
    shutil.rmtree(lib, ignore_errors=True)
    tmp.rename(lib)
    marker.write_text(settings.kafka_version + "\n")
    return lib


def _write_config(settings: Settings, p: KafkaPaths, security: BrokerSecurity | None) -> None:
    p.root.mkdir(parents=True, exist_ok=True)
    p.logs.mkdir(parents=True, exist_ok=True)
    lines = server_properties(
        bind_host="127.0.0.1",
        advertised_host="127.0.0.1",
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
        data_dir=p.data,
        security=security,
    )
    fd = os.open(p.properties, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("\n".join(lines))
    p.log4j.write_text(
        "\n".join(
            [
                "log4j.rootLogger=INFO, file",
                "log4j.appender.file=org.apache.log4j.RollingFileAppender",
                f"log4j.appender.file.File={p.logs / 'server.log'}",
                "log4j.appender.file.MaxFileSize=20MB",
                "log4j.appender.file.MaxBackupIndex=3",
                "log4j.appender.file.layout=org.apache.log4j.PatternLayout",
                "log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n",
                "log4j.logger.kafka=INFO",
                "log4j.logger.org.apache.kafka=INFO",
                "log4j.logger.state.change.logger=WARN",
                "",
            ]
        )
    )


def _java(settings: Settings, p: KafkaPaths, main: str, *args: str) -> list[str]:
    java = shutil.which("java") or "java"
    return [
        java,
        f"-Xmx{settings.kafka_heap}",
        "-Xms128m",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{p.log4j}",
        f"-Dkafka.logs.dir={p.logs}",
        "-cp",
        f"{p.lib}/*",
        main,
        *args,
    ]


def _format_storage(settings: Settings, p: KafkaPaths) -> None:
    if (p.data / "meta.properties").exists():
        return
    if not p.cluster_id_file.exists():
        # A Kafka cluster id is a UUID in URL-safe base64 without padding.
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        p.cluster_id_file.write_text(cluster_id + "\n")
    cluster_id = p.cluster_id_file.read_text().strip()
    result = subprocess.run(
        _java(
            settings,
            p,
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={cluster_id}",
            "-c",
            str(p.properties),
            "--ignore-formatted",
        ),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError("Kafka storage format failed:\n" + (result.stdout + result.stderr)[-3000:])


def running_pid(settings: Settings) -> int | None:
    """Pid of the local broker if it runs."""
    return live_pid(paths(settings).pid_file, MAIN_CLASS)


def start(
    settings: Settings, timeout: float = 120.0, security: BrokerSecurity | None = None
) -> int:
    """Start the broker unless it runs; wait until it serves metadata; return its pid.

    With ``security``, its client listener is SASL_SSL with ACLs (as in the compose
    deployment); ``settings`` must then carry the admin's credentials and the CA file (the
    readiness check connects as the admin). Without it, PLAINTEXT on loopback, as before."""
    p = paths(settings)
    pid = running_pid(settings)
    if pid is not None:
        return pid
    ensure_ports_free(
        (settings.kafka_port, settings.kafka_controller_port),
        "port {port} is already taken by another process; stop it or set "
        "IRTMON_KAFKA_PORT / IRTMON_KAFKA_CONTROLLER_PORT to free ports",
    )
    ensure_jars(settings)
    _write_config(settings, p, security)
    _format_storage(settings, p)
    env = dict(os.environ)
    env.pop("KAFKA_OPTS", None)
    return start_server(
        _java(settings, p, MAIN_CLASS, str(p.properties)),
        p.console,
        p.pid_file,
        env=env,
        ready=lambda: broker_ready(settings),
        timeout=timeout,
        what="the Kafka broker",
        exited=lambda _: (
            "the broker process exited:\n" + tail(p.console) + "\n" + tail(p.logs / "server.log")
        ),
    )


def broker_ready(settings: Settings) -> bool:
    """True when the broker accepts connections and answers a metadata request, each within
    5 seconds (a client the broker refuses, without TLS or with wrong credentials, is told so
    then, not after kafka-python's default 30-second bootstrap)."""
    host, _, port = settings.bootstrap_servers.split(",")[0].rpartition(":")
    if not port_open(host or "127.0.0.1", int(port)):
        return False
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.bootstrap_servers,
            request_timeout_ms=5000,
            bootstrap_timeout_ms=5000,
            client_id="irtmon-stack",
            **settings.kafka_client_config(),
        )
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.list_topics()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        admin.close()


def stop(settings: Settings) -> bool:
    """Stop the broker if it runs (controlled shutdown); True if one was stopped."""
    pid_file = paths(settings).pid_file
    stopped = stop_server(pid_file, MAIN_CLASS, timeout=45.0)
    pid_file.unlink(missing_ok=True)  # a stale one too
    return stopped
