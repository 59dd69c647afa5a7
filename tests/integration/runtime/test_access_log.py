"""gunicorn's access log, as `email-service serve` writes it, masks addresses and unsubscribe signatures, and no
log of the served API (stdout, stderr, LOG_PATH) holds a credential or token a request carried, in any shape."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from email_service.runtime.access_log import mask_url
from tests.support.smtp_sink import free_port

TOKEN = "0b5a3c1e-8c1f-4e7a-9a55-0f6b1d2c3e4f.17.AbCdEfGhIjKlMnOpQrStUv"
API_KEY = "es_" + secrets.token_urlsafe(32)
POSTMARK_PASSWORD = f"pm-{secrets.token_urlsafe(16)}"
QUERY_TOKEN = secrets.token_urlsafe(16)
SIGNATURE = secrets.token_urlsafe(16)[:22]
SECRETS = [API_KEY, POSTMARK_PASSWORD, QUERY_TOKEN, SIGNATURE]


def _shows(text: str, secret: str) -> bool:
    """Whether ``text`` holds ``secret`` plain, URL-encoded, or in base64 (alone or as a Basic credential)."""
    forms = [secret, quote(secret, safe=""), *(base64.b64encode(f.encode()).decode() for f in (secret, f"{secret}:"))]
    return any(form in text for form in forms)


def _send_every_shape_of_secret(base: str) -> None:
    """Each way a request can carry a credential or token: headers of any scheme, a Basic user and password,
    query strings, unsubscribe paths in any case and encoding."""
    job = "0B5A3C1E-8C1F-4E7A-9A55-0F6B1D2C3E4F"
    with httpx.Client(base_url=base, timeout=5) as client:
        client.get("/api/email/", auth=(API_KEY, ""))  # curl -u KEY:
        client.post("/bounces/postmark", auth=("postmark", POSTMARK_PASSWORD), json={})
        client.get("/api/email/", headers={"Authorization": f"Bearer {API_KEY}"})
        client.get("/api/email/", headers={"Authorization": f"Token {QUERY_TOKEN}", "X-API-Key": API_KEY})
        client.get(f"/api/email/?api_key={API_KEY}&status=sent")
        client.get(
            f"/dashboard/login?next=/dashboard/&token={QUERY_TOKEN}", headers={"Referer": f"{base}/?k={API_KEY}"}
        )
        client.get(f"/api/email/?{QUERY_TOKEN}")
        for path in (
            f"/UNSUBSCRIBE/{job}.17.{SIGNATURE}",
            f"/unsubscribe/{job}.17.{SIGNATURE}",
            f"/Unsubscribe/{job.lower()}.3.{SIGNATURE}?x=1",
            f"/unsubscribe%2F{job}.17.{SIGNATURE}",
            f"/%75nsubscribe/{job}.17.{quote(SIGNATURE, safe='')}",
            f"//unsubscribe//{job}.17.{SIGNATURE}",
        ):
            client.get(path)
            client.post(path, data={"List-Unsubscribe": "One-Click"})


def test_addresses_and_unsubscribe_signatures_are_masked_in_urls() -> None:
    assert mask_url("DELETE /api/suppressions/will%40example.com HTTP/1.1") == (
        "DELETE /api/suppressions/w***@example.com HTTP/1.1"
    )
    assert mask_url(f"/unsubscribe/{TOKEN}") == f"/unsubscribe/{TOKEN.rpartition('.')[0]}.***"
    assert mask_url("/api/jobs?status=sent") == "/api/jobs?status=***"


def test_the_access_log_of_the_served_api_names_no_address(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path),
        "AUTH_DISABLED": "true",
        "DATABASE_URL": "",
        "LOG_PATH": str(tmp_path / "file" / "api.log"),
        "POSTMARK_WEBHOOK_PASSWORD": POSTMARK_PASSWORD,
        "BOUNCE_SECRET": secrets.token_urlsafe(24),
    }
    command = [sys.executable, "-m", "email_service"]
    subprocess.run([*command, "db", "upgrade"], env=env, check=True, capture_output=True)
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*command, "serve", "--port", str(port), "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.1)
        httpx.post(f"{base}/api/suppressions", json={"email": "will.secret@example.com"}, timeout=5)
        answer = httpx.delete(f"{base}/api/suppressions/will.secret%40example.com", timeout=5)
        assert answer.status_code == 204, answer.text
        httpx.get(f"{base}/unsubscribe/{TOKEN}", timeout=5)
        _send_every_shape_of_secret(base)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    logs = {path: path.read_text() for path in tmp_path.rglob("*.log*")}
    assert set(logs) == {log_path, tmp_path / "file" / "api.log"}
    for path, text in logs.items():
        for secret in SECRETS:
            assert not _shows(text, secret), f"{secret} in {path}: {text}"
    log_text = log_path.read_text()
    assert "DELETE /api/suppressions/w***@example.com" in log_text
    assert f"/unsubscribe/{TOKEN.rpartition('.')[0]}.***" in log_text
    assert "will.secret" not in log_text and TOKEN not in log_text
