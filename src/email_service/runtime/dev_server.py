"""``email-service dev``: the embedded default, each part a supervised child process."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click

from email_service.runtime import metrics_export
from email_service.runtime.supervisor import Child, supervise
from email_service.storage.migrate import upgrade

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # every address of this machine: links name it localhost


def run_dev(*, host: str, port: int, smtp_port: int, data_dir: Path) -> int:
    """Start catcher, worker, scheduler and API; stop them all on Ctrl-C or SIGTERM. Exit code."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # One metrics directory for all: the API's /metrics shows the worker's and the scheduler's figures too.
    metrics = metrics_export.share_directory(data_dir, "dev")
    env = dev_environment(data_dir, host=host, port=port, smtp_port=smtp_port)
    # On this machine only, the API runs without keys; reachable from elsewhere, it needs them.
    keys_off = host in LOOPBACK_HOSTS
    if keys_off:
        env.setdefault("AUTH_DISABLED", "true")
        env.setdefault("DASHBOARD_COOKIE_SECURE", "false")  # plain HTTP on this machine
    upgrade(env["DATABASE_URL"])
    commands = {
        "catcher": ["catcher", "--host", "127.0.0.1", "--port", str(smtp_port), "--maildir", str(data_dir / "mail")],
        "worker": ["worker", "--processes", "1"],
        "scheduler": ["scheduler"],
        "api": ["serve", "--host", host, "--port", str(port), "--workers", "2"],
    }
    children = [
        Child(name, args, {**env, "LOG_PATH": str(data_dir / "logs" / f"{name}.log")})
        for name, args in commands.items()
    ]
    base = f"http://{_url_host(host)}:{port}"
    click.echo(
        "\nemail_service is running on its embedded default:\n"
        f"  dashboard     {base}/dashboard/\n"
        f"  API           {base}/api/email/\n"
        f"  Swagger UI    {base}/api/\n"
        f"  OpenAPI spec  {base}/api/openapi.json\n"
        f"  metrics       {base}/metrics (API, worker and scheduler), readiness {base}/readyz\n"
        f"  SMTP catcher  127.0.0.1:{smtp_port}, messages in {data_dir / 'mail' / 'new'}\n"
        f"  data          {data_dir} (SQLite, broker, logs)\n"
        + (
            "  API keys      OFF: the API listens on this machine only (AUTH_DISABLED)\n"
            if keys_off
            else "  API keys      required: create one with `email-service keys create NAME`\n"
        )
        + "Press Ctrl-C to stop.\n",
        err=True,
    )
    code = supervise(children, own_sessions=True)
    metrics_export.remove_directory(metrics)
    return code


def dev_environment(data_dir: Path, *, host: str, port: int, smtp_port: int) -> dict[str, str]:
    """The environment of dev's processes: this process's, with the embedded servers, and the API's own
    address as the links' PUBLIC_URL and its only host names (unless the environment names others)."""
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
    env.setdefault("DASHBOARD_SECRET", _dashboard_secret(data_dir))
    env.setdefault("PUBLIC_URL", f"http://{_url_host(host)}:{port}")
    # A page of another site whose name now points at this machine (DNS rebinding) still sends its own name.
    env.setdefault("ALLOWED_HOSTS", ",".join(["localhost", "127.0.0.1", "[::1]", host]))
    return env


def _url_host(host: str) -> str:
    """``host`` as a URL writes it: IPv6 in brackets, a wildcard address as localhost."""
    if host in WILDCARD_HOSTS:
        return "localhost"
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _dashboard_secret(data_dir: Path) -> str:
    """The key of the dashboard's cookies, made once per data folder so logins outlive a restart."""
    path = data_dir / "dashboard_secret"
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()
