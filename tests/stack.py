"""Real processes for integration tests: the HTTP API on a free port and Celery worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from werkzeug.serving import make_server

from email_service.app import create_app
from email_service.config import Settings

from .smtp_sink import free_port


class ApiServer:
    """The Flask app behind werkzeug's threaded HTTP server, on 127.0.0.1 and a free port."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self._server = make_server("127.0.0.1", free_port(), self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.client.close()
        self._server.shutdown()
        self._thread.join(timeout=10)

    def post_job(self, body: dict[str, Any]) -> httpx.Response:
        return self.client.post("/api/email/", json=body)

    def wait_until_completed(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.client.get(f"/api/email/{job_id}").json()
            if job["status"] == "completed":
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} not completed after {timeout}s: {job}")
            time.sleep(0.1)

    def recipients(self, job_id: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        after = None
        while True:
            query = {**params, "limit": 1000, **({"after": after} if after is not None else {})}
            page = self.client.get(f"/api/email/{job_id}/recipients", params=query).json()
            items += page["items"]
            after = page["next_after"]
            if after is None:
                return items


class WorkerProcess:
    """``email-service worker`` (a supervisor and its Celery worker processes) started by a test,
    configured only by its environment."""

    def __init__(self, env: dict[str, str], log_path: Path, processes: int = 1) -> None:
        self.log_path = log_path
        self.processes = processes
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "email_service", "worker", "--processes", str(processes)],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while self.log_path.read_bytes().count(b" ready.") < self.processes:
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {timeout}s:\n{self.log()}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


def settings_from(env: dict[str, str]) -> Settings:
    """The Settings a process started with ``env`` reads (the test process uses the same)."""
    return Settings(**{key.lower(): value for key, value in env.items()})
