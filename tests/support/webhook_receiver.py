"""A real HTTP server receiving webhook events for tests: records them, fails on request."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.smtp_sink import free_port

# WEBHOOK_ALLOWED_NETWORKS of the stacks that deliver to a receiver here: webhooks go to public addresses only
# unless a network is allowed.
LOOPBACK_NETWORKS = "127.0.0.0/8,::1/128"


@dataclass(frozen=True)
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


class WebhookReceiver:
    """POSTs to any path of http://127.0.0.1:<port>/ are recorded and answered 204, or 500 while
    ``failures_left`` is above zero. It can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.failures_left = 0
        self._lock = threading.Lock()
        self._deliveries: list[Delivery] = []
        self._attempts = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._lock:
                    receiver._attempts += 1
                    failing = receiver.failures_left > 0
                    if failing:
                        receiver.failures_left -= 1
                    else:
                        receiver._deliveries.append(Delivery(dict(self.headers.items()), body))
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def deliveries(self, job_id: str | None = None) -> list[Delivery]:
        with self._lock:
            found = list(self._deliveries)
        return [d for d in found if job_id is None or d.event["data"]["job_id"] == job_id]

    @property
    def attempts(self) -> int:
        with self._lock:
            return self._attempts
