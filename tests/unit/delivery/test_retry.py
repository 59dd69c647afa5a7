"""Retry times: exponential backoff with jitter, a shorter start when throttled, a lifetime."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from email_service.delivery.retry import RetryPolicy
from email_service.errors import TemporaryDeliveryError

POLICY = RetryPolicy(first_delay=300, max_delay=4000, lifetime=86400, throttle_delay=2)
ACCEPTED = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _delay(error: TemporaryDeliveryError, attempts: int, seed: int = 0, now: datetime = ACCEPTED) -> float:
    retry_at = POLICY.retry_at(error, attempts, ACCEPTED, now, random.Random(seed))
    assert retry_at is not None
    return (retry_at - now).total_seconds()


def test_delay_doubles_up_to_the_cap_with_half_of_it_random():
    busy = TemporaryDeliveryError(451, "try later")
    for attempts, full in [(1, 300), (2, 600), (3, 1200), (4, 2400), (5, 4000), (9, 4000)]:
        delays = [_delay(busy, attempts, seed) for seed in range(50)]
        assert all(full / 2 <= d <= full for d in delays)
        assert len(set(delays)) > 40, "jitter spreads retries"


def test_a_throttled_recipient_comes_back_sooner():
    throttled = TemporaryDeliveryError(454, "Throttling failure: Maximum sending rate exceeded")
    assert throttled.is_throttle and TemporaryDeliveryError(421, "busy").is_throttle
    assert 1 <= _delay(throttled, 1) <= 2
    assert not TemporaryDeliveryError(451, "later").is_throttle


def test_no_retry_past_the_lifetime():
    late = ACCEPTED + timedelta(seconds=86400 - 100)
    error = TemporaryDeliveryError(451, "try later")
    assert POLICY.retry_at(error, 3, ACCEPTED, late, random.Random(0)) is None
    assert POLICY.retry_at(TemporaryDeliveryError(454, "throttled"), 1, ACCEPTED, late, random.Random(0)) is not None
