"""Per-key quotas on the in-process limiter (through the HTTP API and Redis: tests/integration/api/test_quotas.py)."""

from __future__ import annotations

import pytest
import redis

from email_service.api.quotas import KeyQuota, KeyQuotas, make_key_quotas
from email_service.config import Settings
from email_service.errors import TooManyRequests
from email_service.limiter import FallbackLimiter, Limiter, LocalLimiter, RedisLimiter
from tests.support.limits import FlakyRedis


def _quotas(limiter: Limiter | None = None) -> KeyQuotas:
    return KeyQuotas(
        [
            KeyQuota("recipients per minute", "recipients", 10, 60),
            KeyQuota("recipients per day", "recipients", 12, 86400),
        ],
        limiter or LocalLimiter(),
    )


def test_the_quota_reached_is_named_with_when_to_try_again():
    quotas = _quotas()
    quotas.take("alice", "recipients", 8)
    with pytest.raises(TooManyRequests, match="quota of 10 recipients per minute") as refused:
        quotas.take("alice", "recipients", 3)
    assert 1 <= refused.value.retry_after <= 60
    quotas.take("bob", "recipients", 10)  # each key has its own count
    quotas.take("alice", "recipients", 2)
    with pytest.raises(TooManyRequests, match="quota of 12 recipients per day"):
        quotas.take("alice", "recipients", 3)


def test_what_a_refused_request_gave_back_counts_no_more():
    quotas = _quotas()
    quotas.take("alice", "recipients", 9)
    quotas.give_back("alice", "recipients", 9)
    quotas.take("alice", "recipients", 10)
    quotas.take("alice", "requests", 1000)  # no quota on requests


def test_no_quota_setting_means_no_quotas():
    assert make_key_quotas(Settings()) is None
    assert make_key_quotas(Settings(key_requests_per_minute=5)) is not None


def test_while_redis_is_down_a_request_is_counted_on_a_share_of_the_quota_never_failed():
    flaky = FlakyRedis()
    flaky.down = redis.exceptions.ConnectionError
    quotas = _quotas(FallbackLimiter(RedisLimiter(flaky, "test:"), outage_share=0.5))  # type: ignore[arg-type]
    quotas.take("alice", "recipients", 5)
    with pytest.raises(TooManyRequests, match="quota of 10 recipients per minute") as refused:
        quotas.take("alice", "recipients", 1)
    assert 1 <= refused.value.retry_after <= 60
    quotas.give_back("alice", "recipients", 5)
    quotas.take("alice", "recipients", 5)
