"""The share of the sending rate each job with work due gets: accounts share their lane equally, each
account's jobs share its part, and bulk waits while a transactional job has work due."""

from __future__ import annotations

import math
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from email_service.storage.models import JobStatus, Lane
from email_service.storage.scheduling import ActiveJob, shares

CREATED = datetime(2026, 12, 7, tzinfo=UTC)


def due_jobs(owners: list[tuple[Lane, str]]) -> list[ActiveJob]:
    return [
        ActiveJob(f"job{index}", account, lane, JobStatus.SENDING, None, CREATED, due=True)
        for index, (lane, account) in enumerate(owners)
    ]


@given(st.lists(st.tuples(st.sampled_from(list(Lane)), st.sampled_from(["a", "b", "c"])), max_size=12))
def test_accounts_share_their_lane_equally_and_bulk_waits_for_transactional_work(owners: list[tuple[Lane, str]]):
    due = due_jobs(owners)
    given_shares = shares(due)
    assert set(given_shares) == {job.id for job in due}
    bulk_waits = any(lane == Lane.TRANSACTIONAL for lane, _ in owners)
    for lane in Lane:
        in_lane = [job for job in due if job.lane == lane]
        if not in_lane:
            continue
        if lane == Lane.BULK and bulk_waits:
            assert all(given_shares[job.id] == 0 for job in in_lane)
            continue
        accounts = {job.account_id for job in in_lane}
        for account in accounts:
            part = sum(given_shares[job.id] for job in in_lane if job.account_id == account)
            assert math.isclose(part, 1 / len(accounts))
        siblings = [given_shares[job.id] for job in in_lane if job.account_id == in_lane[0].account_id]
        assert max(siblings) == min(siblings)  # an account's jobs take equal turns
