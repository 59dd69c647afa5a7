"""Services on SQLite whose task queue runs every task at once, in the calling thread: intake,
dispatch and deliver in one process, against a real SMTP server the test starts."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from email_service.config import Settings
from email_service.services import Services, build_services, dispatch, events, intake
from email_service.storage import jobs
from email_service.storage.migrate import upgrade


@dataclass
class Recipient:
    email: str
    name: str | None = None
    variables: dict[str, Any] | None = None


@dataclass
class InlineQueue:
    """A wake-up serves all due work at once, in the calling thread; one published while that thread
    serves is left to its loop (a worker's other threads would take it)."""

    services: Services
    serving: threading.local = field(default_factory=threading.local)

    def wake(self) -> None:
        if getattr(self.serving, "now", False):
            return
        self.serving.now = True
        try:
            dispatch.serve(self.services)
        finally:
            self.serving.now = False

    def waiting(self) -> int:
        return 0

    def deliver_events(self, job_id: str) -> None:
        events.deliver_events(self.services, job_id)


def inline_services(tmp_path: Path, **overrides: Any) -> Services:
    settings = Settings(data_dir=tmp_path, mail_server="127.0.0.1", **overrides)
    upgrade(settings.database_url)
    services = build_services(settings)
    services.queue = InlineQueue(services)
    return services


def run(
    services: Services,
    recipients: list[Recipient],
    content: str = "Run for your life",
    *,
    subject: str = "Demogorgon",
    account: str | None = None,
    **options: Any,
) -> str:
    """Accept a job (of the account ``account``) and send it all before returning; its id."""
    accepted = intake.accept_job(
        services,
        intake.JobRequest(recipients=recipients, subject=subject, content=content, template="default", **options),
        account=account,
    )
    assert services.queue is not None
    services.queue.wake()
    return accepted.id


def counts(services: Services, job_id: str) -> dict[str, int]:
    """The job's recipients by status, the statuses that have some."""
    with services.sessions() as session:
        return {k: v for k, v in jobs.count_by_status(session, [job_id])[job_id].items() if v}
