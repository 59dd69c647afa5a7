"""Rate limits: shared token buckets and quotas in Redis, the same limits in one process without it."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from email_service.config import Settings, parse_domain_rates
from email_service.delivery.ratelimit import (
    Bucket,
    Limits,
    LocalRateLimiter,
    Quota,
    RedisRateLimiter,
    make_rate_limiter,
)
from tests.support.servers import REDIS_URL


def test_domain_rates_are_parsed_per_second():
    assert parse_domain_rates("gmail.com=20/s, Yahoo.com=600/m,outlook.com=3600/h") == {
        "gmail.com": 20.0,
        "yahoo.com": 10.0,
        "outlook.com": 1.0,
    }
    with pytest.raises(ValueError, match="DOMAIN_RATES"):
        parse_domain_rates("gmail.com:20")


def test_no_limit_means_no_limiter_and_redis_is_used_when_the_broker_is_redis():
    assert make_rate_limiter(Settings()) is None
    assert isinstance(make_rate_limiter(Settings(send_rate=10)), LocalRateLimiter)
    assert isinstance(make_rate_limiter(Settings(send_rate=10, celery_broker_url=REDIS_URL)), RedisRateLimiter)


@pytest.fixture
def redis_limiters(redis_prefix: str) -> Iterator[callable]:
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"

    def make(limits: Limits) -> RedisRateLimiter:
        return RedisRateLimiter(client, limits, prefix=prefix)

    yield make
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


def _takes(limiter, domain: str, count: int) -> int:
    """How many of ``count`` immediate sends the limiter allows (reserving nothing ahead)."""
    return sum(limiter.acquire(domain, max_wait=0) == 0 for _ in range(count))


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_a_bucket_allows_its_burst_then_makes_callers_wait(kind: str, redis_limiters):
    limits = Limits(global_bucket=Bucket("global", rate=10, burst=5), domain_rates={}, quotas=[])
    limiter = redis_limiters(limits) if kind == "redis" else LocalRateLimiter(limits)
    assert _takes(limiter, "example.com", 8) == 5
    wait = limiter.acquire("example.com", max_wait=0)
    assert 0 < wait <= 0.1 + 1e-6
    time.sleep(wait + 0.01)
    assert limiter.acquire("example.com", max_wait=0) == 0


def test_the_redis_bucket_is_shared_by_every_worker(redis_limiters):
    limits = Limits(global_bucket=Bucket("global", rate=1, burst=6), domain_rates={}, quotas=[])
    first, second = redis_limiters(limits), redis_limiters(limits)
    assert _takes(first, "a.com", 4) + _takes(second, "b.com", 4) == 6


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_waiting_senders_get_successive_slots_with_one_call_each(kind: str, redis_limiters):
    limits = Limits(global_bucket=Bucket("global", rate=10, burst=1), domain_rates={}, quotas=[])
    limiter = redis_limiters(limits) if kind == "redis" else LocalRateLimiter(limits)
    waits = [limiter.acquire("example.com", max_wait=1) for _ in range(5)]
    assert waits[0] == 0
    # Each slot 0.1 s after the previous one, less the little time between two calls.
    assert all(0.05 < b - a <= 0.1 + 1e-6 for a, b in itertools.pairwise(waits)), waits
    assert limiter.acquire("example.com", max_wait=0.2) > 0.2, "too far off: nothing reserved"
    assert 0.3 < limiter.acquire("example.com", max_wait=1) <= 0.5 + 1e-6


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_a_domain_rate_holds_back_only_its_domain(kind: str, redis_limiters):
    limits = Limits(global_bucket=None, domain_rates={"gmail.com": 2.0}, quotas=[])
    limiter = redis_limiters(limits) if kind == "redis" else LocalRateLimiter(limits)
    assert _takes(limiter, "gmail.com", 5) == 2
    assert _takes(limiter, "example.com", 5) == 5


@pytest.mark.parametrize("kind", ["redis", "local"])
def test_a_quota_stops_until_the_next_window(kind: str, redis_limiters):
    limits = Limits(global_bucket=None, domain_rates={}, quotas=[Quota("hour", 3, 3600)])
    limiter = redis_limiters(limits) if kind == "redis" else LocalRateLimiter(limits)
    assert _takes(limiter, "example.com", 5) == 3
    wait = limiter.acquire("example.com", max_wait=5)
    assert 5 < wait <= 3600
    assert wait == pytest.approx(3600 - time.time() % 3600, abs=2)
