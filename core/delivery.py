"""Alert delivery: sinks behind one interface, fed from the audit log as an outbox.

Every alert change is written to ``audit_log`` in the same transaction as the alert
(:mod:`core.alerts`, whoever made the change: the decision rule or a clinician in the app),
with the published Alert in ``detail.alert``. :func:`deliver_pending` sends each such row to
every configured sink that has not yet acknowledged it, and appends a receipt
(``entity = 'alert_delivery'``, ``action = 'delivery.sent'`` or ``'delivery.failed'``) per
attempt, so a failed delivery is retried (with back-off between rounds) and recorded, never
lost. Receivers should de-duplicate on ``X-Irtmon-Delivery`` (at-least-once).

Sinks
-----
* :class:`TopicSink`: the Alert record on the ``alerts`` topic, keyed by patient, with the
  action and the delivery id in message headers. Always on where Kafka is: the topic is how
  other systems follow alerts.
* :class:`WebhookSink`: ``POST`` of the Alert JSON to an ``https://`` URL (the certificate
  verified; ``http://`` only to this machine and only when allowed); retried with exponential
  back-off on connection errors, 408, 429 and 5xx; other 4xx fail at once. Signed: see below.
* :class:`EmailSink`: a plain-text e-mail (:func:`render_text`) over SMTP (``smtplib``), with
  STARTTLS verifying the server's certificate and host name; a login is only sent over TLS
  (a configuration with a login and no STARTTLS is refused when it is made).

Webhook signature
-----------------
Each POST carries ``X-Irtmon-Delivery`` (the delivery id), ``X-Irtmon-Action`` (e.g.
``alert.opened``), ``X-Irtmon-Timestamp`` (Unix seconds when this attempt was signed) and
``X-Irtmon-Signature: sha256=<hex>``, the HMAC-SHA256 with the shared secret of::

    <timestamp> "\n" <delivery id> "\n" <action> "\n" <body>

so neither the body nor the id, the action or the time can be changed or replayed later
without the secret. A receiver calls :func:`verify` with the body and the headers (or does
the same in its own language): it refuses a bad signature and a timestamp more than
``max_age_s`` (default 300 s, ``IRTMON_ALERT_WEBHOOK_MAX_AGE_S``) from its clock, and
de-duplicates on the delivery id for at least that window (a retried delivery is signed
again with a new timestamp and the same id).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import psycopg

from core.db import audit, connect
from core.publish import Publisher
from core.settings import SMTP_LOGIN_IN_CLEAR, Settings, webhook_url_problem
from schemas import Alert, AlertAction, AlertKind, RetryableError, percent
from schemas.topics import ALERTS

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Irtmon-Signature"
DELIVERY_HEADER = "X-Irtmon-Delivery"
ACTION_HEADER = "X-Irtmon-Action"
TIMESTAMP_HEADER = "X-Irtmon-Timestamp"
DEFAULT_MAX_AGE_S = 300.0
DELIVERABLE_ACTIONS = tuple(a.value for a in AlertAction)


class DeliveryError(RetryableError):
    """A delivery failed: retried on a later round. ``permanent``: retrying the same request
    will not help (the receiver refused it)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class AlertSink(Protocol):
    """Where alerts go. ``send`` returns on success and raises :class:`DeliveryError`."""

    name: str

    def send(self, alert: Alert, delivery_id: str, action: str) -> None: ...


# ----------------------------------------------------------------------------- wording

_KIND_WORDS = {
    AlertKind.SUSPECTED_NON_RESPONSE: "Suspected non-response",
    AlertKind.CONFIRMED_PROGRESSION: "Confirmed progression (iRECIST iCPD)",
}


def subject(alert: Alert, action: str = "alert.opened") -> str:
    verb = action.split(".")[-1]
    return f"[irtmon] {_KIND_WORDS[alert.kind]} - {alert.patient} ({verb})"


