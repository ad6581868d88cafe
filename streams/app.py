"""The one Faust app of irtmon, built by :func:`create_app` from the :class:`Settings` given.

Nothing here reads the environment: ``irtmon worker`` builds the settings once and calls
:func:`streams.worker.run`, which builds the app, its topics, its agents and its web pages
(:func:`build`).

Offsets are committed every ``commit_every`` events or ``commit_interval_s`` seconds, and only
for events whose processing finished (a Faust event is acknowledged when the agent moves on to
the next one, i.e. after its database transaction committed; the light-event agents take
batches with ``noack_take`` and acknowledge a batch's events after its transaction committed):
delivery is at least once and the sinks are idempotent.
"""

from __future__ import annotations

import logging

import faust

from core.settings import Settings
from streams import scoring, web
from streams.agents import AGENTS
from streams.context import WorkerContext
from streams.topics import Topics
from streams.transport import consumer_transport

log = logging.getLogger("irtmon.worker")


def broker_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """Faust's credentials for ``IRTMON_KAFKA_SECURITY_PROTOCOL``, as the producers get them
    (:meth:`Settings.kafka_client_config`): SASL_SSL is SASL with the TLS context (never SASL
    in clear); SSL is TLS with the CA file or, without one, the system trust store; None only
    for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    context = settings.kafka_ssl_context()
    if protocol in ("SASL_SSL", "SASL_PLAINTEXT"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password is not None else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,  # None only for SASL_PLAINTEXT
        )
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    return None


def create_app(settings: Settings) -> faust.App:
    """The Faust app for ``settings`` (broker, group, commit policy, fetch wait, web server),
    no agents."""
    app = faust.App(
        settings.consumer_group,
        broker=[f"kafka://{hostport}" for hostport in settings.bootstrap_servers.split(",")],
        broker_credentials=broker_credentials(settings),
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
    app.transport = consumer_transport(app, settings)  # the fetch wait of the settings
    return app


def build(settings: Settings) -> faust.App:
    """The worker's app: topics, every agent and timer, the web pages, one shared context;
    with ``worker_warm_start``, a task that starts the CPU processes at once."""

    app = create_app(settings)
    topics = Topics(app)
    ctx = WorkerContext.create(settings, topics)
    for agent in AGENTS:
        agent.register(app, topics, ctx)
    web.register(app)

    if settings.worker_warm_start:

        @app.task
        async def warm_cpu_pool() -> None:
            """Start the CPU processes now rather than at the first event."""
            assert ctx.pool is not None
            try:
                pids = await ctx.pool.warm(scoring.warm_up)
            except Exception as err:  # the first event starts them again, and says what fails
                log.warning("warming the CPU processes failed", extra={"error": str(err)[:300]})
            else:
                log.info("CPU processes started", extra={"pids": sorted(set(pids))})

    return app
