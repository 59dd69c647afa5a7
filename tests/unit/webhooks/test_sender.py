"""Webhook delivery against a real HTTP server on 127.0.0.1: every outcome is a DeliveryAttempt, never an exception."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

import email_service
from email_service.outbound.destinations import parse_networks
from email_service.outbound.transport import http_client
from email_service.webhooks.sender import DeliveryAttempt, post_event
from email_service.webhooks.signing import SIGNATURE_HEADER, verify

SECRET = "whsec_test"
NOW = 1_700_000_000
BODY = json.dumps({"type": "job.completed", "job_id": "j1"}).encode()
LOOPBACK = parse_networks("127.0.0.0/8")  # the receivers here are on this machine: allowed explicitly
ERROR_PAGE = "<html>\n  <body>Internal   error: " + "x" * 2000 + "</body></html>"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    client_port: int


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received: list[Received] = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as most receivers have it

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            signature_ok = verify(SECRET, self.headers.get(SIGNATURE_HEADER, ""), body, now=NOW)
            headers = {name.lower(): value for name, value in self.headers.items()}
            received.append(Received(self.path, headers, body, signature_ok, self.client_address[1]))
            if self.path == "/ok":
                self._answer(200, b"ok")
            elif self.path == "/no-content":
                self._answer(204, b"")
            elif self.path == "/cookie":
                self._answer(200, b"ok", ("Set-Cookie", "session=abc; Path=/"))
            elif self.path == "/fail":
                self._answer(500, ERROR_PAGE.encode())
            elif self.path == "/unavailable":
                self._answer(503, b"")
            elif self.path == "/not-found":
                self._answer(404, "pas trouvé".encode("latin-1"), ("Content-Type", "text/plain; charset=latin-1"))
            elif self.path == "/redirect":
                self._answer(302, b"", ("Location", "/ok"))
            elif self.path == "/cut":
                # Announces 1000 bytes, sends 7 and hangs up: the status still says what happened.
                self.send_response(500)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self.wfile.write(b"partial")
                self.close_connection = True
            elif self.path == "/slow":
                release.wait(10)
                self._answer(200, b"too late")

        def _answer(self, status: int, body: bytes, *header: tuple[str, str]) -> None:
            try:
                self.send_response(status)
                for name, value in header:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                self.close_connection = True  # the client gave up (the timeout test)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}", received)
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with http_client(2.0, LOOPBACK) as client:
        yield client


def _post(client: httpx.Client, url: str) -> DeliveryAttempt:
    return post_event(client, url, BODY, secrets=[SECRET], event_type="job.completed", delivery_id="d-42", now=NOW)


def test_2xx_is_delivered_with_signed_headers(receiver: Receiver, client: httpx.Client):
    assert _post(client, receiver.url + "/ok") == DeliveryAttempt(True, 200, None)
    [request] = receiver.received
    assert request.body == BODY
    assert request.signature_ok
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == f"email-service-webhooks/{email_service.__version__}"
    assert request.headers["x-email-service-event"] == "job.completed"
    assert request.headers["x-email-service-delivery"] == "d-42"
    assert request.headers["x-email-service-signature"].startswith(f"t={NOW},v1=")


def test_204_is_delivered(receiver: Receiver, client: httpx.Client):
    assert _post(client, receiver.url + "/no-content") == DeliveryAttempt(True, 204, None)


def test_deliveries_to_one_receiver_share_a_connection(receiver: Receiver, client: httpx.Client):
    assert _post(client, receiver.url + "/ok").delivered
    assert _post(client, receiver.url + "/ok").delivered
    assert receiver.received[0].client_port == receiver.received[1].client_port


def test_error_status_reports_the_start_of_the_body(receiver: Receiver, client: httpx.Client):
    attempt = _post(client, receiver.url + "/fail")
    shown = " ".join(ERROR_PAGE.split())[:200]
    assert attempt == DeliveryAttempt(False, 500, f"HTTP 500: {shown}")


def test_error_status_without_body_reports_the_reason(receiver: Receiver, client: httpx.Client):
    assert _post(client, receiver.url + "/unavailable") == DeliveryAttempt(False, 503, "HTTP 503: Service Unavailable")


def test_error_body_is_decoded_with_its_charset(receiver: Receiver, client: httpx.Client):
    assert _post(client, receiver.url + "/not-found") == DeliveryAttempt(False, 404, "HTTP 404: pas trouvé")


def test_error_body_cut_short_still_reports_the_status(receiver: Receiver, client: httpx.Client):
    assert _post(client, receiver.url + "/cut") == DeliveryAttempt(False, 500, "HTTP 500: partial")


def test_redirect_is_not_followed(receiver: Receiver, client: httpx.Client):
    attempt = _post(client, receiver.url + "/redirect")
    assert attempt == DeliveryAttempt(False, 302, "HTTP 302: redirect to /ok not followed")
    assert [request.path for request in receiver.received] == ["/redirect"]


def test_redirect_is_not_followed_even_by_a_client_that_would(receiver: Receiver):
    with httpx.Client(follow_redirects=True) as following:
        assert not _post(following, receiver.url + "/redirect").delivered
    assert [request.path for request in receiver.received] == ["/redirect"]


def test_timeout_is_a_failed_attempt(receiver: Receiver):
    with http_client(0.3, LOOPBACK) as client:
        attempt = _post(client, receiver.url + "/slow")
    assert attempt == DeliveryAttempt(False, None, "timed out waiting for the response")


def test_refused_connection_is_a_failed_attempt(client: httpx.Client):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more.
    attempt = _post(client, f"http://127.0.0.1:{port}/hook")
    assert not attempt.delivered and attempt.status_code is None
    assert attempt.error is not None and attempt.error.startswith("connection failed: ")


@pytest.mark.parametrize("url", ["not a url", "ftp://127.0.0.1/hook", "http://[::1/hook", "http:///hook"])
def test_unusable_url_is_a_failed_attempt(client: httpx.Client, url: str):
    attempt = _post(client, url)
    assert not attempt.delivered and attempt.status_code is None and attempt.error


def test_no_cookie_is_kept_between_deliveries(receiver: Receiver, client: httpx.Client):
    assert _post(client, receiver.url + "/cookie").delivered
    assert _post(client, receiver.url + "/ok").delivered
    assert "cookie" not in receiver.received[1].headers
    assert not client.cookies


def test_proxies_from_the_environment_do_not_apply(receiver: Receiver, monkeypatch: pytest.MonkeyPatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{sock.getsockname()[1]}"
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, dead_proxy)
    with httpx.Client() as trusting:  # the environment is really in effect
        assert not _post(trusting, receiver.url + "/ok").delivered
    with http_client(2.0, LOOPBACK) as client:
        assert _post(client, receiver.url + "/ok").delivered
