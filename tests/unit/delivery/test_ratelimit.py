"""The workers' sending limits as the settings give them (their behaviour: tests/support/limits.py)."""

from __future__ import annotations

import pytest

from email_service.config import Settings, parse_domain_rates
from email_service.delivery.ratelimit import make_rate_limiter, send_limits
from email_service.limiter import FallbackLimiter, LocalLimiter, TokenBucket, Window


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
    assert isinstance(make_rate_limiter(Settings(send_rate=10))._limiter, LocalLimiter)
    redis_broker = Settings(send_rate=10, celery_broker_url="redis://127.0.0.1:1/0")
    assert isinstance(make_rate_limiter(redis_broker)._limiter, FallbackLimiter)


def test_each_domain_meets_the_global_bucket_its_own_rate_and_the_quotas():
    limits = send_limits(
        Settings(send_rate=5, domain_rates="Gmail.com=2/s", hourly_quota=100, daily_quota=1000)  # type: ignore[arg-type]
    )
    assert limits.for_domain("GMAIL.com") == [
        TokenBucket("global", 5, 5),
        TokenBucket("domain:gmail.com", 2.0, 2.0),
        Window("quota:hour", 100, 3600, reserve=0.1),
        Window("quota:day", 1000, 86400, reserve=0.1),
    ]
    assert limits.for_domain("example.com") == [
        TokenBucket("global", 5, 5),
        Window("quota:hour", 100, 3600, reserve=0.1),
        Window("quota:day", 1000, 86400, reserve=0.1),
    ]
    assert send_limits(Settings(send_rate=5, send_burst=50)).global_bucket == TokenBucket("global", 5, 50)


def test_the_reserve_setting_applies_to_the_quotas_only():
    limits = send_limits(Settings(send_rate=5, hourly_quota=20, transactional_quota_reserve=0.25))
    assert limits.quotas == [Window("quota:hour", 20, 3600, reserve=0.25)]
    assert limits.global_bucket == TokenBucket("global", 5, 5)
