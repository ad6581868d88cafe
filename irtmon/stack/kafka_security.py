"""The broker's configuration (:func:`server_properties`), and Kafka with SASL_SSL and ACLs:
one principal per service, each allowed only what it does.

The compose deployment runs its broker this way (``docker/kafka/server.properties``, written by
:func:`compose_server_properties`), and the tests start the local broker the same way
(:class:`BrokerSecurity` passed to :func:`irtmon.stack.kafka.start`):

- one client listener, ``SASL_SSL``: TLS with the broker's certificate (a PEM key store, from
  ``docker/certs.sh``), then SASL PLAIN user names and passwords;
- the KRaft controller listener in clear, but bound to the broker's loopback only;
- the passwords are files (compose secrets), one per principal, named
  ``kafka_<role>_password``; the broker reads them through Kafka's ``DirectoryConfigProvider``,
  so no password is written in its configuration;
- ``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false``: a principal may do only
  what :func:`service_acls` grants it (``irtmon stack acls`` creates them, as the admin).

Principals (``User:<name>``):

=================  ===========================================================================
``irtmon-admin``   super user: creates topics and ACLs (compose's ``setup``)
``irtmon-worker``  reads the input topics and ``scores.timepoint`` in its consumer group;
                   writes ``scores.timepoint``, ``alerts`` and ``deadletter``
``irtmon-orthanc`` the PACS plugin: writes ``imaging.acquired`` only
``irtmon-tools``   the CLI publishing tools (``irtmon publish``, replays): write the input topics
``irtmon-app``     the monitoring app: no rights (it reads the database, not Kafka)
=================  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

from core.settings import Settings
from irtmon.stack.topics import admin_client
from schemas.topics import (
    ALERTS,
    BIOPSY_ACQUIRED,
    DEADLETTER,
    IMAGING_ACQUIRED,
    SCORES_TIMEPOINT,
    TREATMENT_EVENTS,
)

ROLES = ("admin", "worker", "orthanc", "tools", "app")
"""Every service with a Kafka principal of its own."""

INPUT_TOPICS = (IMAGING_ACQUIRED.name, BIOPSY_ACQUIRED.name, TREATMENT_EVENTS.name)


def principal(role: str) -> str:
    """The user name of ``role`` (``irtmon-worker``...)."""
    if role not in ROLES:
        raise ValueError(f"unknown Kafka role {role!r}; known: {', '.join(ROLES)}")
    return f"irtmon-{role}"


def password_secret(role: str) -> str:
    """The file name of ``role``'s password (a compose secret of that name)."""
    principal(role)
    return f"kafka_{role}_password"


@dataclass(frozen=True)
class BrokerSecurity:
    """What a broker needs for SASL_SSL with ACLs: its key store, the CA that signed it (the
    broker's own connections to its listener check it too) and the folder of password files
    (``kafka_<role>_password`` for every role of :data:`ROLES`)."""

    keystore: Path
    ca_file: Path
    secrets_dir: Path


def jaas_config(secrets_dir: str | Path) -> str:
    """The listener's SASL PLAIN login: the broker's own user (the admin) and one
    ``user_<name>`` per principal, each password read from ``secrets_dir`` by the
    ``dir`` config provider (never written into the configuration)."""

    def secret(role: str) -> str:
        return "${dir:%s:%s}" % (secrets_dir, password_secret(role))  # noqa: UP031 - Kafka's ${}

    users = " ".join(f'user_{principal(r)}="{secret(r)}"' for r in ROLES)
    return (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'username="{principal("admin")}" password="{secret("admin")}" {users};'
    )


