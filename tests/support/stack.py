"""Real processes for integration tests: the HTTP API on a free port and Celery worker processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from email_service.app import create_app
from email_service.config import Settings
from email_service.services import auth
from tests.support.smtp_sink import free_port
from tests.support.webhook_receiver import LOOPBACK_NETWORKS


class ApiClient:
    """A client of the service's HTTP API at ``url``, sending ``headers`` (an API key) with every request."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = headers
        self.client = httpx.Client(base_url=url, timeout=30, headers=headers)

    def close(self) -> None:
        self.client.close()

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


class ApiServer(ApiClient):
    """The Flask app behind werkzeug's threaded HTTP server, on 127.0.0.1 and a free port."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self._server = make_server("127.0.0.1", free_port(), self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.webhook_secrets: dict[str, str] = {}
        # A key of its own: the tests call the API as a client of the service would.
        # Its account's name is its own: several servers may share a database.
        self.account_name = f"tests-{uuid.uuid4().hex[:8]}"
        self.api_key = self.new_key(self.account_name) if not settings.auth_disabled else None
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        super().__init__(f"http://127.0.0.1:{self._server.server_port}", headers)

    def new_key(
        self, name: str, senders: tuple[str, ...] = (), *, account: str | None = None, role: str = "account"
    ) -> str:
        """A key named ``name`` of ``account``, or of a new account of that name (which may send as
        ``senders``, and whose webhook signing secret is kept in ``webhook_secrets``)."""
        services = self.app.extensions["email_service"]
        _, key, secret = auth.create_key(
            services.sessions, services.settings, name, account=account, role=role, senders=senders
        )
        if secret is not None:
            self.webhook_secrets[name] = secret
        return key

    @property
    def webhook_secret(self) -> str:
        """The webhook signing secret of the account of ``api_key``."""
        return self.webhook_secrets[self.account_name]

    def start(self) -> ApiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.close()
        self._server.shutdown()
        self._thread.join(timeout=10)


class LoggedProcess:
    """A program run by a test as a child process, its output in ``log_path``; ready once its log holds
    ``ready_marker`` ``ready_count`` times.

    It gets its own process group, so a test can kill it with all its children at once.
    """

    ready_marker = b""
    ready_count = 0

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60) -> Self:
        deadline = time.monotonic() + timeout
        while self.log_path.read_bytes().count(self.ready_marker) < self.ready_count:
            self.check_running(deadline, timeout)
            time.sleep(0.1)
        return self

    def check_running(self, deadline: float, timeout: float) -> None:
        """Fail if the process has exited, or is still not ready at ``deadline``."""
        if self.process.poll() is not None:
            raise AssertionError(f"{self.process.args} exited early:\n{self.log()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{self.process.args} not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill_all(self) -> None:
        """kill -9 the process and every child it started."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._log.close()


