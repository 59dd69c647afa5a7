"""No credential or token in any log line: one masking function, whatever the case, encoding or place."""

from __future__ import annotations

import base64
import logging
import secrets
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.logs import LOG_FORMAT, MaskingFormatter, mask_secrets, mask_url

JOB = "0b5a3c1e-8c1f-4e7a-9a55-0f6b1d2c3e4f"
KEY = "es_" + "Ab9_-" * 8 + "xyz"  # the shape of an API key: es_ and 43 URL-safe characters
SIGNATURE = "AbCdEfGhIjKlMnOpQrStUv"


def _leaks(text: str, secret: str) -> bool:
    forms = {secret, quote(secret, safe=""), base64.b64encode(secret.encode()).decode()}
    return any(form in text for form in forms)


@st.composite
def _cased(draw: st.DrawFn, word: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in word)


@st.composite
def _encoded(draw: st.DrawFn, text: str) -> str:
    """``text`` with some characters percent-encoded once or twice (hex digits in either case)."""
    out = []
    for char in text:
        times = draw(st.sampled_from([0, 0, 1, 2]))
        for _ in range(times):
            char = "".join(f"%{b:02x}" if draw(st.booleans()) else f"%{b:02X}" for b in char.encode())
        out.append(char)
    return "".join(out)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), slashes=st.sampled_from(["/", "//"]), method=st.sampled_from(["GET", "POST", "HEAD"]))
def test_unsubscribe_signatures_are_masked_in_any_case_and_encoding(data: st.DataObject, slashes: str, method: str):
    signature = data.draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", min_size=8))
    path = f"{slashes}{data.draw(_cased('unsubscribe'))}/{data.draw(_cased(JOB))}.17.{signature}"
    line = f"{method} {data.draw(_encoded(path))} HTTP/1.1"
    masked = mask_url(line)
    assert signature not in masked
    assert masked.lower().startswith(f"{method.lower()} {slashes}unsubscribe/{JOB}.17.***")


@settings(max_examples=150, deadline=None)
@given(
    data=st.data(),
    name=st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12),
    value=st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.~", min_size=6, max_size=40),
    before=st.sampled_from(["", "status=sent&", "a&"]),
)
def test_every_query_value_is_masked(data: st.DataObject, name: str, value: str, before: str):
    line = f"GET /api/email/?{before}{data.draw(_encoded(f'{name}={value}'))} HTTP/1.1"
    masked_before = {"": "", "status=sent&": "status=***&", "a&": "***&"}[before]
    assert mask_url(line) == f"GET /api/email/?{masked_before}{name}=*** HTTP/1.1"


@settings(max_examples=100, deadline=None)
@given(data=st.data(), scheme=st.sampled_from(["Basic", "Bearer", "Digest", "Token", "Negotiate", "NTLM"]))
def test_credentials_of_any_scheme_are_masked(data: st.DataObject, scheme: str):
    credential = secrets.token_urlsafe(16)
    header = data.draw(st.sampled_from(["Authorization", "Proxy-Authorization", "X-API-Key", "Cookie"]))
    for line in (f"{data.draw(_cased(header))}: {scheme} {credential}", f"{data.draw(_cased(scheme))} {credential}"):
        assert not _leaks(mask_secrets(line), credential)


def test_an_api_key_is_masked_anywhere():
    for text in (f"user {KEY} signed in", f"/dashboard/login?{KEY}", f"https://{KEY}:@host.example/", KEY):
        assert not _leaks(mask_secrets(text), KEY), mask_secrets(text)


def test_the_service_formatter_masks_secrets_at_every_level():
    formatter = MaskingFormatter(LOG_FORMAT)
    for level in (logging.DEBUG, logging.ERROR):
        record = logging.LogRecord(
            "email_service", level, "f", 1, "failed on %s", (f"/unsubscribe/{JOB}.1.{SIGNATURE}",), None
        )
        assert SIGNATURE not in formatter.format(record)


def test_what_holds_no_secret_reads_as_before():
    assert mask_url("GET /api/email/5d0c7a52-3c4e-4f4e-9d55-2f9e6c1b7a10/recipients HTTP/1.1") == (
        "GET /api/email/5d0c7a52-3c4e-4f4e-9d55-2f9e6c1b7a10/recipients HTTP/1.1"
    )
    assert mask_secrets("sweep done: 3 batches queued, 100% of them") == "sweep done: 3 batches queued, 100% of them"