def security_properties(security: BrokerSecurity) -> dict[str, str]:
    """The broker properties of the SASL_SSL listener named ``SASL_SSL`` and its ACLs."""
    return {
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": "PLAIN",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": jaas_config(security.secrets_dir),
        "config.providers": "dir",
        "config.providers.dir.class": (
            "org.apache.kafka.common.config.provider.DirectoryConfigProvider"
        ),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(security.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(security.ca_file),
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.client.auth": "none",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        # the controller listener is PLAINTEXT on the broker's loopback: its (anonymous)
        # principal is the broker itself talking to its controller
        "super.users": f"User:{principal('admin')};User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }


@dataclass(frozen=True)
class Grant:
    """Operations ``role`` may do on one topic or consumer group."""

    role: str
    resource: ResourceType
    name: str
    operations: tuple[ACLOperation, ...]


def service_acls(consumer_group: str) -> list[Grant]:
    """What each service may do (least privilege); the admin is a super user and needs none."""
    read = (ACLOperation.READ, ACLOperation.DESCRIBE)
    write = (ACLOperation.WRITE, ACLOperation.DESCRIBE)
    grants = [
        *(
            Grant("worker", ResourceType.TOPIC, t, read)
            for t in (*INPUT_TOPICS, SCORES_TIMEPOINT.name)
        ),
        *(
            Grant("worker", ResourceType.TOPIC, t, write)
            for t in (SCORES_TIMEPOINT.name, ALERTS.name, DEADLETTER.name)
        ),
        Grant("worker", ResourceType.GROUP, consumer_group, (ACLOperation.READ,)),
        Grant("orthanc", ResourceType.TOPIC, IMAGING_ACQUIRED.name, write),
        *(Grant("tools", ResourceType.TOPIC, t, write) for t in INPUT_TOPICS),
    ]
    return grants


def acls(grants: Iterable[Grant]) -> list[ACL]:
    """kafka-python ACL objects (ALLOW, any host, literal names) of ``grants``."""
    out = []
    for grant in grants:
        pattern = ResourcePattern(grant.resource, grant.name, ACLResourcePatternType.LITERAL)
        out.extend(
            ACL(
                principal=f"User:{principal(grant.role)}",
                host="*",
                operation=operation,
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=pattern,
            )
            for operation in grant.operations
        )
    return out


def apply_acls(settings: Settings) -> int:
    """Create every service's ACLs on the broker (as ``settings``' principal, the admin);
    idempotent. Returns how many ACLs were asked for."""
    wanted = acls(service_acls(settings.consumer_group))
    admin = admin_client(settings)
    try:
        result = admin.create_acls(wanted)
    finally:
        admin.close()
    failed = result.get("failed") or [] if isinstance(result, dict) else []
    if failed:
        raise RuntimeError(f"the broker refused {len(failed)} ACLs: {failed[:3]}")
    return len(wanted)


def server_properties(
    *,
    bind_host: str,
    advertised_host: str,
    port: int,
    controller_port: int,
    data_dir: Path,
    security: BrokerSecurity | None = None,
) -> list[str]:
    """The broker's ``server.properties`` lines: one KRaft node (broker and controller), the
    controller on loopback; the client listener PLAINTEXT, or SASL_SSL with ACLs when
    ``security`` is given (:mod:`irtmon.stack.kafka_security`)."""
    loopback = "127.0.0.1"
    client = "SASL_SSL" if security is not None else "PLAINTEXT"
    lines = [
        "# written by irtmon stack up; edits are overwritten",
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{loopback}:{controller_port}",
        f"listeners={client}://{bind_host}:{port},CONTROLLER://{loopback}:{controller_port}",
        f"advertised.listeners={client}://{advertised_host}:{port}",
        "controller.listener.names=CONTROLLER",
    ]
    if security is None:
        lines += [
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
        ]
    else:
        lines += [f"{k}={v}" for k, v in security_properties(security).items()]
    return [
        *lines,
        f"log.dirs={data_dir}",
        "num.partitions=1",
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=10",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "transaction.state.log.num.partitions=4",
        "group.initial.rebalance.delay.ms=0",
        "log.retention.check.interval.ms=300000",
        "",
    ]


# ----------------------------------------------------------------------------- compose

COMPOSE_SECRETS_DIR = "/run/secrets"
COMPOSE_CERTS_DIR = "/etc/irtmon/certs"
COMPOSE_PROPERTIES = Path(__file__).resolve().parents[2] / "docker" / "kafka" / "server.properties"


def compose_server_properties() -> str:
    """``docker/kafka/server.properties``: the compose broker (host ``kafka``, client port
    9092 with SASL_SSL, controller on the container's loopback), as
    :func:`server_properties` writes it for the local broker."""
    security = BrokerSecurity(
        keystore=Path(f"{COMPOSE_CERTS_DIR}/kafka.pem"),
        ca_file=Path(f"{COMPOSE_CERTS_DIR}/ca.crt"),
        secrets_dir=Path(COMPOSE_SECRETS_DIR),
    )
    lines = server_properties(
        bind_host="0.0.0.0",
        advertised_host="kafka",
        port=9092,
        controller_port=9093,
        data_dir=Path("/var/lib/kafka/data"),
        security=security,
    )
    return "\n".join(
        [
            "# The compose broker: SASL_SSL with ACLs (see irtmon/stack/kafka_security.py)",
            "# Generated by irtmon.stack.kafka_security.compose_server_properties(); "
            "tests/unit/test_compose.py checks it.",
            *lines[1:],
        ]
    )
