"""What every ``email_service.limiter.Limiter`` does, run against each one: subclasses give the
``limiter`` fixture (a new limiter with nothing counted). And a Redis client that fails on cue."""

from __future__ import annotations

import itertools
import time

import pytest
import redis

from email_service.delivery.ratelimit import RateLimiter, SendLimits
from email_service.limiter import Limiter, TokenBucket, Window


def _takes(limiter: RateLimiter, domain: str, count: int, transactional: bool = False) -> int:
    """How many of ``count`` immediate sends the limiter allows (reserving nothing ahead)."""
    return sum(limiter.acquire(domain, max_wait=0, transactional=transactional) == 0 for _ in range(count))


class FlakyRedis:
    """Stands for the ``redis.Redis`` of a ``RedisLimiter``: while ``down`` is an error class, its script
    raises it as an unreachable Redis would; otherwise it grants at once. It counts the script's calls."""

    def __init__(self) -> None:
        self.down: type[redis.RedisError] | None = None
        self.calls = 0

    def register_script(self, script: str) -> FlakyRedis:
        return self

    def __call__(self, keys: list[str], args: list[str | float]) -> list[object]:
        self.calls += 1
        if self.down is not None:
            raise self.down("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        return ["0", 1, 0]


class LimiterBehaviour:
    def test_a_bucket_allows_its_burst_then_makes_callers_wait(self, limiter: Limiter):
        rates = RateLimiter(limiter, SendLimits(global_bucket=TokenBucket("global", rate=10, burst=5)))
        assert _takes(rates, "example.com", 8) == 5
        wait = rates.acquire("example.com", max_wait=0)
        assert 0 < wait <= 0.1 + 1e-6
        time.sleep(wait + 0.01)
        assert rates.acquire("example.com", max_wait=0) == 0

    def test_waiting_senders_get_successive_slots_with_one_call_each(self, limiter: Limiter):
        rates = RateLimiter(limiter, SendLimits(global_bucket=TokenBucket("global", rate=10, burst=1)))
        waits = [rates.acquire("example.com", max_wait=1) for _ in range(5)]
        assert waits[0] == 0
        # Each slot 0.1 s after the previous one, less the little time between two calls.
        assert all(0.05 < b - a <= 0.1 + 1e-6 for a, b in itertools.pairwise(waits)), waits
        assert rates.acquire("example.com", max_wait=0.2) > 0.2, "too far off: nothing reserved"
        assert 0.3 < rates.acquire("example.com", max_wait=1) <= 0.5 + 1e-6

    def test_a_domain_rate_holds_back_only_its_domain(self, limiter: Limiter):
        rates = RateLimiter(limiter, SendLimits(domain_rates={"gmail.com": 2.0}))
        assert _takes(rates, "gmail.com", 5) == 2
        assert _takes(rates, "example.com", 5) == 5

    def test_a_quota_stops_until_the_next_window(self, limiter: Limiter):
        rates = RateLimiter(limiter, SendLimits(quotas=[Window("quota:hour", 3, 3600)]))
        assert _takes(rates, "example.com", 5) == 3
        wait = rates.acquire("example.com", max_wait=5)
        assert 5 < wait <= 3600
        assert wait == pytest.approx(3600 - time.time() % 3600, abs=2)

    def test_an_amount_is_taken_from_every_limit_or_from_none(self, limiter: Limiter):
        hour, day = Window("hour", 10, 3600), Window("day", 15, 86400)
        assert limiter.acquire([hour, day], 6).taken
        refused = limiter.acquire([hour, day], 6)
        assert not refused.taken and refused.limit == hour
        assert 0 < refused.wait <= 3600
        assert limiter.acquire([day], 9).taken, "the refused six were counted by neither window"
        assert limiter.acquire([hour], 4).taken
        assert not limiter.acquire([day], 1).taken

    def test_the_limit_that_sets_the_longest_wait_is_named(self, limiter: Limiter):
        bucket, window = TokenBucket("b", rate=1000, burst=1), Window("w", 1, 3600)
        assert limiter.acquire([bucket, window]).limit is None
        refused = limiter.acquire([bucket, window])
        assert not refused.taken and refused.limit == window and refused.wait > 0.001
        assert limiter.acquire([bucket], max_wait=0.01).limit == bucket

    def test_what_is_given_back_can_be_taken_again_but_never_beyond_the_limit(self, limiter: Limiter):
        window, bucket = Window("w", 5, 3600), TokenBucket("b", rate=0.001, burst=5)
        for limit in (window, bucket):
            assert limiter.acquire([limit], 5).taken
            assert not limiter.acquire([limit], 1).taken
            limiter.give_back([limit], 3)
            assert limiter.acquire([limit], 3).taken
            assert not limiter.acquire([limit], 1).taken
        limiter.give_back([window, bucket], 100)
        assert not limiter.acquire([window], 6).taken, "a window is never below empty"
        assert not limiter.acquire([bucket], 6).taken, "a bucket never holds more than its burst"
        assert limiter.acquire([window, bucket], 5).taken

    def test_a_bucket_lends_ahead_only_within_max_wait(self, limiter: Limiter):
        bucket = TokenBucket("b", rate=10, burst=2)
        assert limiter.acquire([bucket], 2).wait == 0
        ahead = limiter.acquire([bucket], 3, max_wait=1)
        assert ahead.taken and ahead.wait == pytest.approx(0.3, abs=0.05)
        assert not limiter.acquire([bucket], 5, max_wait=0.5).taken

    def test_bulk_mail_leaves_a_quotas_reserve_to_transactional_mail(self, limiter: Limiter):
        rates = RateLimiter(limiter, SendLimits(quotas=[Window("quota:hour", 10, 3600, reserve=0.2)]))
        assert _takes(rates, "example.com", 10) == 8
        assert _takes(rates, "example.com", 5, transactional=True) == 2
        assert rates.acquire("example.com", max_wait=0, transactional=True) > 0

    def test_transactional_mail_counts_in_the_same_window_as_bulk_mail(self, limiter: Limiter):
        hour = Window("hour", 5, 3600, reserve=0.4)  # bulk mail up to 3
        assert limiter.acquire([hour], 2, use_reserve=True).taken
        refused = limiter.acquire([hour], 2)
        assert not refused.taken and refused.limit == hour and refused.wait > 0
        assert limiter.acquire([hour], 1).taken
        assert limiter.acquire([hour], 2, use_reserve=True).taken
        assert not limiter.acquire([hour], 1, use_reserve=True).taken
