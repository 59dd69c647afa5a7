"""``email-service dev``: the embedded default, each part a supervised child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

from .storage.migrate import upgrade

STOP_GRACE_SECONDS = 15


def run_dev(*, host: str, port: int, smtp_port: int, data_dir: Path) -> int:
    """Start catcher, worker and API; stop them all on Ctrl-C, SIGTERM or when one dies. Exit code."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = _dev_environment(data_dir, smtp_port)
    upgrade(env["DATABASE_URL"])

    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    commands = {
        "catcher": ["catcher", "--host", "127.0.0.1", "--port", str(smtp_port), "--maildir", str(data_dir / "mail")],
        "worker": ["worker", "--concurrency", "2"],
        "api": ["serve", "--host", host, "--port", str(port), "--workers", "2"],
    }
    for name, args in commands.items():
        child_env = {**env, "LOG_PATH": str(data_dir / "logs" / f"{name}.log")}
        # Own session: Ctrl-C reaches only this supervisor, which then stops children in order.
        process = subprocess.Popen(
            [sys.executable, "-m", "email_service", *args], env=child_env, start_new_session=True
        )
        children.append((name, process))

    base = f"http://{host}:{port}"
    click.echo(
        "\nemail_service is running on its embedded default:\n"
        f"  API           {base}/api/email/\n"
        f"  Swagger UI    {base}/api/\n"
        f"  OpenAPI spec  {base}/api/openapi.json\n"
        f"  SMTP catcher  127.0.0.1:{smtp_port}, messages in {data_dir / 'mail' / 'new'}\n"
        f"  data          {data_dir} (SQLite, broker, logs)\n"
        "Press Ctrl-C to stop.\n",
        err=True,
    )
    exit_code = 0
    while not stopping:
        for name, process in children:
            if process.poll() is not None:
                click.echo(f"{name} exited with status {process.returncode}; stopping", err=True)
                exit_code = 1
                stopping = True
        time.sleep(0.2)
    _stop_children(children)
    return exit_code


def _dev_environment(data_dir: Path, smtp_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DATA_DIR": str(data_dir),
            "CELERY_BROKER_URL": "filesystem://",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(smtp_port),
            "MAIL_USE_TLS": "false",
            "MAIL_USE_SSL": "false",
        }
    )
    env.setdefault("DATABASE_URL", f"sqlite:///{data_dir / 'email_service.db'}")
    return env


def _stop_children(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    # API first (no new jobs), then the worker (finishes its task), the catcher last.
    for _, process in reversed(children):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for name, process in reversed(children):
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            click.echo(f"{name} did not stop in {STOP_GRACE_SECONDS}s; killing it", err=True)
            process.kill()
            process.wait()
