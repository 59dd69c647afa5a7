"""gunicorn's access log, as `email-service serve` writes it, masks addresses and unsubscribe signatures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from email_service.runtime.access_log import mask_url
from tests.support.smtp_sink import free_port

TOKEN = "0b5a3c1e-8c1f-4e7a-9a55-0f6b1d2c3e4f.17.AbCdEfGhIjKlMnOpQrStUv"


def test_addresses_and_unsubscribe_signatures_are_masked_in_urls() -> None:
    assert mask_url("DELETE /api/suppressions/will%40example.com HTTP/1.1") == (
        "DELETE /api/suppressions/w***@example.com HTTP/1.1"
    )
    assert mask_url(f"/unsubscribe/{TOKEN}") == f"/unsubscribe/{TOKEN.rpartition('.')[0]}.***"
    assert mask_url("/api/jobs?status=sent") == "/api/jobs?status=sent"


def test_the_access_log_of_the_served_api_names_no_address(tmp_path: Path) -> None:
    env = {**os.environ, "DATA_DIR": str(tmp_path), "AUTH_DISABLED": "true", "DATABASE_URL": ""}
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
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    log_text = log_path.read_text()
    assert "DELETE /api/suppressions/w***@example.com" in log_text
    assert f"/unsubscribe/{TOKEN.rpartition('.')[0]}.***" in log_text
    assert "will.secret" not in log_text and TOKEN not in log_text
