"""What every process command does before it runs: wait for the database, check the files its settings
name (and warn about settings that fall short), share a metrics directory, serve metrics, and listen for
the signal to stop; and what the operator's commands share: the database's sessions, refusals as errors."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.orm import Session, sessionmaker

from email_service.config import Settings
from email_service.errors import ConfigurationError, DatabaseNotReady
from email_service.logs import configure_logging

if TYPE_CHECKING:  # the service loads only in the commands that run it, so `send` and `keys` start fast
    from email_service.bootstrap import Process


def database_ready(settings: Settings, *, migrate: bool) -> None:
    """Wait up to DB_WAIT_SECONDS for the database (containers start together), then migrate it or,
    without ``migrate``, wait for its schema; logging is set up on the way."""
    from email_service.storage.migrate import upgrade_when_reachable, wait_for_schema

    configure_logging(settings)
    try:
        if migrate:
            upgrade_when_reachable(settings.database_url, settings.db_wait_seconds)
        else:
            wait_for_schema(settings.database_url, settings.db_wait_seconds)
    except DatabaseNotReady as exc:
        raise click.ClickException(str(exc)) from None


def check_setting_files(settings: Settings) -> None:
    """Load what the settings name on disk now (the DKIM key), so that a bad file stops the command
    with its reason instead of every process it would start; warn about settings that work but fall short."""
    from email_service.bootstrap import dkim_signer

    try:
        dkim_signer(settings)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    warn_about_plain_public_url(settings)


def warn_about_plain_public_url(settings: Settings) -> None:
    """Unsubscribe links over plain http lose their one-click header (RFC 8058 section 3.1): say so."""
    from email_service.message.unsubscribe import allows_one_click

    if not allows_one_click(settings.public_url):
        click.echo(
            f"warning: PUBLIC_URL {settings.public_url} is not https: messages carry List-Unsubscribe "
            "without List-Unsubscribe-Post (one-click), which mailbox providers want from bulk senders",
            err=True,
        )


def process_for(settings: Settings) -> Process:
    """The services and Celery app of this process; a setting that cannot be used stops the command."""
    from email_service.bootstrap import build_process

    try:
        return build_process(settings)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def database_sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on DATABASE_URL over one connection, for the commands that only read or write rows."""
    from email_service.storage.database import make_engine, make_session_factory

    engine = make_engine(settings.database_url, pool_size=1)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@contextmanager
def refusals() -> Iterator[None]:
    """The service's refusals (a name taken, an account unknown...) as the command's error message."""
    from email_service.errors import RequestError

    try:
        yield
    except RequestError as exc:
        reason = f": {exc.details[0]['reason']}" if exc.details else ""
        raise click.ClickException(f"{exc.message}{reason}") from None


def share_metrics_directory(settings: Settings, role: str) -> Path | None:
    from email_service.runtime import metrics_export

    try:
        return metrics_export.share_directory(settings.data_dir, role)
    except OSError as exc:
        raise click.ClickException(
            f"cannot create the metrics directory under DATA_DIR {settings.data_dir}: {exc.strerror or exc}"
        ) from None


def serve_metrics(host: str, port: int) -> None:
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


def termination_event() -> threading.Event:
    """An event set by SIGINT or SIGTERM."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop
