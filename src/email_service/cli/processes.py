"""The commands that run the service's processes: serve (the API under gunicorn), worker, scheduler,
bounces and bounce-mailbox (bounce reports in), catcher, and dev (all of them on this machine)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from email_service.cli.startup import (
    check_setting_files,
    database_ready,
    database_sessions,
    process_for,
    serve_metrics,
    share_metrics_directory,
    termination_event,
)
from email_service.config import Settings
from email_service.logs import configure_logging


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=int, help="Request threads per worker process.")
@click.option("--bind", default=None, help="gunicorn bind address instead of host:port (e.g. unix:/run/api.sock).")
def serve(host: str, port: int, workers: int, threads: int, bind: str | None) -> None:
    """Run the HTTP API under gunicorn, configured by the environment; migrate the database first."""
    from email_service.services import accounts, auth

    settings = Settings()
    check_setting_files(settings)  # before waiting for the database: a bad file is known at once
    database_ready(settings, migrate=True)
    if not settings.auth_disabled:
        with database_sessions(settings) as sessions:
            has_keys = auth.has_active_keys(sessions)
            sharing = [info.name for info in accounts.list_all(sessions) if not info.own_webhook_secret]
        if not has_keys:
            raise click.ClickException(
                "no API key exists: create one with `email-service keys create NAME`, "
                "or set AUTH_DISABLED=true to serve without keys (never on a reachable host)"
            )
        if sharing:
            click.echo(
                f"warning: {len(sharing)} account(s) still sign their webhook events with WEBHOOK_SECRET, which "
                f"lets each forge the others' events ({', '.join(sharing[:5])}{', …' if len(sharing) > 5 else ''}): "
                "give each its own with `email-service accounts rotate-secret NAME --grace 7d`",
                err=True,
            )
    address = bind or f"{host}:{port}"
    share_metrics_directory(settings, "api")  # one /metrics for all gunicorn workers
    argv = [
        sys.executable, "-m", "gunicorn",
        "--bind", address,
        "--workers", str(workers),
        "--threads", str(threads),
        "--access-logfile", "-",
        "--logger-class", "email_service.runtime.access_log.MaskingAccessLogger",
        "--config", "python:email_service.runtime.gunicorn_hooks",
        "email_service.app:create_app()",
    ]  # fmt: skip
    os.execv(sys.executable, argv)


@click.command()
@click.option("--processes", type=int, default=None, help="Worker processes (default WORKER_PROCESSES: one per core).")
def worker(processes: int | None) -> None:
    """Run the Celery workers that send the queued batches, SMTP_CONCURRENCY connections each."""
    from email_service.runtime import cpu_priority, metrics_export
    from email_service.runtime.supervisor import Child, supervise

    settings = Settings()
    check_setting_files(settings)
    database_ready(settings, migrate=False)
    cpu_priority.lower(settings.worker_nice)  # the children inherit it
    count = processes or settings.worker_processes
    folder = share_metrics_directory(settings, "worker")  # before the children start
    serve_metrics(settings.metrics_host, settings.worker_metrics_port)
    env = dict(os.environ, WORKER_PROCESSES=str(count))  # each knows its host's threads (services.dispatch)
    children = [Child(f"worker {i + 1}", ["worker-process"], env) for i in range(count)]
    code = supervise(children, on_exit=metrics_export.process_ended)
    metrics_export.remove_directory(folder)
    sys.exit(code)


@click.command("worker-process", hidden=True)
def worker_process() -> None:
    """One Celery worker with a pool of SMTP_CONCURRENCY threads (run by `worker`)."""
    settings = Settings()
    configure_logging(settings)
    process_for(settings).celery.worker_main(
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


@click.command()
def scheduler() -> None:
    """Queue again what the broker lost or a worker dropped, and retries that are due."""
    from email_service.services.sweep import sweep

    settings = Settings()
    database_ready(settings, migrate=False)
    services = process_for(settings).services
    serve_metrics(settings.metrics_host, settings.scheduler_metrics_port)
    stop = termination_event()
    click.echo(f"scheduler sweeping every {settings.scheduler_interval}s", err=True)
    while not stop.is_set():
        try:
            sweep(services)
        except Exception:  # a database or broker outage: log it and sweep again next time
            logging.getLogger(__name__).exception("sweep failed")
        stop.wait(settings.scheduler_interval)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=1025, show_default=True, type=int)
@click.option("--maildir", default="var/mail", show_default=True, type=click.Path(path_type=Path))
def catcher(host: str, port: int, maildir: Path) -> None:
    """Run a local SMTP server that keeps every message in a Maildir."""
    from email_service.runtime.catcher import start_catcher

    configure_logging(Settings())
    controller = start_catcher(host, port, maildir)
    click.echo(f"SMTP catcher on {host}:{port}, messages in {maildir.resolve()}/new", err=True)
    termination_event().wait()
    controller.stop()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 behind the MX).")
@click.option("--port", default=2525, show_default=True, type=int)
def bounces(host: str, port: int) -> None:
    """Receive the bounces and complaints mailed to BOUNCE_DOMAIN (its MX points here) and record them."""
    from email_service.runtime.bounce_receiver import start_bounce_receiver

    settings = Settings()
    if not settings.bounce_domain:
        raise click.ClickException("`email-service bounces` needs BOUNCE_DOMAIN (and BOUNCE_SECRET)")
    database_ready(settings, migrate=False)
    controller = start_bounce_receiver(process_for(settings).services, host, port)
    click.echo(f"bounce receiver for @{settings.bounce_domain} on {host}:{port}", err=True)
    termination_event().wait()
    controller.stop()


@click.command("bounce-mailbox")
def bounce_mailbox() -> None:
    """Read the bounces and complaints that arrive in the IMAP mailbox BOUNCE_IMAP_URL, every BOUNCE_IMAP_INTERVAL."""
    from email_service.errors import ConfigurationError
    from email_service.runtime.bounce_mailbox import MailboxAddress, run_poller

    settings = Settings()
    url = settings.bounce_imap_url.get_secret_value()
    if not url:
        raise click.ClickException("`email-service bounce-mailbox` needs BOUNCE_IMAP_URL")
    try:
        address = MailboxAddress.parse(url)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    database_ready(settings, migrate=False)
    click.echo(
        f"reading {address.mailbox} at {address.host}:{address.port} every {settings.bounce_imap_interval:g}s", err=True
    )
    run_poller(process_for(settings).services, address, settings.bounce_imap_interval, termination_event())


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--smtp-port", default=1025, show_default=True, type=int)
@click.option("--data-dir", default="var", show_default=True, type=click.Path(path_type=Path))
def dev(host: str, port: int, smtp_port: int, data_dir: Path) -> None:
    """Everything on this machine: API, worker, scheduler and SMTP catcher, on SQLite and a filesystem broker."""
    from email_service.runtime.dev_server import run_dev

    sys.exit(run_dev(host=host, port=port, smtp_port=smtp_port, data_dir=data_dir))


COMMANDS = [serve, worker, worker_process, scheduler, bounces, bounce_mailbox, catcher, dev]
