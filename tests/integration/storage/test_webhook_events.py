"""The webhook outbox on SQLite and PostgreSQL: order, what counts as due, and stale claims."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from email_service.storage import webhook_events
from email_service.storage.models import EventStatus, Job, JobStatus, WebhookEvent, utcnow


def _job_with_events(sessions: sessionmaker[Session], count: int) -> tuple[str, list[int]]:
    job_id = str(uuid.uuid4())
    now = utcnow()
    with sessions.begin() as session:
        session.add(
            Job(id=job_id, status=JobStatus.COMPLETED, subject="s", content="", template="default", sender="s@x.org",
                total=0, callback_url="https://hooks.example.org", created_at=now)
        )  # fmt: skip
        events = [
            WebhookEvent(job_id=job_id, type="t", url="https://hooks.example.org", payload={"n": i},
                         status=EventStatus.PENDING, attempts=0, next_attempt_at=now, created_at=now)
            for i in range(count)
        ]  # fmt: skip
        session.add_all(events)
        session.flush()
        return job_id, [event.id for event in events]


def test_events_are_claimed_oldest_first_and_one_at_a_time(sessions: sessionmaker[Session]):
    job_id, ids = _job_with_events(sessions, 3)
    now = utcnow()
    with sessions.begin() as session:
        first = webhook_events.claim_next(session, job_id, now, now + timedelta(seconds=60))
        assert first is not None and first.id == ids[0]
    with sessions.begin() as session:
        assert webhook_events.claim_next(session, job_id, now, now + timedelta(seconds=60)) is None, (
            "the oldest is held"
        )
        webhook_events.mark_delivered(session, first, now)
    with sessions.begin() as session:
        second = webhook_events.claim_next(session, job_id, now, now + timedelta(seconds=60))
        assert second is not None and second.id == ids[1]


def test_a_job_waiting_on_a_retry_is_not_due_for_its_later_events(sessions: sessionmaker[Session]):
    job_id, _ = _job_with_events(sessions, 2)
    now = utcnow()
    with sessions.begin() as session:
        assert job_id in webhook_events.jobs_with_events_due(session, now)
        claimed = webhook_events.claim_next(session, job_id, now, now + timedelta(seconds=60))
        assert claimed is not None
        webhook_events.mark_retry(session, claimed, "HTTP 500", now + timedelta(minutes=5))
    with sessions.begin() as session:
        assert job_id not in webhook_events.jobs_with_events_due(session, now), "event 2 waits for event 1's retry"
        assert job_id in webhook_events.jobs_with_events_due(session, now + timedelta(minutes=6))


def test_a_stale_claim_cannot_overwrite_the_attempt_that_took_over(sessions: sessionmaker[Session]):
    job_id, ids = _job_with_events(sessions, 1)
    now = utcnow()
    with sessions.begin() as session:
        stale = webhook_events.claim_next(session, job_id, now, now + timedelta(seconds=1))
    later = now + timedelta(seconds=2)  # the first claim ran out: another delivery takes the event
    with sessions.begin() as session:
        current = webhook_events.claim_next(session, job_id, later, later + timedelta(seconds=60))
        assert current is not None and stale is not None and current.attempts == stale.attempts + 1
        webhook_events.mark_delivered(session, current, later)
    with sessions.begin() as session:
        webhook_events.mark_abandoned(session, stale, "timed out")  # the first attempt ends late
    with sessions() as session:
        event = session.get(WebhookEvent, ids[0])
        assert event is not None and event.status == EventStatus.DELIVERED
