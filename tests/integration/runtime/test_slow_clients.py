"""`email-service serve` reached directly (no nginx) keeps answering while dozens of clients send their
requests a byte at a time or do not read their answers, and drops those too slow to finish in time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import GunicornApi

READ_TIMEOUT = 4.0
SLOW_HEADS, SLOW_BODIES = 30, 15


@pytest.fixture
def api(tmp_path: Path) -> Iterator[GunicornApi]:
    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": "", "AUTH_DISABLED": "true", "REQUEST_READ_TIMEOUT": "4"}
    server = GunicornApi(env, tmp_path / "serve.log", workers=1).wait_ready()
    yield server
    server.stop()


def _trickle(port: int, request: bytes, stop: threading.Event, closed_after: list[float]) -> None:
    """Send ``request`` a byte every 0.3 s until ``stop``; note when the server closed the connection."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        for byte in request:
            if stop.is_set():
                return
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                break
            if stop.wait(0.3):
                return
        try:
            connection.settimeout(max(0.1, READ_TIMEOUT + 3 - (time.monotonic() - started)))
            while connection.recv(4096):  # a request received whole is answered; then keep-alive ends
                pass
        except OSError:
            pass
    closed_after.append(time.monotonic() - started)


def test_slow_clients_hold_no_thread_and_are_dropped_after_the_read_timeout(api: GunicornApi):
    port = int(api.url.rsplit(":", 1)[1])
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * 40 + b"\r\n\r\n"
    body = b'{"email": "' + b"s" * 60 + b'@example.com"}'
    post = b"POST /api/suppressions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    post += f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    stop, closed_after = threading.Event(), []
    slow = [threading.Thread(target=_trickle, args=(port, head, stop, closed_after)) for _ in range(SLOW_HEADS)]
    slow += [threading.Thread(target=_trickle, args=(port, post, stop, closed_after)) for _ in range(SLOW_BODIES)]
    for thread in slow:
        thread.start()
    latencies = []
    try:
        with api.client() as client:
            deadline = time.monotonic() + READ_TIMEOUT + 2
            while time.monotonic() < deadline:
                started = time.monotonic()
                assert client.get("/healthz", timeout=5).status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.1)
        for thread in slow:
            thread.join(timeout=READ_TIMEOUT + 5)
    finally:
        stop.set()
    # 45 slow clients against one process of 8 threads: every other request still answered at once.
    assert len(latencies) > 20 and max(latencies) < 1.0, max(latencies)
    # None of them could finish in time (each needs over 30 s): each was closed after the read timeout.
    assert len(closed_after) == SLOW_HEADS + SLOW_BODIES
    assert all(READ_TIMEOUT - 0.5 < after < READ_TIMEOUT + 2.5 for after in closed_after), sorted(closed_after)
