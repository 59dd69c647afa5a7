"""Lanes and turns as units: which lane a job gets, the serving order, the size of claims."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from email_service.services import accounts, intake
from email_service.services.claim_sizes import CLAIM_TURN, FIRST_CLAIM, ClaimSizer
from email_service.storage.models import Lane
from email_service.storage.scheduling import LEAD_CLAIMS, ActiveJob, serving_order
from tests.support.inline import inline_services

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
CLAIM = 100  # BATCH_SIZE, the default: the largest claim
LEAD = LEAD_CLAIMS * CLAIM  # how far behind the others an account may count


def _job(
    job_id: str, account: str | None, lane: Lane, served: int | None, *, due: bool = True, status: str = "sending"
) -> ActiveJob:
    return ActiveJob(job_id, account, lane, status, served, T0, due)


def test_transactional_jobs_go_first_then_accounts_then_their_jobs_in_turn():
    jobs = [
        _job("a-old", "a", Lane.BULK, 1000),
        _job("a-new", "a", Lane.BULK, None),  # never served, but its account's place is a-old's
        _job("b", "b", Lane.BULK, 1100),
        _job("c-reset", "c", Lane.TRANSACTIONAL, 900),
        _job("d-idle", "d", Lane.BULK, 0, due=False),  # nothing due: not served
    ]
    order = serving_order(jobs, largest_claim=CLAIM)
    assert [job.id for job in order.jobs] == ["c-reset", "a-new", "a-old", "b"]
    assert order.served_from(jobs[1]) == 1000, "a claim of a-new counts from its account's place"


def _serve(jobs: dict[str, ActiveJob], size: int) -> ActiveJob:
    """One claim of ``size`` recipients, as a worker makes it: the first job of the order moves on."""
    order = serving_order(list(jobs.values()), largest_claim=CLAIM)
    first = order.jobs[0]
    jobs[first.id] = replace(first, served=order.served_from(first) + size)
    return first


def test_a_job_sent_alone_in_its_lane_counts_level_with_the_account_furthest_behind():
    """Claims of a job alone in its lane record no place (services.dispatch). A job posted then by another
    account goes first, then they take turns; when others have places, it counts level with the one
    furthest behind: not the lead behind (it would get the lead for nothing), nor with the furthest ahead
    (it would get a turn only when all the others were level)."""
    jobs = {"big": _job("big", "a", Lane.BULK, None), "small": _job("small", "b", Lane.BULK, None, status="queued")}
    order = serving_order(list(jobs.values()), largest_claim=CLAIM)
    assert [job.id for job in order.jobs] == ["small", "big"]
    sent = {"a": 0, "b": 0}
    for _ in range(20):
        sent[_serve(jobs, CLAIM // 2).account_id] += CLAIM // 2  # type: ignore[index]
    assert sent == {"a": 10 * (CLAIM // 2), "b": 10 * (CLAIM // 2)}
    others = [_job("c", "c", Lane.BULK, 900), _job("d", "d", Lane.BULK, 1000), _job("e", "e", Lane.BULK, None)]
    assert serving_order(others, largest_claim=CLAIM).served_from(others[2]) == 900


lanes = st.sampled_from(list(Lane))
accounts_ = st.sampled_from(["a", "b", "c", None])
places = st.one_of(st.none(), st.integers(0, 10_000))


@given(st.lists(st.tuples(accounts_, lanes, places, st.booleans()), min_size=1, max_size=12))
def test_the_order_serves_every_job_due_and_transactional_ones_first(rows: list[tuple]):
    jobs = [_job(f"j{i}", account, lane, served, due=due) for i, (account, lane, served, due) in enumerate(rows)]
    order = serving_order(jobs, largest_claim=CLAIM).jobs
    assert {job.id for job in order} == {job.id for job in jobs if job.due}
    ranks = [0 if job.lane == Lane.TRANSACTIONAL else 1 for job in order]
    assert ranks == sorted(ranks), "no bulk job before a transactional one"


@given(
    st.lists(st.integers(1, 30), min_size=3, max_size=3),
    st.lists(st.integers(1, CLAIM), min_size=30, max_size=300),
    st.lists(places, min_size=3, max_size=3),
)
def test_accounts_get_equal_recipients_whatever_their_jobs_claim_sizes_and_past(
    job_counts: list[int], sizes: list[int], pasts: list[int | None]
):
    """Claims of any size, accounts split into any number of jobs, each starting anywhere in the round
    (new, or served far ahead or behind while the others waited): every account's recipients stay within
    the lead and a claim of the others'."""
    jobs = {
        f"{account}{i}": _job(
            f"{account}{i}", account, Lane.TRANSACTIONAL, past, status="queued" if past is None else "sending"
        )
        for account, count, past in zip("abc", job_counts, pasts, strict=True)
        for i in range(count)
    }
    sent = {"a": 0, "b": 0, "c": 0}
    for size in sizes:
        sent[_serve(jobs, size).account_id] += size  # type: ignore[index]
    assert max(sent.values()) - min(sent.values()) <= LEAD + CLAIM, sent


@given(st.integers(1, 2_000), st.lists(st.integers(1, CLAIM), min_size=20, max_size=200))
def test_an_account_new_to_the_lane_goes_first_then_shares_equally(head_start: int, sizes: list[int]):
    """However long one account was served alone, a newcomer is served at once and then alternates:
    it is first for the lead at most, then they take turns."""
    jobs = {"big": _job("big", "a", Lane.BULK, None)}
    for _ in range(head_start):
        _serve(jobs, CLAIM)
    jobs["small"] = _job("small", "b", Lane.BULK, None, status="queued")
    assert _serve(jobs, sizes[0]).id == "small"
    sent = {"a": 0, "b": sizes[0]}
    for size in sizes[1:]:
        sent[_serve(jobs, size).account_id] += size  # type: ignore[index]
    assert abs(sent["a"] - sent["b"]) <= LEAD + CLAIM, sent


def test_claims_are_sized_to_free_a_thread_every_turn_and_grow_at_most_twice():
    sizer = ClaimSizer(most=100, threads=2)  # a claim should last 2 turns
    assert sizer.size() == FIRST_CLAIM
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
