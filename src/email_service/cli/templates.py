"""The operator's commands on the shared templates (every account uses them; accounts change only their own,
through the API): list, put (a new version) and delete. They need only the database and the templates
folders, never the broker, the relay or the rest of the service."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

import click

from email_service.cli.startup import database_ready, database_sessions, refusals
from email_service.config import Settings

if TYPE_CHECKING:
    from email_service.services.templates import DatabaseAccess, TemplateRecord


@click.group()
def templates() -> None:
    """Shared templates: every account uses them unless it has its own of the same name."""


@templates.command("list")
@click.option("--account", help="What this account (id or name) uses instead: its own templates first.")
def templates_list(account: str | None) -> None:
    """The shared templates and the template files, each at its current version: name, kind, version,
    creation time, subject."""
    from email_service.services import accounts
    from email_service.services import templates as service

    with refusals(), _access(Settings()) as access:
        account_id = accounts.get(access.sessions, account).id if account is not None else None
        records = service.list_all(access, account=account_id)
    for record in records:
        click.echo(_line(record))


@templates.command("put")
@click.argument("name")
@click.option("--subject", help="Subject line (a Jinja template); the job's subject when absent.")
@click.option("--text", "text", type=click.File(encoding="utf-8"), help="File of the plain-text body.")
@click.option("--html", "html", type=click.File(encoding="utf-8"), help="File of the HTML body.")
@click.option(
    "--eml", "eml", type=click.File(encoding="utf-8"), help="An .eml source, alone: headers, blank line, body."
)
def templates_put(
    name: str, subject: str | None, text: IO[str] | None, html: IO[str] | None, eml: IO[str] | None
) -> None:
    """Store a new version of the shared template NAME (creating it), checked as the API checks templates.
    Jobs accepted before keep the version they were accepted with."""
    from email_service.services import templates as service

    fields = service.TemplateFields(subject=subject, text=_read(text), html=_read(html), eml=_read(eml))
    settings = Settings()
    database_ready(settings, migrate=True)
    with refusals(), _access(settings) as access:
        record, created = service.update(access, name, fields, scope=None)
    verb = "created" if created else "changed"
    click.echo(f"shared template {name} {verb}: version {record.source.version}", err=True)


@templates.command("delete")
@click.argument("name")
def templates_delete(name: str) -> None:
    """Delete the shared template NAME: new jobs cannot use it; jobs accepted with it still send."""
    from email_service.services import templates as service

    with refusals(), _access(Settings()) as access:
        service.delete(access, name, scope=None)
    click.echo(f"shared template {name} deleted", err=True)


@contextmanager
def _access(settings: Settings) -> Iterator[DatabaseAccess]:
    from email_service.message.rendering import TemplateRenderer
    from email_service.services.templates import DatabaseAccess

    with database_sessions(settings) as sessions:
        yield DatabaseAccess(sessions, TemplateRenderer(settings.templates_dir))


def _read(source: IO[str] | None) -> str | None:
    return source.read() if source is not None else None


def _line(record: TemplateRecord) -> str:
    source = record.source
    kind = "file" if source.origin == "file" else "shared" if record.shared else "own"
    created = record.created_at.isoformat(timespec="seconds") if record.created_at else "-"
    return f"{source.name}  {kind}  {source.version or '-'}  {created}  {source.subject or ''}"


COMMANDS = [templates]