def render_text(alert: Alert, action: str = "alert.opened") -> str:
    """The alert in plain words: what changed, when, how sure, which models, what to do."""
    change = alert.change_at.astimezone(UTC).strftime("%Y-%m-%d") if alert.change_at else "unknown"
    lines = [
        f"{_KIND_WORDS[alert.kind]} for patient {alert.patient} ({action.split('.')[-1]}; "
        f"status {alert.status.value}).",
        "",
        f"What changed: {alert.summary}",
        f"Since: {change}",
        f"How sure: {percent(alert.probability)} (calibrated probability of the decision rule)",
        f"Signals: {', '.join(alert.signals) or '-'}",
        "Models: "
        + (", ".join(f"{k} {v}" for k, v in sorted(alert.model_versions.items())) or "-"),
        f"Recommended review: {alert.recommendation}",
        "",
        f"Alert id: {alert.event_id}; updated {alert.occurred_at.astimezone(UTC).isoformat()}.",
        "This is decision support, not a diagnosis; the treating team decides.",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- retry


@dataclass(frozen=True)
class Backoff:
    """Attempts and exponential back-off between them (seconds)."""

    attempts: int = 4
    base_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Wait after failed attempt ``attempt`` (1-based)."""
        return min(self.base_s * self.factor ** (attempt - 1), self.max_s)


def _with_retries(
    what: str, backoff: Backoff, fn: Callable[[], None], sleep: Callable[[float], None]
) -> None:
    last: DeliveryError | None = None
    for attempt in range(1, backoff.attempts + 1):
        try:
            fn()
            return
        except DeliveryError as err:
            last = err
            log.warning("%s attempt %d/%d failed: %s", what, attempt, backoff.attempts, err)
            if err.permanent or attempt == backoff.attempts:
                break
            sleep(backoff.delay(attempt))
    assert last is not None
    raise last


# ----------------------------------------------------------------------------- webhook


def tls_context(cafile: str | Path | None = None) -> ssl.SSLContext:
    """A client TLS context that verifies the server's certificate and host name, against
    ``cafile`` (PEM) or the system trust store."""
    return ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile is not None else None
    )


@dataclass(frozen=True)
class WebhookConfig:
    """Where alerts are POSTed. ``url`` must be ``https://``; ``http://`` is accepted only for
    this machine (127.0.0.1, ::1, localhost) and only with ``allow_http_loopback``."""

    url: str
    secret: str
    timeout_s: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    allow_http_loopback: bool = False
    cafile: str | Path | None = None

    def __post_init__(self) -> None:
        problem = webhook_url_problem(self.url, allow_http_loopback=self.allow_http_loopback)
        if problem:
            raise ValueError(problem)
        if len(self.secret) < 16:
            raise ValueError("webhook secret must be at least 16 characters")


def signed_message(body: bytes, delivery_id: str, action: str, timestamp: int) -> bytes:
    """What the signature covers: timestamp, delivery id, action and body, newline-separated."""
    return f"{int(timestamp)}\n{delivery_id}\n{action}\n".encode() + body


def sign(body: bytes, secret: str, *, delivery_id: str, action: str, timestamp: int) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of :func:`signed_message` with ``secret`` (the value
    of ``X-Irtmon-Signature``)."""
    message = signed_message(body, delivery_id, action, timestamp)
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    body: bytes,
    secret: str,
    headers: Mapping[str, str],
    *,
    max_age_s: float = DEFAULT_MAX_AGE_S,
    now: float | None = None,
) -> bool:
    """A receiver's check of one POST: the signature over the body and the ``X-Irtmon-*``
    headers (compared in constant time), and a timestamp within ``max_age_s`` of ``now``
    (default: this clock). ``headers`` may be any mapping (looked up without regard to case).
    De-duplicate accepted deliveries on ``X-Irtmon-Delivery``."""
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    delivery_id = lower.get(DELIVERY_HEADER.lower(), "")
    action = lower.get(ACTION_HEADER.lower(), "")
    try:
        timestamp = int(lower.get(TIMESTAMP_HEADER.lower(), ""))
    except ValueError:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > max_age_s:
        return False
    expected = sign(body, secret, delivery_id=delivery_id, action=action, timestamp=timestamp)
    return hmac.compare_digest(expected, signature)


