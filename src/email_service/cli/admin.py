"""The operator's commands on the database: db upgrade, keys (create, list, revoke) and cleanup. They
need only the database, never the broker, the relay or the rest of the service."""

from __future__ import annotations

import re
from datetime import timedelta

import click

from email_service.cli.startup import database_ready, database_sessions
from email_service.config import Settings
from email_service.logs import configure_logging


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of DATABASE_URL, once the database answers (DB_WAIT_SECONDS)."""
    database_ready(Settings(), migrate=True)
    click.echo("database is up to date")


@click.group()
def keys() -> None:
    """API keys: create (shown once), list, revoke."""


@keys.command("create")
@click.argument("name")
@click.option("--sender", "senders", multiple=True, help="A From address the key may use besides MAIL_DEFAULT_SENDER.")
def keys_create(name: str, senders: tuple[str, ...]) -> None:
    """Create a key named NAME and print it: it is shown this once, only its SHA-256 is kept.

    The first command of a new deployment: it migrates the database, as `serve` does."""
    from email_service.errors import ValidationFailed
    from email_service.services import auth

    settings = Settings()
    database_ready(settings, migrate=True)
    try:
        with database_sessions(settings) as sessions:
            info, key = auth.create_key(sessions, name, senders)
    except ValidationFailed as exc:
        raise click.ClickException(f"{exc.message}: {exc.details[0]['reason']}") from None
    click.echo(key)
    click.echo(f"key {info.id} ({info.name}) created; store it now, it cannot be shown again", err=True)


@keys.command("list")
def keys_list() -> None:
    """Every key: id, name, first characters, creation and revocation times."""
    from email_service.services import auth

    with database_sessions(Settings()) as sessions:
        found = auth.list_keys(sessions)
    for info in found:
        revoked = f"revoked {info.revoked_at.isoformat()}" if info.revoked_at else "active"
        senders = f"  senders {','.join(info.senders)}" if info.senders else ""
        click.echo(f"{info.id}  {info.name}  {info.prefix}…  created {info.created_at.isoformat()}  {revoked}{senders}")


@keys.command("revoke")
@click.argument("id_or_name")
def keys_revoke(id_or_name: str) -> None:
    """Revoke the key with this id (or every active key with this name): it stops working at once."""
    from email_service.errors import NotFound
    from email_service.services import auth

    try:
        with database_sessions(Settings()) as sessions:
            count = auth.revoke_key(sessions, id_or_name)
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"{count} key(s) revoked", err=True)


@click.command()
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
    from email_service.storage.models import utcnow

    settings = Settings()
    configure_logging(settings)
    cutoff = utcnow() - age
    with database_sessions(settings) as sessions:
        counts = count_finished_jobs(sessions, cutoff) if dry_run else delete_finished_jobs(sessions, cutoff)
    verb = "would delete" if dry_run else "deleted"
    details = ", ".join(f"{count} {table.replace('_', ' ')}" for table, count in counts.items() if table != "jobs")
    click.echo(f"{verb} {counts['jobs']} job(s) finished before {cutoff.isoformat(timespec='seconds')}: {details}")


def _parse_age(value: str) -> timedelta:
    match = re.fullmatch(r"([0-9]+)([dh])", value.strip())
    if not match or int(match.group(1)) == 0:
        raise click.BadParameter(f"{value!r} is not an age like 30d (days) or 12h (hours)")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(days=number) if unit == "d" else timedelta(hours=number)


COMMANDS = [db, keys, cleanup]
