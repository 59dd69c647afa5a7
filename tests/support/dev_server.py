"""A running ``email-service dev`` for tests: its own data folder and free ports, stopped like Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from tests.support.smtp_sink import free_port


class DevServer:
    """``email-service dev`` in ``data_dir``, with the environment's server settings left out."""

    def __init__(self, tmp_path: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = tmp_path / "var"
        self.port, self.smtp_port = free_port(), free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "dev.log"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "MAIL_"))}
        self.env = {**inherited, **(env or {})}
        self._log: IO[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> str:
        """Run another command of the service on dev's database (``keys create``); its output."""
        env = {**self.env, "DATABASE_URL": f"sqlite:///{self.data_dir / 'email_service.db'}"}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.run(
            [sys.executable, "-m", "email_service", *args], env=env, check=True, capture_output=True, text=True
        ).stdout

    def start(self, timeout: float = 60) -> DevServer:
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "email_service", "dev",
                "--port", str(self.port), "--smtp-port", str(self.smtp_port), "--data-dir", str(self.data_dir),
            ],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(f"{self.base}/healthz", timeout=2)
                return self
            except httpx.TransportError:
                assert self.process.poll() is None and time.monotonic() < deadline, self.log()
                time.sleep(0.3)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> int:
        """Ctrl-C, as a user stops it; its exit code."""
        assert self.process is not None and self._log is not None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        finally:
            self._log.close()