class WebhookSink:
    """HTTP POST of the Alert JSON, signed, with retries."""

    name = "webhook"

    def __init__(
        self,
        *,
        config: WebhookConfig,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._clock = clock
        self._context = tls_context(config.cafile)

    def headers(self, body: bytes, delivery_id: str, action: str) -> dict[str, str]:
        """The headers of one attempt, signed now."""
        timestamp = int(self._clock())
        return {
            "Content-Type": "application/json",
            "User-Agent": "irtmon-alerts/2",
            DELIVERY_HEADER: delivery_id,
            ACTION_HEADER: action,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(
                body,
                self.config.secret,
                delivery_id=delivery_id,
                action=action,
                timestamp=timestamp,
            ),
        }

    def send(self, alert: Alert, delivery_id: str = "", action: str = "alert.opened") -> None:
        body = alert.to_json_bytes()
        delivery_id = delivery_id or str(alert.event_id)

        def once() -> None:
            req = urllib.request.Request(
                self.config.url,
                data=body,
                headers=self.headers(body, delivery_id, action),
                method="POST",
            )
            try:
                with urllib.request.urlopen(
                    req, timeout=self.config.timeout_s, context=self._context
                ) as resp:
                    resp.read()
            except urllib.error.HTTPError as err:
                retry = err.code in (408, 429) or err.code >= 500
                raise DeliveryError(
                    f"webhook answered HTTP {err.code}", permanent=not retry
                ) from err
            except (urllib.error.URLError, OSError) as err:
                reason = getattr(err, "reason", err)
                if isinstance(reason, ssl.SSLCertVerificationError):
                    raise DeliveryError(
                        f"webhook certificate not trusted ({reason.verify_message}); set "
                        "IRTMON_ALERT_WEBHOOK_CAFILE to the CA that signed it"
                    ) from err
                raise DeliveryError(f"webhook unreachable: {err}") from err

        _with_retries(f"webhook {self.config.url}", self.config.backoff, once, self._sleep)


# ----------------------------------------------------------------------------- e-mail


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    sender: str = "irtmon@localhost"
    recipients: tuple[str, ...] = ()
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)
    cafile: str | Path | None = None
    """CA bundle (PEM) for the server's certificate (default: the system trust store)."""

    def __post_init__(self) -> None:
        if not self.recipients:
            raise ValueError("SMTP delivery needs at least one recipient")
        if not 0 < self.port < 65536:
            raise ValueError(f"invalid SMTP port {self.port}")
        if self.username and not self.starttls:
            raise ValueError(SMTP_LOGIN_IN_CLEAR)


class EmailSink:
    """Plain-text e-mail over SMTP, with retries."""

    name = "email"

    def __init__(self, *, config: SmtpConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self._sleep = sleep
        self._context = tls_context(config.cafile) if config.starttls else None

    def message(self, alert: Alert, delivery_id: str, action: str) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = subject(alert, action)
        msg["From"] = self.config.sender
        msg["To"] = ", ".join(self.config.recipients)
        msg[DELIVERY_HEADER] = delivery_id or str(alert.event_id)
        msg.set_content(render_text(alert, action))
        return msg

    def send(self, alert: Alert, delivery_id: str = "", action: str = "alert.opened") -> None:
        cfg = self.config
        msg = self.message(alert, delivery_id, action)

        def once() -> None:
            try:
                with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s) as smtp:
                    if self._context is not None:
                        # verifies the certificate and that it names cfg.host
                        smtp.starttls(context=self._context)
                    if cfg.username:
                        if self._context is None:  # SmtpConfig refuses this; never in clear
                            raise DeliveryError("SMTP login refused without TLS", permanent=True)
                        smtp.login(cfg.username, cfg.password or "")
                    smtp.send_message(msg)
            except smtplib.SMTPNotSupportedError as err:
                raise DeliveryError(
                    f"SMTP {cfg.host}:{cfg.port} does not offer STARTTLS: {err}", permanent=True
                ) from err
            except ssl.SSLCertVerificationError as err:
                raise DeliveryError(
                    f"SMTP {cfg.host}:{cfg.port} certificate not trusted "
                    f"({err.verify_message}); set IRTMON_ALERT_SMTP_CAFILE to the CA that "
                    "signed it"
                ) from err
            except smtplib.SMTPRecipientsRefused as err:
                raise DeliveryError(f"SMTP refused the recipients: {err}", permanent=True) from err
            except smtplib.SMTPAuthenticationError as err:
                raise DeliveryError(f"SMTP login failed: {err}", permanent=True) from err
            except (TimeoutError, smtplib.SMTPException, OSError) as err:
                raise DeliveryError(f"SMTP {cfg.host}:{cfg.port} failed: {err}") from err

        _with_retries(f"smtp {cfg.host}:{cfg.port}", cfg.backoff, once, self._sleep)


