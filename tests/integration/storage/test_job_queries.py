"""The queries the dashboard and the API's filters read, on SQLite and PostgreSQL alike: jobs by status
and exact tag, recipients and suppressions by part of an address, a job's sends per interval, its
failures grouped by reply, and the work waiting in each lane."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.orm import Session, sessionmaker

from email_service.storage import jobs, scheduling, suppressions
from email_service.storage.models import Job, JobStatus, Lane, Recipient, RecipientStatus, utcnow


def _job(sessions: sessionmaker[Session], owner: str, addresses: list[str], **fields: object) -> str:
    job_id = str(uuid.uuid4())
    job = Job(
        id=job_id,
        account_id=owner,
        status=fields.pop("status", JobStatus.COMPLETED),
        subject="s",
        content="c",
        template="default",
        sender="s@example.org",
        total=len(addresses),
        created_at=utcnow(),
        **fields,
    )
    rows = [(job_id, i, address, None, None, RecipientStatus.PENDING, 0) for i, address in enumerate(addresses)]
    with sessions.begin() as session:
        jobs.insert_job(session, job, rows)
    return job_id


def _set(sessions: sessionmaker[Session], job_id: str, position: int, **values: object) -> None:
    with sessions.begin() as session:
        session.execute(
            update(Recipient).where(Recipient.job_id == job_id, Recipient.position == position).values(**values)
        )


def test_jobs_are_filtered_by_status_and_by_exact_tag(sessions: sessionmaker[Session]):
    owner = str(uuid.uuid4())  # the PostgreSQL database is shared: only this test's jobs
    tagged = _job(sessions, owner, ["a@example.com"], tags=["news", "winter"])
    tricky = _job(sessions, owner, ["a@example.com"], tags=['x"news', "news-letter", "%"], status=JobStatus.SENDING)
    untagged = _job(sessions, owner, ["a@example.com"], status=JobStatus.PAUSED)
    with sessions() as session:

        def ids(**filters: object) -> set[str]:
            return {job.id for job in jobs.list_jobs(session, owner, limit=10, **filters)}  # type: ignore[arg-type]

        assert ids(tag="news") == {tagged}  # not inside another tag's JSON text
        assert ids(tag="%") == {tricky}
        assert ids(tag='x"news') == {tricky}
        assert ids(tag="new") == set()
        assert ids(status=JobStatus.PAUSED) == {untagged}
        assert ids(status=JobStatus.SENDING, tag="news") == set()
        assert ids() == {tagged, tricky, untagged}


def test_recipients_and_suppressions_are_found_by_part_of_the_address_in_any_case(sessions: sessionmaker[Session]):
    job_id = _job(
        sessions, "o", ["Will.Byers@example.com", "eleven@example.com", "will_b@example.org", "w%x@example.com"]
    )
    with sessions() as session:

        def found(part: str) -> list[str]:
            rows = jobs.list_recipients(session, job_id, status=None, after=None, limit=10, address_part=part)
            return [r.address for r in rows]

        assert found("will") == ["Will.Byers@example.com", "will_b@example.org"]
        assert found("_") == ["will_b@example.org"]  # LIKE's wildcards match themselves
        assert found("%") == ["w%x@example.com"]
        assert found("EXAMPLE.ORG") == ["will_b@example.org"]
    marker = uuid.uuid4().hex[:8]
    with sessions.begin() as session:
        for address in (f"max.{marker}@example.com", f"MAXINE.{marker}@example.com", f"lucas.{marker}@example.com"):
            suppressions.add(session, address, "manual", None, utcnow(), account=None)
    with sessions() as session:
        rows = suppressions.page(session, account=None, after=None, limit=10, address_part=f"max.{marker}")
        assert [r.address for r in rows] == [f"max.{marker}@example.com"]
        assert len(suppressions.page(session, account=None, after=None, limit=10, address_part=marker)) == 3


def test_a_jobs_sends_are_counted_per_round_interval(sessions: sessionmaker[Session]):
    job_id = _job(sessions, "o", [f"r{i}@example.com" for i in range(7)])
    start = datetime(2026, 12, 6, 12, 0, 3, 700_000, tzinfo=UTC)

    def timeline(end: float, most: int = 60) -> jobs.Timeline | None:
        with sessions() as session:
            return jobs.sent_timeline(
                session, job_id, start=start, end=start + timedelta(seconds=end), most_buckets=most
            )

    assert timeline(10) is None  # nothing sent yet
    for position, offset in enumerate([0, 0.1, 0.2, 1.5, 5.0, -3.0, 60.0]):
        _set(sessions, job_id, position, status=RecipientStatus.SENT, sent_at=start + timedelta(seconds=offset))
    fine = timeline(6)
    assert fine is not None
    assert (fine.start, fine.width_seconds) == (datetime(2026, 12, 6, 12, 0, 3, tzinfo=UTC), 1)
    # At 03.7-03.9, 05.2 and 08.7; one stamped before the start and one after the end go to the edges.
    assert fine.counts == [4, 0, 1, 0, 0, 1, 1]
    coarse = timeline(6, most=3)
    assert coarse is not None and coarse.width_seconds == 5 and coarse.counts == [4, 3]
    assert coarse.start == datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)
    long = timeline(3600)
    assert long is not None and long.width_seconds == 120 and long.counts[0] == 7 and len(long.counts) == 31


def test_failures_are_grouped_by_smtp_code_and_text_most_frequent_first(sessions: sessionmaker[Session]):
    job_id = _job(sessions, "o", [f"r{i}@example.com" for i in range(5)])
    replies = [(550, "5.1.1 unknown"), (550, "5.1.1 unknown"), (554, "5.7.1 policy"), (None, "TLS: refused")]
    for position, (code, text) in enumerate(replies):
        _set(sessions, job_id, position, status=RecipientStatus.FAILED, last_error_code=code, last_error=text)
    _set(sessions, job_id, 4, status=RecipientStatus.SENT, last_error_code=421, last_error="earlier try")
    with sessions() as session:
        reasons = jobs.failure_reasons(session, job_id, limit=10)
    assert reasons[0] == (550, "5.1.1 unknown", 2)
    assert sorted(reasons[1:], key=str) == sorted([(554, "5.7.1 policy", 1), (None, "TLS: refused", 1)], key=str)


@contextlib.contextmanager
def waiting_jobs(sessions: sessionmaker[Session], *plans: tuple[Lane, int, str, str]) -> Iterator[list[str]]:
    """Jobs of (lane, recipients, owner, state): ``started`` as a worker's first claim starts one, ``queued``,
    or ``retried`` (queued again after it had started). Deleted afterwards, for no worker of a later test
    on the shared PostgreSQL database to find them due."""
    ids = []
    for lane, addresses, owner, state in plans:
        recipients = [f"r{i}@example.com" for i in range(addresses)]
        started_at = utcnow() if state == "retried" else None
        ids.append(_job(sessions, owner, recipients, status=JobStatus.QUEUED, lane=lane, started_at=started_at))
        if state == "started":
            with sessions.begin() as session:
                assert scheduling.start(session, ids[-1], utcnow())
    try:
        yield ids
    finally:
        with sessions.begin() as session:
            session.execute(delete(Recipient).where(Recipient.job_id.in_(ids)))
            session.execute(delete(Job).where(Job.id.in_(ids)))


def test_each_lane_counts_what_waits_and_the_queue_shares_the_rate_as_each_job_is_told(
    sessions: sessionmaker[Session],
):
    owner, other = str(uuid.uuid4()), str(uuid.uuid4())  # the PostgreSQL database is shared: deltas only
    with sessions() as session:
        before = jobs.waiting_by_lane(session)
    plans = [
        (Lane.TRANSACTIONAL, 2, owner, "started"),
        (Lane.BULK, 3, owner, "started"),
        (Lane.BULK, 1, other, "started"),
        (Lane.BULK, 4, owner, "queued"),  # not started: its total waits
        (Lane.BULK, 5, owner, "retried"),  # its rows count from its restart
    ]
    with waiting_jobs(sessions, *plans) as (urgent, news, theirs, fresh, retried):
        with sessions() as session:
            after = jobs.waiting_by_lane(session)
            counted = jobs.waiting_of(session, [urgent, news, fresh, retried])
        assert counted == {urgent: 2, news: 3, fresh: 4, retried: 0}
        grown = {lane: {stage: after[lane][stage] - before[lane][stage] for stage in after[lane]} for lane in after}
        assert grown == {"transactional": {"started": 2, "queued": 0}, "bulk": {"started": 4, "queued": 4}}

        def shares_agree_with_turn_of() -> dict[str, float]:
            now = utcnow()
            with sessions() as session:
                order = scheduling.serving_order(scheduling.active_jobs(session, now), largest_claim=100).jobs
                shares = scheduling.shares(order)
                for job_id in (urgent, news, theirs, fresh, retried):
                    job = session.get(Job, job_id)
                    assert job is not None
                    assert shares.get(job_id, 0.0) == scheduling.turn_of(session, job, now).share, job_id
            return shares

        shares = shares_agree_with_turn_of()
        assert shares[urgent] > 0 and shares[news] == shares[fresh] == 0.0  # bulk waits for the transactional rows
        with sessions.begin() as session:  # the transactional rows are in flight: nothing of them is due
            in_flight = utcnow() + timedelta(hours=1)
            session.execute(update(Recipient).where(Recipient.job_id == urgent).values(lease_until=in_flight))
        shares = shares_agree_with_turn_of()
        assert urgent not in shares and shares[news] == shares[fresh] == shares[retried] > 0
