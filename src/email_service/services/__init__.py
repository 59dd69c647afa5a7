"""Use cases of the service, free of HTTP and Celery: accept a job, start it, send a batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..delivery import make_transport
from ..delivery.transport import Transport
from ..rendering import TemplateRenderer
from ..storage.database import make_engine, make_session_factory


class TaskQueue(Protocol):
    """How services ask for work to be done later; the Celery edge implements it."""

    def start_job(self, job_id: str) -> None: ...

    def send_batch(self, job_id: str, first: int, last: int) -> None: ...


@dataclass
class Services:
    """Everything a use case needs, built once per process by the factories."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    renderer: TemplateRenderer
    transport: Transport
    queue: TaskQueue | None = None


def build_services(settings: Settings, transport: Transport | None = None) -> Services:
    engine = make_engine(settings.database_url)
    return Services(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        renderer=TemplateRenderer(settings.templates_dir),
        transport=transport or make_transport(settings),
    )
