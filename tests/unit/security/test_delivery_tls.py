"""Alert delivery across the network: the webhook over verified HTTPS only (http:// to this
machine only when allowed), its signature bound to the delivery id, the action and the time;
e-mail with STARTTLS that checks the server's certificate, and no SMTP login in clear.

Real servers on loopback: an HTTPS receiver and an aiosmtpd server with STARTTLS, both with a
certificate from a private CA made by ``docker/certs.sh``."""

from __future__ import annotations

import ssl
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr

from core.delivery import (
    Backoff,
    DeliveryConfig,
    DeliveryError,
    EmailSink,
    SmtpConfig,
    WebhookConfig,
    WebhookSink,
    verify,
)
from core.settings import Settings
from schemas import Alert, AlertKind
from tests.conftest import free_port

SECRET = "tls-test-secret-0123456789abcdef"


def alert() -> Alert:
    return Alert(
        event_id=uuid.UUID("7c1f7c0e-8a3d-5f2e-9c4b-1d6e2a7f3b90"),
        patient="psn-0123456789abcdef",
        occurred_at=datetime(2026, 5, 1, 9, 0, tzinfo=UTC),
        kind=AlertKind.SUSPECTED_NON_RESPONSE,
        probability=0.8,
        summary="test",
    )


def server_context(certs: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs / "server.crt", certs / "server.key")
    return context


# ----------------------------------------------------------------------------- webhook


@pytest.fixture
def https_receiver(certs: Path) -> Iterator[tuple[str, list[tuple[dict, bytes]]]]:
    received: list[tuple[dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context(certs).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}/alerts", received
    server.shutdown()
    server.server_close()


def test_https_webhook_with_the_configured_ca_is_delivered_and_verifies(
    https_receiver: tuple[str, list], ca_file: Path
) -> None:
    url, received = https_receiver
    sink = WebhookSink(config=WebhookConfig(url=url, secret=SECRET, cafile=ca_file))
    sink.send(alert(), "12/webhook", "alert.acknowledged")
    assert len(received) == 1
    headers, body = received[0]
    assert headers["X-Irtmon-Delivery"] == "12/webhook"
    assert headers["X-Irtmon-Action"] == "alert.acknowledged"
    assert verify(body, SECRET, headers)


def test_an_untrusted_webhook_certificate_is_not_sent_to(
    https_receiver: tuple[str, list],
) -> None:
    url, received = https_receiver
    sink = WebhookSink(
        config=WebhookConfig(url=url, secret=SECRET, backoff=Backoff(attempts=1))
    )  # the system trust store does not know the private CA
    with pytest.raises(DeliveryError, match=r"not trusted.*IRTMON_ALERT_WEBHOOK_CAFILE"):
        sink.send(alert(), "13/webhook", "alert.opened")
    assert received == []


def test_the_signature_binds_the_delivery_id_the_action_and_the_time(
    https_receiver: tuple[str, list], ca_file: Path
) -> None:
    url, received = https_receiver
    clock = [1_767_225_600.0]
    sink = WebhookSink(
        config=WebhookConfig(url=url, secret=SECRET, cafile=ca_file), clock=lambda: clock[0]
    )
    sink.send(alert(), "14/webhook", "alert.opened")
    headers, body = received[0]
    assert headers["X-Irtmon-Timestamp"] == "1767225600"
    now = clock[0] + 5
    assert verify(body, SECRET, headers, now=now)
    # header names in any case (receivers' frameworks differ)
    assert verify(body, SECRET, {k.lower(): v for k, v in headers.items()}, now=now)
    for name, forged in (
        ("X-Irtmon-Delivery", "15/webhook"),  # another delivery's id
        ("X-Irtmon-Action", "alert.resolved"),  # another action
        ("X-Irtmon-Timestamp", "1767225700"),  # a fresher time
    ):
        assert not verify(body, SECRET, {**headers, name: forged}, now=now), name
    assert not verify(body, "another-secret-0123456789", headers, now=now)
    assert not verify(body.replace(b"0.8", b"0.1"), SECRET, headers, now=now)
    # a replay after the window is refused; the window is the receiver's max_age_s
    assert not verify(body, SECRET, headers, now=clock[0] + 301)
    assert verify(body, SECRET, headers, now=clock[0] + 301, max_age_s=600)
    assert not verify(body, SECRET, {**headers, "X-Irtmon-Timestamp": "soon"}, now=now)
    # a retry is signed afresh
    clock[0] += 60
    sink.send(alert(), "14/webhook", "alert.opened")
    assert received[1][0]["X-Irtmon-Timestamp"] == "1767225660"
    assert received[1][0]["X-Irtmon-Signature"] != headers["X-Irtmon-Signature"]


@pytest.mark.parametrize(
    "url",
    ["http://hooks.clinic.test/irtmon", "http://10.1.2.3:8080/alerts", "ftp://x/y"],
)
def test_plain_http_webhooks_elsewhere_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="https://"):
        WebhookConfig(url=url, secret=SECRET, allow_http_loopback=True)
    with pytest.raises(ValueError, match="https://"):
        Settings(
            alert_webhook_url=url,
            alert_webhook_secret=SECRET,
            alert_webhook_allow_http_loopback=True,
        )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/a", "http://localhost/a", "http://[::1]:9000/a"]
)
def test_http_to_this_machine_needs_the_setting(url: str) -> None:
    with pytest.raises(ValueError, match="IRTMON_ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK"):
        WebhookConfig(url=url, secret=SECRET)
    with pytest.raises(ValueError, match="IRTMON_ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK"):
        Settings(alert_webhook_url=url, alert_webhook_secret=SECRET)
    assert WebhookConfig(url=url, secret=SECRET, allow_http_loopback=True).url == url
    settings = Settings(
        alert_webhook_url=url,
        alert_webhook_secret=SECRET,
        alert_webhook_allow_http_loopback=True,
    )
    assert DeliveryConfig.from_settings(settings).webhook is not None


