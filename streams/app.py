"""The one Faust app of irtmon, configured from :class:`core.settings.Settings`.

Offsets are committed every ``commit_every`` events or ``commit_interval_s`` seconds, and only
for events whose processing finished (a Faust event is acknowledged when the agent moves on to
the next one, i.e. after its database transaction committed): delivery is at least once and
the sinks are idempotent.
"""

from __future__ import annotations

import faust

from core.settings import Settings, get_settings


def create_app(settings: Settings) -> faust.App:
    """Build the Faust app for ``settings`` (broker, group, commit policy, web server)."""
    security = settings.kafka_client_config()
    broker_credentials = None
    if settings.kafka_sasl_mechanism:
        broker_credentials = faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=security.get("sasl_plain_password"),
            mechanism=settings.kafka_sasl_mechanism,
        )
    elif settings.kafka_ssl_cafile is not None:
        import ssl

        broker_credentials = faust.SSLCredentials(
            ssl.create_default_context(cafile=str(settings.kafka_ssl_cafile))
        )
    return faust.App(
        settings.consumer_group,
        broker=[f"kafka://{hostport}" for hostport in settings.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials,
        store="memory://",
        autodiscover=False,
        topic_allow_declare=False,  # the stack creates the registry's topics
        topic_disable_leader=True,
        broker_commit_every=settings.commit_every,
        broker_commit_interval=settings.commit_interval_s,
        broker_max_poll_interval=max(600.0, settings.transient_retry_s * 2),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_wait_empty=True,
        web_enabled=True,
        web_port=settings.worker_web_port,
        web_bind=settings.worker_web_host,
        web_in_thread=False,
    )


app = create_app(get_settings())
