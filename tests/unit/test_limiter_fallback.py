"""The Redis limiter's fallback while Redis is unreachable, over a Redis client that fails on cue (with a
real Redis stopped and paused: tests/integration/test_limiter.py)."""

from __future__ import annotations

import logging

import pytest
import redis

from email_service.limiter import FallbackLimiter, RedisLimiter, TokenBucket, Window, make_limiter
from tests.support.limits import FlakyRedis

OUTAGE_SHARE = 0.25


@pytest.fixture
def flaky() -> FlakyRedis:
    return FlakyRedis()


@pytest.fixture
def limiter(flaky: FlakyRedis) -> FallbackLimiter:
    return FallbackLimiter(RedisLimiter(flaky, "test:"), OUTAGE_SHARE)  # type: ignore[arg-type]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The monotonic time the limiter reads: one element to move forward."""
    now = [1000.0]
    monkeypatch.setattr("email_service.limiter.time.monotonic", lambda: now[0])
    return now


@pytest.mark.parametrize("error", [redis.exceptions.ConnectionError, redis.exceptions.TimeoutError])
def test_while_redis_is_down_each_limit_is_cut_to_the_outage_share(
    limiter: FallbackLimiter, flaky: FlakyRedis, error: type[redis.RedisError]
):
    flaky.down = error
    bucket, window = TokenBucket("b", rate=0.001, burst=8), Window("w", 12, 3600)
    assert [limiter.acquire([bucket]).taken for _ in range(3)] == [True, True, False]
    assert [limiter.acquire([window]).taken for _ in range(4)] == [True, True, True, False]
    refused = limiter.acquire([window])
    assert refused.limit is window, "the caller's own limit, not its share"


def test_a_small_limit_still_lets_one_message_through_during_an_outage(limiter: FallbackLimiter, flaky: FlakyRedis):
    flaky.down = redis.exceptions.ConnectionError
    bucket, window = TokenBucket("b", rate=0.001, burst=1), Window("w", 2, 3600)
    assert [limiter.acquire([bucket, window]).taken for _ in range(2)] == [True, False]


def test_the_reserve_holds_on_the_outage_share(limiter: FallbackLimiter, flaky: FlakyRedis):
    flaky.down = redis.exceptions.ConnectionError
    hour = Window("hour", 40, 3600, reserve=0.25)  # its share: 10, of which bulk mail 7
    assert sum(limiter.acquire([hour]).taken for _ in range(10)) == 7
    assert sum(limiter.acquire([hour], use_reserve=True).taken for _ in range(10)) == 3


def test_a_down_redis_is_tried_once_a_second_then_used_again_with_one_log_line_each_way(
    limiter: FallbackLimiter,
    flaky: FlakyRedis,
    clock: list[float],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(logging.getLogger("email_service"), "propagate", True)  # configure_logging may have cut it
    caplog.set_level(logging.INFO, logger="email_service.limiter")
    window = Window("w", 1000, 3600)
    flaky.down = redis.exceptions.ConnectionError
    for _ in range(20):
        assert limiter.acquire([window]).taken
    assert flaky.calls == 1, "the first failure only"
    clock[0] += 0.5
    limiter.acquire([window])
    assert flaky.calls == 1
    clock[0] += 0.6
    for _ in range(20):
        assert limiter.acquire([window]).taken
    assert flaky.calls == 2, "one retry, still down"
    flaky.down = None
    clock[0] += 1.1
    for _ in range(5):
        assert limiter.acquire([window]).taken
    assert flaky.calls == 3 + 4, "Redis again for every acquisition once it answered"
    assert [(r.levelname, r.getMessage().split(";")[0]) for r in caplog.records] == [
        ("WARNING", "rate limits: Redis unreachable (Error 111 connecting to 127.0.0.1:6379. Connection refused.)"),
        ("INFO", "rate limits: Redis answers again"),
    ]


def test_giving_back_during_an_outage_never_raises(limiter: FallbackLimiter, flaky: FlakyRedis, clock: list[float]):
    window = Window("w", 8, 3600)  # its share: 2
    flaky.down = redis.exceptions.ConnectionError
    limiter.give_back([window], 1)  # to Redis, which does not answer: dropped
    assert flaky.calls == 1
    assert [limiter.acquire([window]).taken for _ in range(3)] == [True, True, False]
    limiter.give_back([window], 1)  # counted here, given back here
    assert limiter.acquire([window]).taken
    assert flaky.calls == 1


def test_an_error_of_the_script_itself_is_not_an_outage(limiter: FallbackLimiter, flaky: FlakyRedis):
    flaky.down = redis.exceptions.ResponseError
    with pytest.raises(redis.exceptions.ResponseError):
        limiter.acquire([Window("w", 10, 3600)])


def test_a_limiter_on_a_closed_port_counts_here_instead_of_failing():
    limiter = make_limiter("redis://127.0.0.1:1/0", "test:", OUTAGE_SHARE)
    assert [limiter.acquire([Window("w", 8, 3600)]).taken for _ in range(3)] == [True, True, False]
