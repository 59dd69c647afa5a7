"""List-Unsubscribe-Post (one-click) goes only with an https link (RFC 8058 section 3.1); the plain link stays."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy

import pytest

from email_service.cli.startup import warn_about_plain_public_url
from email_service.config import Settings
from email_service.message.mime import MessageBuilder
from email_service.message.rendering import RenderedEmail

TOKEN = "0b8c5f3e-2d1a-4c7e-9f00-5a6b7c8d9e0f.3.AAAAAAAAAAAAAAAAAAAAAA"


def _headers(url: str) -> email.message.EmailMessage:
    envelope = MessageBuilder(cache_size=1).build(
        RenderedEmail(headers=(), text="b"),
        sender="s@example.org",
        recipient="r@example.com",
        recipient_name=None,
        subject="s",
        message_id="<m@example.org>",
        date=datetime(2026, 1, 1, tzinfo=UTC),
        unsubscribe_url=url,
    )
    return email.message_from_bytes(envelope.data, policy=policy.default)


@pytest.mark.parametrize("base", ["https://mail.example.org", "HTTPS://mail.example.org:8443/x"])
def test_an_https_link_is_one_click(base: str):
    message = _headers(f"{base}/unsubscribe/{TOKEN}")
    assert message["List-Unsubscribe"] == f"<{base}/unsubscribe/{TOKEN}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.parametrize("base", ["http://localhost", "http://127.0.0.1:8000", "HTTP://mail.example.org"])
def test_a_plain_http_link_keeps_list_unsubscribe_without_one_click(base: str):
    message = _headers(f"{base}/unsubscribe/{TOKEN}")
    assert message["List-Unsubscribe"] == f"<{base}/unsubscribe/{TOKEN}>"
    assert "List-Unsubscribe-Post" not in message


def test_a_plain_public_url_is_warned_about_at_start(capsys: pytest.CaptureFixture[str]):
    warn_about_plain_public_url(Settings(public_url="http://localhost"))
    assert "PUBLIC_URL http://localhost is not https" in capsys.readouterr().err
    warn_about_plain_public_url(Settings(public_url="https://mail.example.org"))
    assert capsys.readouterr().err == ""
