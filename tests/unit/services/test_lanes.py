"""Lanes and turns as units: which lane a job gets, the serving order, the size of claims."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from email_service.services import accounts, intake
from email_service.services.claim_sizes import CLAIM_TURN, FIRST_CLAIM, ClaimSizer
from email_service.storage.models import Lane
from email_service.storage.scheduling import ActiveJob, serving_order
from tests.support.inline import inline_services

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def _job(job_id: str, account: str | None, lane: Lane, served: float | None, *, due: bool = True) -> ActiveJob:
    served_at = T0 + timedelta(seconds=served) if served is not None else None
    return ActiveJob(job_id, account, lane, "sending", served_at, T0, due)


def test_transactional_jobs_go_first_then_accounts_then_their_jobs_in_turn():
    jobs = [
        _job("a-old", "a", Lane.BULK, 1),
        _job("a-new", "a", Lane.BULK, None),  # never served, but its account was served last
        _job("b", "b", Lane.BULK, 2),
        _job("c-reset", "c", Lane.TRANSACTIONAL, 9),
        _job("d-idle", "d", Lane.BULK, 0, due=False),  # nothing due: not served
    ]
    # a's last turn (1 s) is older than b's (2 s); of a's jobs, the one never served goes first.
    assert [job.id for job in serving_order(jobs)] == ["c-reset", "a-new", "a-old", "b"]


lanes = st.sampled_from(list(Lane))
accounts_ = st.sampled_from(["a", "b", "c", None])
served = st.one_of(st.none(), st.floats(0, 100))


@given(st.lists(st.tuples(accounts_, lanes, served, st.booleans()), min_size=1, max_size=12))
def test_the_serving_order_is_by_lane_then_account_turn_then_job_turn(rows: list[tuple]):
    jobs = [_job(f"j{i}", account, lane, when, due=due) for i, (account, lane, when, due) in enumerate(rows)]
    order = serving_order(jobs)
    assert {job.id for job in order} == {job.id for job in jobs if job.due}
    ranks = [0 if job.lane == Lane.TRANSACTIONAL else 1 for job in order]
    assert ranks == sorted(ranks), "no bulk job before a transactional one"

    def account_turn(job: ActiveJob) -> datetime:
        mine = [
            j.served_at or datetime.min.replace(tzinfo=UTC)
            for j in jobs
            if (j.lane, j.account_id) == (job.lane, job.account_id)
        ]
        return max(mine)

    for first, second in itertools.pairwise(order):
        if first.lane == second.lane:
            assert account_turn(first) <= account_turn(second), "an account served more recently went first"


@given(st.lists(st.integers(1, 50), min_size=3, max_size=3), st.integers(1, 40))
def test_an_account_splitting_its_send_into_jobs_gains_no_turn(job_counts: list[int], rounds: int):
    """Serve by turns, one claim per turn: each account gets a third of the turns (one more at most)."""
    jobs = {
        f"{account}{i}": _job(f"{account}{i}", account, Lane.TRANSACTIONAL, None)
        for account, count in zip("abc", job_counts, strict=True)
        for i in range(count)
    }
    turns = {"a": 0, "b": 0, "c": 0}
    for tick in range(3 * rounds):
        first = serving_order(list(jobs.values()))[0]
        turns[first.account_id] += 1
        jobs[first.id] = _job(first.id, first.account_id, first.lane, tick)
    assert max(turns.values()) - min(turns.values()) <= 1, turns


def test_claims_are_sized_to_free_a_thread_every_turn_and_grow_at_most_twice():
    sizer = ClaimSizer(most=100)
    assert sizer.size() == FIRST_CLAIM
    with sizer.serving(), sizer.serving():  # two threads busy: a claim should last 2 turns
        sizer.sent(10, seconds=0.01)  # far faster than wanted: doubles at most
        assert sizer.size() == 20
        sizer.sent(20, seconds=0.02)
        assert sizer.size() == 40
        sizer.sent(40, seconds=4 * CLAIM_TURN)  # twice too slow: halves
        assert sizer.size() == 20
        for _ in range(10):
            sizer.sent(sizer.size(), seconds=0.0001)
        assert sizer.size() == 100, "never above BATCH_SIZE"
        sizer.sent(100, seconds=600)
        assert sizer.size() == 1, "at least one"


@pytest.mark.parametrize(
    ("given_lane", "account_lane", "recipients", "expected"),
    [
        (None, None, 10, Lane.TRANSACTIONAL),  # TRANSACTIONAL_MAX_RECIPIENTS, the default
        (None, None, 11, Lane.BULK),
        (None, Lane.BULK, 1, Lane.BULK),  # the account's default over the size
        (None, Lane.TRANSACTIONAL, 500, Lane.TRANSACTIONAL),
        (Lane.BULK, Lane.TRANSACTIONAL, 1, Lane.BULK),  # the job's own over both
    ],
)
def test_a_job_s_lane_is_its_own_else_its_account_s_else_by_its_size(
    tmp_path: Path, given_lane: Lane | None, account_lane: Lane | None, recipients: int, expected: Lane
):
    services = inline_services(tmp_path)
    info, _ = accounts.create(services.sessions, services.settings, "shop", lane=account_lane)
    request = intake.JobRequest([f"r{i}@example.com" for i in range(recipients)], "s", lane=given_lane)
    job_id = intake.accept_job(services, request, account=info.id).id
    with services.sessions() as session:
        assert session.get(intake.Job, job_id).lane == expected
