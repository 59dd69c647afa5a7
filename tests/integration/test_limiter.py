"""The limiter in Redis, shared by every process (its in-process twin: tests/unit/test_limiter.py), and
what it does while Redis is down or hangs."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from email_service.delivery.ratelimit import RateLimiter, SendLimits
from email_service.limiter import FallbackLimiter, RedisLimiter, TokenBucket, Window, make_limiter
from tests.support.limits import LimiterBehaviour
from tests.support.private_redis import PrivateRedis
from tests.support.servers import REDIS_URL

OUTAGE_SHARE = 0.25


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


class TestFallbackLimiterWhileRedisAnswers(LimiterBehaviour):
    @pytest.fixture
    def limiter(self, redis_limiters: Callable[[], RedisLimiter]) -> FallbackLimiter:
        return FallbackLimiter(redis_limiters(), OUTAGE_SHARE)


def test_the_redis_bucket_is_shared_by_every_worker(redis_limiters: Callable[[], RedisLimiter]):
    limits = SendLimits(global_bucket=TokenBucket("global", rate=1, burst=6))
    first, second = RateLimiter(redis_limiters(), limits), RateLimiter(redis_limiters(), limits)
    taken = [first.acquire("a.com", max_wait=0) == 0 for _ in range(4)]
    taken += [second.acquire("b.com", max_wait=0) == 0 for _ in range(4)]
    assert sum(taken) == 6


def test_sending_goes_on_at_the_outage_share_while_redis_is_down_then_back_on_redis(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="email_service.limiter")
    rate, burst = 40.0, 20.0  # while Redis is down: 10/s and 5 at once
    bucket = TokenBucket("global", rate, burst)
    rates = RateLimiter(make_limiter(private_redis.url, "test:", OUTAGE_SHARE), SendLimits(global_bucket=bucket))
    grants: list[tuple[float, float]] = []  # (when answered, wait)
    errors: list[BaseException] = []
    stop = threading.Event()

    def send() -> None:
        while not stop.is_set():
            try:
                grants.append((time.monotonic(), rates.acquire("example.com", max_wait=0)))
            except BaseException as error:
                errors.append(error)
                return
            time.sleep(0.002)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        time.sleep(0.3)
        private_redis.stop()
        down = time.monotonic()
        time.sleep(2)
        up = time.monotonic()
        private_redis.start()  # empty: a key in it is an acquisition counted in Redis again
        client = redis.Redis.from_url(private_redis.url)
        deadline = time.monotonic() + 10
        while not client.keys("test:*"):
            assert time.monotonic() < deadline, "acquisitions did not go back to Redis"
            time.sleep(0.05)
        client.close()
    finally:
        stop.set()
        sender.join(10)
    assert errors == []
    during = [wait for answered, wait in grants if down <= answered <= up]
    sent_at_once = sum(wait == 0 for wait in during)
    # The local bucket starts full when the outage does; one more for a Redis answer read just after the kill.
    assert 1 <= sent_at_once <= burst * OUTAGE_SHARE + rate * OUTAGE_SHARE * (up - down) + 1
    assert len(during) > sent_at_once, "the local share made callers wait"
    lines = [r.getMessage().split(" (")[0].split(";")[0] for r in caplog.records]
    assert lines == ["rate limits: Redis unreachable", "rate limits: Redis answers again"]


def test_a_redis_that_hangs_holds_a_sender_for_its_timeout_only(private_redis: PrivateRedis):
    limiter = make_limiter(private_redis.url, "test:", OUTAGE_SHARE)
    window = Window("w", 100, 3600)  # while Redis is down: 25
    assert limiter.acquire([window]).taken
    private_redis.pause()
    try:
        started = time.monotonic()
        first = limiter.acquire([window])
        held = time.monotonic() - started
        then = [limiter.acquire([window]).taken for _ in range(30)]
    finally:
        private_redis.resume()
    assert first.taken and held < 3, f"held {held:.1f} s; the client's read timeout is 1 s"
    assert sum(then) == 24, "counted here on the outage share"
