"""The ``email-service`` command: the service's processes (dev, serve, worker, scheduler, catcher), the
operator's database commands (db, accounts, keys, cleanup, templates), and send (a client of the API)."""

from __future__ import annotations

import click

from email_service.cli import admin, processes, templates
from email_service.cli.send import send


@click.group()
def main() -> None:
    """Self-hosted bulk email service."""


for command in [*processes.COMMANDS, *admin.COMMANDS, *templates.COMMANDS, send]:
    main.add_command(command)
