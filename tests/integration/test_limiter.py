"""The limiter in Redis, shared by every process (its in-process twin: tests/unit/test_limiter.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from email_service.delivery.ratelimit import RateLimiter, SendLimits
from email_service.limiter import RedisLimiter, TokenBucket
from tests.support.limits import LimiterBehaviour
from tests.support.servers import REDIS_URL


@pytest.fixture
def redis_limiters(redis_prefix: str) -> Iterator[Callable[[], RedisLimiter]]:
    """Limiters sharing one new key space, as the processes of one deployment do."""
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"{redis_prefix}{uuid.uuid4().hex[:8]}:"
    yield lambda: RedisLimiter(client, prefix)
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)


class TestRedisLimiter(LimiterBehaviour):
    @pytest.fixture
    def limiter(self, redis_limiters: Callable[[], RedisLimiter]) -> RedisLimiter:
        return redis_limiters()


def test_the_redis_bucket_is_shared_by_every_worker(redis_limiters: Callable[[], RedisLimiter]):
    limits = SendLimits(global_bucket=TokenBucket("global", rate=1, burst=6))
    first, second = RateLimiter(redis_limiters(), limits), RateLimiter(redis_limiters(), limits)
    taken = [first.acquire("a.com", max_wait=0) == 0 for _ in range(4)]
    taken += [second.acquire("b.com", max_wait=0) == 0 for _ in range(4)]
    assert sum(taken) == 6
