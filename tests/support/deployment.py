"""The production topology on this machine, without Docker: Debian's nginx running the project's own server
block, in front of gunicorn on a unix socket, worker processes, the scheduler, a database of its own on the
machine's PostgreSQL and a key prefix of its own on its Redis, sending to the caller's SMTP relay.
tests/integration/deployment/test_deployment.py and bench/load.py both start it from here."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from email_service.services import auth, build_services
from tests.support import REPOSITORY
from tests.support.servers import REDIS_URL, own_database, own_redis_prefix
from tests.support.smtp_sink import free_port
from tests.support.stack import (
    ApiClient,
    GunicornApi,
    LoggedProcess,
    SchedulerProcess,
    WorkerProcess,
    relay_env,
    settings_from,
)

NGINX = Path("/usr/sbin/nginx")  # Debian's nginx (`make test` installs it)
SERVER_BLOCK = REPOSITORY / "deploy" / "nginx" / "email-service.conf"
# What the tests replace in SERVER_BLOCK: the port it listens on, and the socket it shares with gunicorn.
PRODUCTION_LISTEN = "listen 80;"
PRODUCTION_SOCKET = "unix:/run/email-service/api.sock"

# The few main-context directives a standalone nginx needs, everything under the test's folder; the
# Debian package's own /etc/nginx is not read. Workers run as root (when the test does) because the
# socket is in the test's private temp folder.
MAIN_CONFIG = """\
pid {folder}/nginx.pid;
error_log {folder}/nginx-error.log warn;
user root;
worker_processes auto;
events {{
    worker_connections 1024;
}}
http {{
    access_log {folder}/nginx-access.log;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {folder}/email-service.conf;
}}
"""


def server_block(port: int, api_socket: Path) -> str:
    """The project's server block, listening on 127.0.0.1:``port`` and proxying to ``api_socket``."""
    text = SERVER_BLOCK.read_text()
    for production, here in (
        (PRODUCTION_LISTEN, f"listen 127.0.0.1:{port};"),
        (PRODUCTION_SOCKET, f"unix:{api_socket}"),
    ):
        if text.count(production) != 1:
            raise AssertionError(f"{SERVER_BLOCK} should hold {production!r} exactly once")
        text = text.replace(production, here)
    return text


class NginxProcess(LoggedProcess):
    """nginx in the foreground with a configuration of its own in ``folder``, on 127.0.0.1 and a free port."""

    def __init__(self, folder: Path, api_socket: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (folder / "email-service.conf").write_text(server_block(self.port, api_socket))
        (folder / "nginx.conf").write_text(MAIN_CONFIG.format(folder=folder))
        command = [str(NGINX), "-p", str(folder), "-e", "stderr", "-c", str(folder / "nginx.conf"), "-g", "daemon off;"]
        super().__init__(command, {}, folder / "nginx.log")

    def wait_ready(self, timeout: float = 10) -> Self:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            self.check_running(deadline, timeout)
            time.sleep(0.05)


@dataclass
class Topology:
    """The running topology; ``api`` calls the API through nginx with an API key."""

    api: ApiClient
    api_key: str
    env: dict[str, str]
    folder: Path
    nginx: NginxProcess
    gunicorn: GunicornApi
    worker: WorkerProcess
    scheduler: SchedulerProcess


@contextlib.contextmanager
def production_topology(
    folder: Path, relay_port: int, *, worker_processes: int = 2, api_workers: int = 2, **settings: str
) -> Iterator[Topology]:
    """Start the whole topology (``settings`` add environment variables), wait until every part is ready,
    and stop and remove all of it on exit."""
    with contextlib.ExitStack() as stack:
        postgres_url = stack.enter_context(own_database())
        redis_prefix = stack.enter_context(own_redis_prefix())
        env = relay_env(
            postgres_url, REDIS_URL, redis_prefix, relay_port, PROXY_HOPS="1", DATA_DIR=str(folder / "data"), **settings
        )
        services = build_services(settings_from(env))
        api_key = auth.create_key(services.sessions, services.settings, "deployment")[
            1
        ]  # `serve` refuses to start without one
        services.engine.dispose()
        api_socket = folder / "api.sock"
        # Started together, then waited for: the Python processes take a few seconds each to import.
        gunicorn = GunicornApi(env, folder / "gunicorn.log", api_workers, socket=api_socket)
        stack.callback(gunicorn.stop)
        worker = WorkerProcess(env, folder / "worker.log", worker_processes)
        stack.callback(worker.stop)
        scheduler = SchedulerProcess(env, folder / "scheduler.log")
        stack.callback(scheduler.stop)
        nginx = NginxProcess(folder / "nginx", api_socket)
        stack.callback(nginx.stop)
        for process in (nginx, gunicorn, worker, scheduler):
            process.wait_ready()
        api = ApiClient(nginx.url, {"Authorization": f"Bearer {api_key}"})
        stack.callback(api.close)
        yield Topology(api, api_key, env, folder, nginx, gunicorn, worker, scheduler)
