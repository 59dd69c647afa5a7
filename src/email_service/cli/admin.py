"""The operator's commands on the database: db upgrade, accounts, keys (create, list, revoke) and cleanup. They
need only the database, never the broker, the relay or the rest of the service."""

from __future__ import annotations

import re
from datetime import timedelta

import click

from email_service.cli.startup import database_ready, database_sessions, refusals
from email_service.config import Settings
from email_service.logs import configure_logging
from email_service.storage.models import Lane


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema of DATABASE_URL, once the database answers (DB_WAIT_SECONDS)."""
    database_ready(Settings(), migrate=True)
    click.echo("database is up to date")


LANES = [lane.value for lane in Lane]
BY_SIZE = "size"


@click.group()
def accounts() -> None:
    """Accounts: the calling services, each owning its keys, jobs, templates, suppressions and webhook secret."""


@accounts.command("create")
@click.argument("name")
@click.option("--sender", "senders", multiple=True, help="A From address its keys may use besides MAIL_DEFAULT_SENDER.")
@click.option("--callback-url", help="Where the events of its jobs that name no callback_url go.")
@click.option("--lane", type=click.Choice(LANES), help="Lane of its jobs that name none (default: by their size).")
def accounts_create(name: str, senders: tuple[str, ...], callback_url: str | None, lane: str | None) -> None:
    """Create the account NAME and print its webhook signing secret: shown this once."""
    from email_service.services import accounts as service

    settings = Settings()
    database_ready(settings, migrate=True)
    with refusals(), database_sessions(settings) as sessions:
        info, secret = service.create(
            sessions, settings, name, senders=senders, callback_url=callback_url, lane=Lane(lane) if lane else None
        )
    click.echo(secret)
    click.echo(
        f"account {info.id} ({info.name}) created; the line above is its webhook signing secret, "
        "shown this once: `keys create NAME --account ACCOUNT` gives it keys",
        err=True,
    )


@accounts.command("list")
def accounts_list() -> None:
    """Every account: id, name, active keys, senders, callback URL, webhook secret, state."""
    from email_service.services import accounts as service

    with database_sessions(Settings()) as sessions:
        found = service.list_all(sessions)
    for info in found:
        state = f"disabled {info.disabled_at.isoformat()}" if info.disabled_at else "active"
        secret = "own webhook secret" if info.own_webhook_secret else "signs with WEBHOOK_SECRET (rotate-secret)"
        if info.previous_secret_until:
            secret += f", previous one until {info.previous_secret_until.isoformat()}"
        details = [f"{info.active_keys} key(s)", secret]
        if info.senders:
            details.append(f"senders {','.join(info.senders)}")
        if info.callback_url:
            details.append(f"callback {info.callback_url}")
        details.append(f"lane {info.lane or 'by size'}")
        click.echo(f"{info.id}  {info.name}  {state}  {'  '.join(details)}")


@accounts.command("configure")
@click.argument("account")
@click.option("--sender", "senders", multiple=True, help="A From address its keys may use (replaces the list).")
@click.option("--no-senders", is_flag=True, help="Only MAIL_DEFAULT_SENDER from now on.")
@click.option("--callback-url", help="Default callback URL of its jobs; '' removes it.")
@click.option(
    "--lane", type=click.Choice([*LANES, BY_SIZE]), help=f"Lane of its jobs that name none; {BY_SIZE}: by their size."
)
def accounts_configure(
    account: str, senders: tuple[str, ...], no_senders: bool, callback_url: str | None, lane: str | None
) -> None:
    """Change the allowed senders, the default callback URL or the default lane of ACCOUNT (id or name)."""
    from email_service.services import accounts as service

    settings = Settings()
    with refusals(), database_sessions(settings) as sessions:
        service.configure(
            sessions,
            settings,
            account,
            senders=senders or ([] if no_senders else None),
            callback_url=callback_url,
            lane=service.UNCHANGED if lane is None else (None if lane == BY_SIZE else Lane(lane)),
        )
    click.echo(f"account {account} changed", err=True)


@accounts.command("disable")
@click.argument("account")
def accounts_disable(account: str) -> None:
    """Disable ACCOUNT: its keys and dashboard sessions stop at once (its jobs already accepted go on)."""
    _set_disabled(account, True)


@accounts.command("enable")
@click.argument("account")
def accounts_enable(account: str) -> None:
    """Enable ACCOUNT again: its keys not revoked work again."""
    _set_disabled(account, False)


@accounts.command("rotate-secret")
@click.argument("account")
@click.option(
    "--grace",
    "grace",
    default="24h",
    show_default=True,
    metavar="AGE",
    callback=lambda _ctx, _param, value: _parse_age(value, zero=True),
    help="How long the old secret still signs beside the new one (days or hours: 7d, 12h; 0h: not at all).",
)
def accounts_rotate_secret(account: str, grace: timedelta) -> None:
    """Give ACCOUNT a new webhook signing secret and print it (shown this once). Events carry both signatures
    during the grace period: deploy the new secret to the receiver within it."""
    from email_service.services import accounts as service

    settings = Settings()
    with refusals(), database_sessions(settings) as sessions:
        secret = service.rotate_webhook_secret(sessions, settings, account, grace)
    click.echo(secret)
    click.echo(f"new webhook signing secret of {account}, shown this once", err=True)


def _set_disabled(account: str, disabled: bool) -> None:
    from email_service.services import accounts as service

    with refusals(), database_sessions(Settings()) as sessions:
        info = service.set_disabled(sessions, account, disabled)
    click.echo(f"account {info.name} {'disabled' if disabled else 'enabled'}", err=True)


@click.group()
def keys() -> None:
    """API keys of the accounts: create (shown once), list, revoke."""


@keys.command("create")
@click.argument("name")
@click.option("--account", help="The account (id or name) the key belongs to; a new account named NAME if absent.")
@click.option("--admin", is_flag=True, help="The admin role: also manages shared templates and suppressions.")
@click.option(
    "--sender", "senders", multiple=True, help="For a new account: a From address besides MAIL_DEFAULT_SENDER."
)
def keys_create(name: str, account: str | None, admin: bool, senders: tuple[str, ...]) -> None:
    """Create a key named NAME and print it: it is shown this once, only its SHA-256 is kept.

    A key is rotated by creating the next one of its account, deploying it, then revoking the old one: every
    job, template, sender and suppression belongs to the account, not the key. The first command of a new
    deployment: it migrates the database, as `serve` does."""
    from email_service.services import auth
    from email_service.storage.models import KeyRole

    settings = Settings()
    database_ready(settings, migrate=True)
    role = KeyRole.ADMIN if admin else KeyRole.ACCOUNT
    with refusals(), database_sessions(settings) as sessions:
        info, key, webhook_secret = auth.create_key(
            sessions, settings, name, account=account, role=role, senders=senders
        )
    click.echo(key)
    click.echo(
        f"key {info.id} ({info.name}, {info.role}) of account {info.account_name} created; "
        "store it now, it cannot be shown again",
        err=True,
    )
    if webhook_secret is not None:
        click.echo(
            f"account {info.account_name} created with it; its webhook signing secret, shown this once: "
            f"{webhook_secret}",
            err=True,
        )


@keys.command("list")
def keys_list() -> None:
    """Every key: id, name, account, role, first characters, creation and revocation times."""
    from email_service.services import auth

    with database_sessions(Settings()) as sessions:
        found = auth.list_keys(sessions)
    for info in found:
        revoked = f"revoked {info.revoked_at.isoformat()}" if info.revoked_at else "active"
        click.echo(
            f"{info.id}  {info.name}  account {info.account_name}  {info.role}  {info.prefix}…  "
            f"created {info.created_at.isoformat()}  {revoked}"
        )


@keys.command("revoke")
@click.argument("id_or_name")
@click.option("--account", help="The key's account (id or name), when keys of several accounts have this name.")
def keys_revoke(id_or_name: str, account: str | None) -> None:
    """Revoke the key with this id (or every active key of one account with this name): it stops working at once."""
    from email_service.services import auth

    with refusals(), database_sessions(Settings()) as sessions:
        count = auth.revoke_key(sessions, id_or_name, account)
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


def _parse_age(value: str, *, zero: bool = False) -> timedelta:
    match = re.fullmatch(r"([0-9]+)([dh])", value.strip())
    if not match or (int(match.group(1)) == 0 and not zero):
        raise click.BadParameter(f"{value!r} is not an age like 30d (days) or 12h (hours)")
    number, unit = int(match.group(1)), match.group(2)
    return timedelta(days=number) if unit == "d" else timedelta(hours=number)


COMMANDS = [db, accounts, keys, cleanup]
