"""Alert delivery: webhook signing and retries against a local HTTP server, e-mail against a
local SMTP server (aiosmtpd), wording and configuration."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import ClassVar

import pytest

from core.delivery import (
    SIGNATURE_HEADER,
    Backoff,
    DeliveryConfig,
    DeliveryError,
    EmailSink,
    SmtpConfig,
    WebhookConfig,
    WebhookSink,
    render_text,
    sign,
    verify,
)
from schemas import Alert, AlertKind

SECRET = "test-secret-0123456789abcdef"
LOOPBACK = {"allow_http_loopback": True}  # the local receivers here speak plain HTTP


def make_alert() -> Alert:
    return Alert(
        event_id=uuid.UUID("5b1f7c0e-8a3d-5f2e-9c4b-1d6e2a7f3b90"),
        patient="psn-0123456789abcdef",
        occurred_at=datetime(2026, 5, 1, 9, 0, tzinfo=UTC),
        kind=AlertKind.SUSPECTED_NON_RESPONSE,
        probability=0.87,
        change_at=datetime(2026, 3, 20, 9, 0, tzinfo=UTC),
        summary="Suspected non-response from 2026-03-20: the sum of longest diameters rose "
        "from 50 mm to 62 mm (+24%).",
        signals=["tumour_sum_diameters_mm", "response_probability"],
        model_versions={"decision_rule": "irtmon-changepoint/1.0.0", "response": "rp/2.1"},
    )


class _Recorder(BaseHTTPRequestHandler):
    statuses: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = type(self).statuses.pop(0) if type(self).statuses else 200
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"statuses": [], "received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


def test_signature_is_hmac_sha256_of_timestamp_id_action_and_body() -> None:
    import hashlib
    import hmac

    body = b'{"a": 1}'
    message = b'1767225600\n42/webhook\nalert.opened\n{"a": 1}'
    expected = "sha256=" + hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()
    signed = sign(
        body, SECRET, delivery_id="42/webhook", action="alert.opened", timestamp=1767225600
    )
    assert signed == expected
    headers = {
        "X-Irtmon-Signature": expected,
        "X-Irtmon-Delivery": "42/webhook",
        "X-Irtmon-Action": "alert.opened",
        "X-Irtmon-Timestamp": "1767225600",
    }
    assert verify(body, SECRET, headers, now=1767225600 + 10)
    assert not verify(body + b" ", SECRET, headers, now=1767225600 + 10)


def test_webhook_posts_signed_json_and_retries_server_errors(http_server) -> None:
    url, handler = http_server
    handler.statuses = [500, 503]
    sleeps: list[float] = []
    sink = WebhookSink(
        config=WebhookConfig(
            url=url, secret=SECRET, backoff=Backoff(attempts=4, base_s=0.5), **LOOPBACK
        ),
        sleep=sleeps.append,
    )
    alert = make_alert()
    sink.send(alert, "42/webhook", "alert.opened")
    assert len(handler.received) == 3
    assert sleeps == [0.5, 1.0]  # exponential back-off
    headers, body = handler.received[-1]
    assert body == alert.to_json_bytes()
    assert verify(body, SECRET, headers)
    assert headers[SIGNATURE_HEADER].startswith("sha256=")
    assert headers["X-Irtmon-Delivery"] == "42/webhook"
    assert Alert.model_validate_json(body) == alert


def test_webhook_gives_up_after_the_last_attempt(http_server) -> None:
    url, handler = http_server
    handler.statuses = [500, 500, 500]
    sink = WebhookSink(
        config=WebhookConfig(url=url, secret=SECRET, backoff=Backoff(attempts=3), **LOOPBACK),
        sleep=lambda s: None,
    )
    with pytest.raises(DeliveryError, match="HTTP 500") as info:
        sink.send(make_alert())
    assert not info.value.permanent
    assert len(handler.received) == 3


def test_webhook_client_error_is_permanent_and_not_retried(http_server) -> None:
    url, handler = http_server
    handler.statuses = [400]
    sink = WebhookSink(
        config=WebhookConfig(url=url, secret=SECRET, **LOOPBACK), sleep=lambda s: None
    )
    with pytest.raises(DeliveryError) as info:
        sink.send(make_alert())
    assert info.value.permanent
    assert len(handler.received) == 1


def test_webhook_unreachable_is_retried_then_fails() -> None:
    from tests.conftest import free_port

    sleeps: list[float] = []
    sink = WebhookSink(
        config=WebhookConfig(
            url=f"http://127.0.0.1:{free_port()}/",
            secret=SECRET,
            backoff=Backoff(attempts=2),
            **LOOPBACK,
        ),
        sleep=sleeps.append,
    )
    with pytest.raises(DeliveryError, match="unreachable"):
        sink.send(make_alert())
    assert len(sleeps) == 1


def test_webhook_config_validation() -> None:
    with pytest.raises(ValueError, match="http"):
        WebhookConfig(url="ftp://x", secret=SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookConfig(url="https://x", secret="short")


def test_email_is_delivered_over_smtp() -> None:
    from aiosmtpd.controller import Controller

    from tests.conftest import free_port

    class Handler:
        def __init__(self) -> None:
            self.messages: list[tuple[str, list[str], bytes]] = []

        async def handle_DATA(self, server, session, envelope):  # noqa: N802
            self.messages.append((envelope.mail_from, envelope.rcpt_tos, envelope.content))
            return "250 OK"

    handler = Handler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sink = EmailSink(
            config=SmtpConfig(
                host="127.0.0.1",
                port=port,
                sender="irtmon@clinic.test",
                recipients=("oncology@clinic.test", "physics@clinic.test"),
            )
        )
        sink.send(make_alert(), "7/email", "alert.opened")
    finally:
        controller.stop()
    assert len(handler.messages) == 1
    mail_from, rcpt, content = handler.messages[0]
    assert mail_from == "irtmon@clinic.test"
    assert rcpt == ["oncology@clinic.test", "physics@clinic.test"]
    msg = message_from_bytes(content)
    assert "Suspected non-response" in msg["Subject"]
    text = msg.get_payload(decode=True).decode()
    assert "consider adaptive treatment review" in text
    assert "87%" in text


def test_email_failure_is_retried_then_reported() -> None:
    from tests.conftest import free_port

    sleeps: list[float] = []
    sink = EmailSink(
        config=SmtpConfig(
            host="127.0.0.1",
            port=free_port(),
            recipients=("a@b.test",),
            timeout_s=2,
            backoff=Backoff(attempts=3, base_s=1.0),
        ),
        sleep=sleeps.append,
    )
    with pytest.raises(DeliveryError, match="SMTP"):
        sink.send(make_alert())
    assert sleeps == [1.0, 2.0]


def test_text_says_what_when_how_sure_which_models_and_what_to_do() -> None:
    text = render_text(make_alert())
    assert "What changed: Suspected non-response from 2026-03-20" in text
    assert "Since: 2026-03-20" in text
    assert "How sure: 87%" in text
    assert "irtmon-changepoint/1.0.0" in text and "rp/2.1" in text
    assert "Recommended review: consider adaptive treatment review" in text


def test_delivery_config_from_settings() -> None:
    from pydantic import SecretStr

    s = SimpleNamespace(
        alert_webhook_url="https://hooks.clinic.test/irtmon",
        alert_webhook_secret=SecretStr(SECRET),
        alert_smtp_host="smtp.clinic.test",
        alert_smtp_port=587,
        alert_smtp_from="irtmon@clinic.test",
        alert_smtp_to="a@clinic.test, b@clinic.test",
        alert_smtp_starttls=True,
    )
    cfg = DeliveryConfig.from_settings(s)
    assert cfg.webhook is not None and cfg.webhook.secret == SECRET
    assert cfg.email is not None and cfg.email.recipients == ("a@clinic.test", "b@clinic.test")
    assert cfg.email.port == 587 and cfg.email.starttls
    assert [x.name for x in cfg.sinks()] == ["webhook", "email"]
    assert DeliveryConfig.from_settings(SimpleNamespace()).sinks() == []
