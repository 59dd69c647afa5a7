"""The ``email-service`` command: the service's processes (dev, serve, worker, scheduler, catcher), db, keys,
cleanup, and send (a client of the API)."""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path

import click

from email_service.cli.send import send
from email_service.config import Settings
from email_service.logs import configure_logging


@click.group()
def main() -> None:
    """Self-hosted bulk email service."""


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of DATABASE_URL, once the database answers (DB_WAIT_SECONDS)."""
    _database_ready(Settings(), migrate=True)
    click.echo("database is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes.")
@click.option("--bind", default=None, help="gunicorn bind address instead of host:port (e.g. unix:/run/api.sock).")
def serve(host: str, port: int, workers: int, bind: str | None) -> None:
    """Run the HTTP API under gunicorn, configured by the environment; migrate the database first."""
    from email_service.services import auth, build_services

    settings = Settings()
    _database_ready(settings, migrate=True)
    if not settings.auth_disabled and not auth.has_active_keys(build_services(settings)):
        raise click.ClickException(
            "no API key exists: create one with `email-service keys create NAME`, "
            "or set AUTH_DISABLED=true to serve without keys (never on a reachable host)"
        )
    address = bind or f"{host}:{port}"
    _share_metrics_directory(settings, "api")  # one /metrics for all gunicorn workers
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", address,
        "--workers", str(workers),
        "--access-logfile", "-",
        "--logger-class", "email_service.runtime.access_log.MaskingAccessLogger",
        "--config", "python:email_service.runtime.gunicorn_hooks",
        "email_service.app:create_app()",
    ]  # fmt: skip
    os.execv(sys.executable, argv)


@main.group()
def keys() -> None:
    """API keys: create (shown once), list, revoke."""


@keys.command("create")
@click.argument("name")
@click.option("--sender", "senders", multiple=True, help="A From address the key may use besides MAIL_DEFAULT_SENDER.")
def keys_create(name: str, senders: tuple[str, ...]) -> None:
    """Create a key named NAME and print it: it is shown this once, only its SHA-256 is kept.

    The first command of a new deployment: it migrates the database, as `serve` does."""
    from email_service.errors import ValidationFailed
    from email_service.services import auth, build_services

    settings = Settings()
    _database_ready(settings, migrate=True)
    try:
        info, key = auth.create_key(build_services(settings), name, senders)
    except ValidationFailed as exc:
        raise click.ClickException(f"{exc.message}: {exc.details[0]['reason']}") from None
    click.echo(key)
    click.echo(f"key {info.id} ({info.name}) created; store it now, it cannot be shown again", err=True)


@keys.command("list")
def keys_list() -> None:
    """Every key: id, name, first characters, creation and revocation times."""
    from email_service.services import auth, build_services

    for info in auth.list_keys(build_services(Settings())):
        revoked = f"revoked {info.revoked_at.isoformat()}" if info.revoked_at else "active"
        senders = f"  senders {','.join(info.senders)}" if info.senders else ""
        click.echo(f"{info.id}  {info.name}  {info.prefix}…  created {info.created_at.isoformat()}  {revoked}{senders}")


@keys.command("revoke")
@click.argument("id_or_name")
def keys_revoke(id_or_name: str) -> None:
    """Revoke the key with this id (or every active key with this name): it stops working at once."""
    from email_service.errors import NotFound
    from email_service.services import auth, build_services

    try:
        count = auth.revoke_key(build_services(Settings()), id_or_name)
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{count} key(s) revoked", err=True)


@main.command()
@click.option("--processes", type=int, default=None, help="Worker processes (default WORKER_PROCESSES: one per core).")
def worker(processes: int | None) -> None:
    """Run the Celery workers that send the queued batches, SMTP_CONCURRENCY connections each."""
    from email_service.runtime import cpu_priority, metrics_export
    from email_service.runtime.supervisor import Child, supervise

    settings = Settings()
    _database_ready(settings, migrate=False)
    cpu_priority.lower(settings.worker_nice)  # the children inherit it
    count = processes or settings.worker_processes
    folder = _share_metrics_directory(settings, "worker")  # before the children start
    _serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    children = [Child(f"worker {i + 1}", ["worker-process"], dict(os.environ)) for i in range(count)]
    code = supervise(children, on_exit=metrics_export.process_ended)
    metrics_export.remove_directory(folder)
    sys.exit(code)


@main.command("worker-process", hidden=True)
def worker_process() -> None:
    """One Celery worker with a pool of SMTP_CONCURRENCY threads (run by `worker`)."""
    from email_service.services import build_services
    from email_service.worker.celery_app import make_celery

    settings = Settings()
    configure_logging(settings)
    celery = make_celery(build_services(settings))
    celery.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            f"--queues={settings.celery_queue}",
            f"--hostname=email-service-{os.getpid()}@%h",
            "--pool=threads",
            f"--concurrency={settings.smtp_concurrency}",
            "--without-mingle",
            "--without-gossip",
        ]
    )


@main.command()
def scheduler() -> None:
    """Queue again what the broker lost or a worker dropped, and retries that are due."""
    from email_service.services import build_services
    from email_service.services.sweep import sweep
    from email_service.worker.celery_app import make_celery

    settings = Settings()
    _database_ready(settings, migrate=False)
    services = build_services(settings)
    make_celery(services)
    _serve_metrics(settings.metrics_host, settings.scheduler_metrics_port)
    stop = _termination_event()
    click.echo(f"scheduler sweeping every {settings.scheduler_interval}s", err=True)
    while not stop.is_set():
        try:
            sweep(services)
        except Exception:  # a database or broker outage: log it and sweep again next time
            logging.getLogger(__name__).exception("sweep failed")
        stop.wait(settings.scheduler_interval)


@main.command()
@click.option(
    "--older-than",
    "age",
    required=True,
    metavar="AGE",
    callback=lambda _ctx, _param, value: _parse_age(value),
    help="Delete jobs that finished more than AGE ago: days or hours, e.g. 30d or 12h.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def cleanup(age: timedelta, dry_run: bool) -> None:
    """Delete finished jobs older than AGE with their recipients, attachments and webhook events.

    Jobs still scheduled, queued, sending or paused, and finished ones with webhook events or failure
    reports still to deliver, are kept. Rows go a few thousand per transaction, so it can run beside the service.
    """
    from email_service.services.retention import count_finished_jobs, delete_finished_jobs
    from email_service.storage.database import make_engine, make_session_factory
    from email_service.storage.models import utcnow

    settings = Settings()
    configure_logging(settings)
    cutoff = utcnow() - age
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        sessions = make_session_factory(engine)
        counts = count_finished_jobs(sessions, cutoff) if dry_run else delete_finished_jobs(sessions, cutoff)
    finally:
        engine.dispose()
    verb = "would delete" if dry_run else "deleted"
    details = ", ".join(f"{count} {table.replace('_', ' ')}" for table, count in counts.items() if table != "jobs")
    click.echo(f"{verb} {counts['jobs']} job(s) finished before {cutoff.isoformat(timespec='seconds')}: {details}")


def _parse_age(value: str) -> timedelta:
    match = re.fullmatch(r"([0-9]+)([dh])", value.strip())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"{value!r} is not an age like 30d (days) or 12h (hours)")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(days=number) if unit == "d" else timedelta(hours=number)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=1025, show_default=True, type=int)
@click.option("--maildir", default="var/mail", show_default=True, type=click.Path(path_type=Path))
def catcher(host: str, port: int, maildir: Path) -> None:
    """Run a local SMTP server that keeps every message in a Maildir."""
    from email_service.runtime.catcher import start_catcher

    configure_logging(Settings())
    controller = start_catcher(host, port, maildir)
    click.echo(f"SMTP catcher on {host}:{port}, messages in {maildir.resolve()}/new", err=True)
    _termination_event().wait()
    controller.stop()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--smtp-port", default=1025, show_default=True, type=int)
@click.option("--data-dir", default="var", show_default=True, type=click.Path(path_type=Path))
def dev(host: str, port: int, smtp_port: int, data_dir: Path) -> None:
    """Everything on this machine: API, worker, scheduler and SMTP catcher, on SQLite and a filesystem broker."""
    from email_service.runtime.dev_server import run_dev

    sys.exit(run_dev(host=host, port=port, smtp_port=smtp_port, data_dir=data_dir))


def _share_metrics_directory(settings: Settings, role: str) -> Path | None:
    from email_service.runtime import metrics_export

    try:
        return metrics_export.share_directory(settings.data_dir, role)
    except OSError as exc:
        raise click.ClickException(
            f"cannot create the metrics directory under DATA_DIR {settings.data_dir}: {exc.strerror or exc}"
        ) from None


def _serve_metrics(host: str, port: int) -> None:
    """Serve this process's metrics (those of every process of its metrics directory) on host:port, if
    a port is set, from a thread."""
    if not port:
        return
    from prometheus_client import start_http_server

    from email_service.runtime import metrics_export

    try:
        start_http_server(port, addr=host, registry=metrics_export.registry())
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"metrics on http://{host}:{port}/metrics", err=True)


def _database_ready(settings: Settings, *, migrate: bool) -> None:
    """Wait up to DB_WAIT_SECONDS for the database (containers start together), then migrate it or,
    without ``migrate``, wait for its schema; logging is set up on the way."""
    from email_service.storage.migrate import DatabaseNotReady, upgrade_when_reachable, wait_for_schema

    configure_logging(settings)
    try:
        if migrate:
            upgrade_when_reachable(settings.database_url, settings.db_wait_seconds)
        else:
            wait_for_schema(settings.database_url, settings.db_wait_seconds)
    except DatabaseNotReady as exc:
        raise click.ClickException(str(exc)) from None


def _termination_event() -> threading.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


main.add_command(send)
