"""Use cases of the service, free of HTTP and Celery: accept a job, start it, send a batch."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from email_service.config import Settings
from email_service.delivery import make_transport
from email_service.delivery.ratelimit import RateLimiter, make_rate_limiter
from email_service.delivery.retry import RetryPolicy
from email_service.delivery.transport import Transport
from email_service.message.dkim.signing import DkimSigner
from email_service.message.rendering import TemplateRenderer
from email_service.services.claim_sizes import ClaimSizer
from email_service.services.job_statuses import JobStatuses
from email_service.services.leases import LeaseKeeper
from email_service.services.pacing import SlotPacer
from email_service.storage import scheduling
from email_service.storage.database import make_engine, make_reader_factory, make_session_factory
from email_service.storage.models import Lane, utcnow
from email_service.storage.outcomes import OutcomeWriters

# Database connections a worker process writes its outcomes on, whatever its SMTP_CONCURRENCY: each
# write holds one for a single round trip, and the sent outcomes of all threads are committed in
# groups on one of them, so a few serve thousands of messages a second (docs/benchmarks.md).
OUTCOME_WRITERS = 4


class TaskQueue(Protocol):
    """How services ask for work to be done later; the Celery edge implements it."""

    def wake(self) -> None:
        """Publish a wake-up: a worker thread that takes it serves due work (services.dispatch)."""

    def waiting(self) -> int:
        """How many tasks wait in the broker, not yet taken by a worker."""

    def deliver_events(self, job_id: str) -> None: ...


@dataclass
class Services:
    """Everything a use case needs, built once per process by the factories."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]  # for reads only (no write lock on SQLite)
    renderer: TemplateRenderer
    transport: Transport
    retry_policy: RetryPolicy
    rate_limiter: RateLimiter | None
    leases: LeaseKeeper
    outcomes: OutcomeWriters
    job_statuses: JobStatuses
    claim_sizer: ClaimSizer
    pacer: SlotPacer | None  # with a global rate: bulk slots reserved before their claims
    dkim_signer: DkimSigner | None = None
    queue: TaskQueue | None = None
    # Set when the process is asked to stop: running batches give back what they have not sent.
    stopping: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=random.Random)


def build_services(
    settings: Settings,
    transport: Transport | None = None,
    *,
    queue: TaskQueue | None = None,
    dkim_signer: DkimSigner | None = None,
) -> Services:
    """The services of one process; ``bootstrap`` gives them their task queue and DKIM signer."""
    # Sending threads hold a connection only briefly (claim, status, give back), outcome writers for
    # good: the pool does not grow with SMTP_CONCURRENCY, so neither does PostgreSQL's connection count.
    engine = make_engine(settings.database_url, pool_size=OUTCOME_WRITERS + min(settings.smtp_concurrency, 8))
    sessions = make_session_factory(engine)
    readers = make_reader_factory(engine)
    rate_limiter = make_rate_limiter(settings)
    stopping = threading.Event()
    rng = random.Random()
    pacer = None
    if rate_limiter is not None and rate_limiter.global_burst is not None:
        pacer = SlotPacer(rate_limiter, _transactional_due(readers), stopping, rng)
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        readers=readers,
        renderer=TemplateRenderer(settings.templates_dir),
        transport=transport or make_transport(settings),
        retry_policy=RetryPolicy.from_settings(settings),
        rate_limiter=rate_limiter,
        leases=LeaseKeeper(sessions, settings.lease_seconds),
        outcomes=OutcomeWriters(engine, OUTCOME_WRITERS),
        job_statuses=JobStatuses(readers),
        claim_sizer=ClaimSizer(settings.batch_size, settings.smtp_concurrency),
        pacer=pacer,
        stopping=stopping,
        rng=rng,
        dkim_signer=dkim_signer,
        queue=queue,
    )


def _transactional_due(readers: sessionmaker[Session]) -> Callable[[], bool]:
    def due() -> bool:
        with readers() as session:
            return scheduling.lane_due(session, utcnow(), Lane.TRANSACTIONAL)

    return due