# ----------------------------------------------------------------------------- e-mail


class SmtpServer:
    """aiosmtpd on loopback with STARTTLS required before MAIL and before AUTH."""

    def __init__(self, certs: Path) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        self.messages: list[bytes] = []
        self.logins: list[tuple[str, bool]] = []  # (user, over TLS)
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                outer.messages.append(envelope.content)
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            assert isinstance(auth_data, LoginPassword)
            outer.logins.append((auth_data.login.decode(), session.ssl is not None))
            ok = auth_data.login == b"irtmon" and auth_data.password == b"smtp-pass-0123"
            return AuthResult(success=ok)

        self.port = free_port()
        self.controller = Controller(
            Handler(),
            hostname="127.0.0.1",
            port=self.port,
            tls_context=server_context(certs),
            require_starttls=True,
            authenticator=authenticator,
            auth_require_tls=True,
        )
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def smtp_server(certs: Path) -> Iterator[SmtpServer]:
    server = SmtpServer(certs)
    yield server
    server.stop()


def smtp_config(port: int, **extra: object) -> SmtpConfig:
    values: dict = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "irtmon@clinic.test",
        "recipients": ("oncology@clinic.test",),
        "starttls": True,
        "username": "irtmon",
        "password": "smtp-pass-0123",
        "timeout_s": 5,
        "backoff": Backoff(attempts=1),
    }
    values.update(extra)
    return SmtpConfig(**values)


def test_starttls_checks_the_certificate_then_logs_in_over_tls(
    smtp_server: SmtpServer, ca_file: Path
) -> None:
    EmailSink(config=smtp_config(smtp_server.port, cafile=ca_file)).send(alert(), "3/email")
    assert smtp_server.logins == [("irtmon", True)]
    assert len(smtp_server.messages) == 1
    assert message_from_bytes(smtp_server.messages[0])["X-Irtmon-Delivery"] == "3/email"


def test_an_untrusted_smtp_certificate_stops_before_the_login(smtp_server: SmtpServer) -> None:
    """STARTTLS without a verified certificate would hand the password to whoever sits on
    the path: the sink refuses the server, sends no login and no message."""
    sink = EmailSink(config=smtp_config(smtp_server.port))  # system trust store only
    with pytest.raises(DeliveryError, match=r"not trusted.*IRTMON_ALERT_SMTP_CAFILE"):
        sink.send(alert(), "4/email")
    assert smtp_server.logins == []
    assert smtp_server.messages == []


def test_an_smtp_login_without_tls_is_refused_when_configured() -> None:
    with pytest.raises(ValueError, match="IRTMON_ALERT_SMTP_STARTTLS"):
        smtp_config(25, starttls=False)
    with pytest.raises(ValueError, match="IRTMON_ALERT_SMTP_STARTTLS"):
        Settings(
            alert_smtp_host="smtp.clinic.test",
            alert_smtp_to="a@clinic.test",
            alert_smtp_username="irtmon",
            alert_smtp_password=SecretStr("x"),
        )
    # without a login, plain SMTP inside the hospital stays possible
    assert smtp_config(25, starttls=False, username=None, password=None).starttls is False


def test_settings_carry_the_ca_files_to_the_sinks(ca_file: Path) -> None:
    settings = Settings(
        alert_webhook_url="https://hooks.clinic.test/irtmon",
        alert_webhook_secret=SECRET,
        alert_webhook_cafile=ca_file,
        alert_smtp_host="smtp.clinic.test",
        alert_smtp_to="a@clinic.test",
        alert_smtp_starttls=True,
        alert_smtp_cafile=ca_file,
        alert_smtp_username="irtmon",
        alert_smtp_password="pw-0123",
    )
    config = DeliveryConfig.from_settings(settings)
    assert config.webhook is not None and Path(config.webhook.cafile) == ca_file
    assert config.email is not None and Path(config.email.cafile) == ca_file