class ServiceProcess(LoggedProcess):
    """An ``email-service`` command, configured by its environment."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        super().__init__([sys.executable, "-m", "email_service", *args], env, log_path)


class WorkerProcess(ServiceProcess):
    """``email-service worker``: a supervisor and its Celery worker processes."""

    ready_marker = b" ready."

    def __init__(self, env: dict[str, str], log_path: Path, processes: int = 1) -> None:
        super().__init__(["worker", "--processes", str(processes)], env, log_path)
        self.ready_count = processes

    def children(self) -> set[int]:
        """Pids of the Celery worker processes under the supervisor."""
        return child_pids(self.pid)


class SchedulerProcess(ServiceProcess):
    ready_marker = b"scheduler sweeping"
    ready_count = 1

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        super().__init__(["scheduler"], env, log_path)


class GunicornApi(ServiceProcess):
    """``email-service serve``: gunicorn and its worker processes, on 127.0.0.1 and a free port or, given one,
    on the unix socket ``socket`` (as behind nginx)."""

    ready_marker = b"Booting worker with pid"

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2, socket: Path | None = None) -> None:
        port = free_port()
        bind = ["--bind", f"unix:{socket}"] if socket else ["--port", str(port)]
        super().__init__(["serve", *bind, "--workers", str(workers)], env, log_path)
        self.socket = socket
        self.url = "http://api" if socket else f"http://127.0.0.1:{port}"  # no host name on a socket
        self.ready_count = workers

    def workers(self) -> set[int]:
        return child_pids(self.pid)

    def client(self) -> httpx.Client:
        transport = httpx.HTTPTransport(uds=str(self.socket)) if self.socket else None
        return httpx.Client(transport=transport, base_url=self.url, timeout=30)

    def wait_ready(self, timeout: float = 60) -> Self:
        deadline = time.monotonic() + timeout
        super().wait_ready(timeout)
        with self.client() as client:  # each worker loads the app after booting; the socket waits for one
            while not _answers(client, "/healthz"):
                self.check_running(deadline, timeout)
                time.sleep(0.1)
        return self

    def access_log(self, marker: str) -> list[str]:
        """Access log lines holding ``marker`` (e.g. a query parameter's name; values are masked): client address
        first, scheme last."""
        return [line for line in self.log().splitlines() if marker in line]


def _answers(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.TransportError:
        return False


def child_pids(pid: int) -> set[int]:
    """Live children of process ``pid``, read from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def is_alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def metric_values(exposition: str) -> dict[str, float]:
    """The samples of a Prometheus text exposition by name and labels, e.g.
    ``email_service_recipients_final_total{status="sent"}``."""
    values = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            labels = ",".join(f'{name}="{value}"' for name, value in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def settings_from(env: dict[str, str]) -> Settings:
    """The Settings a process started with ``env`` reads (the test process uses the same)."""
    return Settings(**{key.lower(): value for key, value in env.items()})


@contextlib.contextmanager
def api_and_worker(env: dict[str, str], folder: Path, templates: dict[str, str] | None = None) -> Iterator[ApiServer]:
    """The API and one worker process on ``env``, with template files of their own in ``folder``."""
    if templates:
        (folder / "templates").mkdir()
        for name, source in templates.items():
            (folder / "templates" / f"{name}.eml").write_text(source)
        env = {**env, "TEMPLATES_DIR": str(folder / "templates")}
    worker = WorkerProcess(env, folder / "worker.log").wait_ready()
    api = ApiServer(settings_from(env)).start()
    try:
        yield api
    finally:
        api.stop()
        worker.stop()


def client_stack(
    postgres_url: str, redis_prefix: str, relay_port: int, folder: Path, templates: dict[str, str]
) -> contextlib.AbstractContextManager[ApiServer]:
    """The stack the client's tests talk to: PostgreSQL, Redis, one worker, webhooks allowed."""
    env = relay_env(
        postgres_url,
        "redis://127.0.0.1:6379/0",
        redis_prefix,
        relay_port,
        BATCH_SIZE="10",
        SMTP_CONCURRENCY="4",
        WEBHOOK_SECRET="test-webhook-secret",  # callback_url is refused without it
        WEBHOOK_ALLOWED_NETWORKS=LOOPBACK_NETWORKS,  # the client's tests name a webhook receiver on this machine
    )
    return api_and_worker(env, folder, templates)


def relay_env(postgres_url: str, broker: str, redis_prefix: str, relay_port: int, **extra: str) -> dict[str, str]:
    """The environment of a test stack: its own queue and key prefix on the machine's servers."""
    return {
        "DATABASE_URL": postgres_url,
        "CELERY_BROKER_URL": broker,
        "CELERY_BROKER_KEY_PREFIX": redis_prefix,
        "CELERY_QUEUE": f"email-service-test-{uuid.uuid4().hex[:12]}",
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(relay_port),
        "MAIL_DEFAULT_SENDER": "Service <service@example.org>",
        **extra,
    }


def wait_for(condition: Callable[[], Any], timeout: float = 30) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