# ----------------------------------------------------------------------------- topic


class TopicSink:
    """The Alert record on the ``alerts`` topic (keyed by patient; headers
    ``irtmon-action`` and ``irtmon-delivery``), through a :class:`core.publish.Publisher`.

    ``publisher`` is made on first use by ``connect()`` and kept; a failed send drops it, so
    the next round reconnects.
    """

    name = "alerts"

    def __init__(self, *, connect: Callable[[], Any], timeout_s: float = 30.0) -> None:
        self._connect = connect
        self._publisher: Any = None
        self.timeout_s = timeout_s

    def send(self, alert: Alert, delivery_id: str = "", action: str = "alert.opened") -> None:
        try:
            if self._publisher is None:
                self._publisher = self._connect()
            self._publisher.send(
                alert,
                topic=ALERTS.name,
                headers=[
                    ("irtmon-action", action.encode()),
                    ("irtmon-delivery", (delivery_id or str(alert.event_id)).encode()),
                ],
            )
            self._publisher.flush(self.timeout_s)
        except Exception as err:  # the broker is down or refused: a later round retries
            self.close()
            raise DeliveryError(f"publishing on {ALERTS.name} failed: {err}") from err

    def close(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            try:
                publisher.close()
            except Exception:  # closing a broken producer must not hide the first error
                log.warning("closing the alerts publisher failed", exc_info=True)


# ----------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class DeliveryConfig:
    """Which sinks the worker delivers to, and the outbox's pacing."""

    webhook: WebhookConfig | None = None
    email: SmtpConfig | None = None
    email_actions: tuple[str, ...] = ("alert.opened",)
    retry_after_s: float = 60.0
    max_retry_after_s: float = 3600.0
    not_before: datetime | None = None
    topic_publisher: Callable[[], Any] | None = None
    """Makes the publisher of the ``alerts`` topic sink (None: no topic sink)."""

    @classmethod
    def from_settings(cls, settings: Any) -> DeliveryConfig:
        """From ``IRTMON_ALERT_WEBHOOK_URL``, ``IRTMON_ALERT_WEBHOOK_SECRET``,
        ``IRTMON_ALERT_SMTP_HOST``, ``_PORT``, ``_FROM``, ``_TO`` (comma-separated),
        ``_STARTTLS``, ``_CAFILE``, ``_USERNAME``, ``_PASSWORD``, and the webhook's
        ``_ALLOW_HTTP_LOOPBACK`` and ``_CAFILE`` (unset fields: that sink is off).

        Raises ``ValueError`` for an unsafe configuration (an ``http://`` webhook elsewhere
        than this machine, an SMTP login without STARTTLS), so a worker refuses to start."""

        def get(name: str, default: Any = None) -> Any:
            value = getattr(settings, name, default)
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            return value

        webhook = None
        if get("alert_webhook_url"):
            webhook = WebhookConfig(
                url=str(get("alert_webhook_url")),
                secret=str(get("alert_webhook_secret") or ""),
                timeout_s=float(get("alert_webhook_timeout_s", 10.0) or 10.0),
                allow_http_loopback=bool(get("alert_webhook_allow_http_loopback", False)),
                cafile=get("alert_webhook_cafile"),
            )
        since = get("alert_delivery_since")
        if isinstance(since, str):
            since = datetime.fromisoformat(since)
        email = None
        if get("alert_smtp_host"):
            to = get("alert_smtp_to") or ()
            if isinstance(to, str):
                to = tuple(a.strip() for a in to.split(",") if a.strip())
            email = SmtpConfig(
                host=str(get("alert_smtp_host")),
                port=int(get("alert_smtp_port", 25) or 25),
                sender=str(get("alert_smtp_from") or "irtmon@localhost"),
                recipients=tuple(to),
                starttls=bool(get("alert_smtp_starttls", False)),
                username=get("alert_smtp_username"),
                password=get("alert_smtp_password"),
                cafile=get("alert_smtp_cafile"),
            )
        publisher = None
        if isinstance(settings, Settings):
            publisher = functools.partial(Publisher, settings, client_id="irtmon-alerts")
        return cls(
            webhook=webhook,
            email=email,
            retry_after_s=float(get("alert_retry_after_s", 60.0) or 60.0),
            not_before=since,
            topic_publisher=publisher,
        )

    def sinks(self) -> list[AlertSink]:
        """The configured sinks: the ``alerts`` topic, the webhook, the e-mail (each if set).
        Make them once and reuse them: the topic sink keeps its producer."""
        out: list[AlertSink] = []
        if self.topic_publisher is not None:
            out.append(TopicSink(connect=self.topic_publisher))
        if self.webhook is not None:
            out.append(WebhookSink(config=self.webhook))
        if self.email is not None:
            out.append(EmailSink(config=self.email))
        return out


# ----------------------------------------------------------------------------- outbox


@dataclass(frozen=True)
class DeliveryOutcome:
    audit_id: int
    sink: str
    ok: bool
    error: str | None = None


pending = audit.pending_deliveries
"""Alert changes not yet delivered to a sink (see :func:`core.db.audit.pending_deliveries`)."""


def deliver_pending(
    conn: psycopg.Connection,
    sinks: Sequence[AlertSink],
    config: DeliveryConfig | None = None,
    *,
    now: datetime | None = None,
    limit: int = 100,
) -> list[DeliveryOutcome]:
    """Deliver every pending alert change to every sink; record each attempt.

    Commits after each receipt (an outbox must record a send as soon as it happened). A sink
    that fails a send is not tried again in the same round (it is down; the rest wait). Rows
    whose last failure is more recent than the back-off (``retry_after_s`` doubling per failure,
    capped at ``max_retry_after_s``) wait for a later round; nothing is ever given up. Set
    ``not_before`` to skip alert history older than a newly configured sink. A worker calls
    this on a timer.
    """
    cfg = config or DeliveryConfig()
    now = now or datetime.now(UTC)
    since = cfg.not_before or datetime(1970, 1, 1, tzinfo=UTC)
    outcomes: list[DeliveryOutcome] = []
    for sink in sinks:
        actions = cfg.email_actions if sink.name == "email" else DELIVERABLE_ACTIONS
        for row in pending(conn, sink.name, actions, since, limit):
            if outcomes and outcomes[-1].sink == sink.name and not outcomes[-1].ok:
                # this sink is down (its own retries failed): try the rest in a later round
                # rather than wait out its back-off once per pending alert change
                break
            failures = int(row["failures"])
            if failures and row["last_failure"] is not None:
                wait = min(cfg.retry_after_s * 2 ** (failures - 1), cfg.max_retry_after_s)
                if row["last_failure"] + timedelta(seconds=wait) > now:
                    continue
            alert = Alert.model_validate(row["alert"])
            delivery_id = f"{row['id']}/{sink.name}"
            try:
                sink.send(alert, delivery_id, row["action"])
            except DeliveryError as err:
                audit.write_receipt(
                    conn,
                    row["id"],
                    sink.name,
                    row["patient"],
                    ok=False,
                    attempt=failures + 1,
                    error=str(err),
                    at=now,
                )
                outcomes.append(DeliveryOutcome(row["id"], sink.name, False, str(err)))
            else:
                audit.write_receipt(
                    conn,
                    row["id"],
                    sink.name,
                    row["patient"],
                    ok=True,
                    attempt=failures + 1,
                    error=None,
                    at=now,
                )
                outcomes.append(DeliveryOutcome(row["id"], sink.name, True))
            conn.commit()
    return outcomes


def deliver_once(settings: Settings, config: DeliveryConfig, sinks: Sequence[AlertSink]) -> int:
    """One round of the outbox on its own connection; returns how many sends were attempted
    (0 when another worker is delivering, or no sink is configured)."""
    if not sinks:
        return 0
    with connect(settings) as conn:
        locked = audit.try_lock_outbox(conn)
        conn.commit()
        if not locked:
            return 0
        try:
            return len(deliver_pending(conn, sinks, config))
        finally:
            conn.rollback()
            audit.unlock_outbox(conn)
            conn.commit()


__all__ = [
    "ACTION_HEADER",
    "DELIVERABLE_ACTIONS",
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AlertSink",
    "Backoff",
    "DeliveryConfig",
    "DeliveryError",
    "DeliveryOutcome",
    "EmailSink",
    "SmtpConfig",
    "WebhookConfig",
    "WebhookSink",
    "deliver_once",
    "deliver_pending",
    "pending",
    "render_text",
    "sign",
    "signed_message",
    "subject",
    "tls_context",
    "verify",
]
