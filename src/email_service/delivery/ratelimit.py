"""Sending rates shared by every worker: a global bucket, one per domain, hourly and daily quotas.

Celery's own ``rate_limit`` is per worker process; these limits are global when RATE_LIMIT_REDIS_URL
(or a Redis broker) gives them a Redis, and per worker process without one (the embedded default) or
while it is unreachable (then on RATE_LIMIT_OUTAGE_SHARE of each). The quotas keep
TRANSACTIONAL_QUOTA_RESERVE of their limit for transactional mail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from email_service.config import Settings
from email_service.limiter import Limit, Limiter, TokenBucket, Window, make_limiter


@dataclass(frozen=True)
class SendLimits:
    global_bucket: TokenBucket | None = None
    domain_rates: dict[str, float] = field(default_factory=dict)  # messages per second
    quotas: Sequence[Window] = ()

    def any(self) -> bool:
        return bool(self.global_bucket or self.domain_rates or self.quotas)

    def for_domain(self, domain: str, *, with_global: bool = True) -> list[Limit]:
        limits: list[Limit] = [self.global_bucket] if self.global_bucket and with_global else []
        rate = self.domain_rates.get(domain.lower())
        if rate:
            limits.append(TokenBucket(f"domain:{domain.lower()}", rate, max(1.0, rate)))
        limits.extend(self.quotas)
        return limits


class RateLimiter:
    def __init__(self, limiter: Limiter, limits: SendLimits, outage_share: float = 1.0) -> None:
        self._limiter = limiter
        self._limits = limits
        self._outage_share = outage_share  # of each limit a process counts on while Redis is unreachable

    @property
    def global_burst(self) -> int | None:
        """The most slots of the global rate one reservation may take (None: there is no global rate): what
        the bucket holds, also the share of it a process counts on while Redis is unreachable."""
        bucket = self._limits.global_bucket
        return max(1, int(bucket.burst * self._outage_share)) if bucket is not None else None

    def acquire(self, domain: str, max_wait: float, *, transactional: bool = False, prepaid: bool = False) -> float:
        """Reserve the right to send one message to ``domain``: the seconds to wait before sending
        it (0.0: now). When the wait would exceed ``max_wait``, nothing is reserved and the wait is
        returned all the same, for the caller to give the message back until then. A ``prepaid``
        message holds its slot of the global rate already (``reserve_global``).

        Transactional mail may fill the quotas' reserve; bulk mail stops short of it. Bulk mail takes
        its global slots ahead of its claims, a little at a time (services.pacing): a transactional
        message reserves at once, behind no more than that."""
        limits = self._limits.for_domain(domain, with_global=not prepaid)
        if not limits:
            return 0.0
        return self._limiter.acquire(limits, 1, max_wait, use_reserve=transactional).wait

    def reserve_global(self, count: int, max_wait: float) -> float:
        """Reserve ``count`` slots of the global rate together: the seconds before they may be used.
        Nothing is reserved when that is over ``max_wait``."""
        assert self._limits.global_bucket is not None
        return self._limiter.acquire([self._limits.global_bucket], count, max_wait).wait

    def give_back_global(self, count: int) -> None:
        """Return reserved global slots that no message used."""
        if self._limits.global_bucket is not None and count > 0:
            self._limiter.give_back([self._limits.global_bucket], count)


def send_limits(settings: Settings) -> SendLimits:
    rate, reserve = settings.send_rate, settings.transactional_quota_reserve
    quotas = [
        Window("quota:hour", settings.hourly_quota, 3600, reserve) if settings.hourly_quota else None,
        Window("quota:day", settings.daily_quota, 86400, reserve) if settings.daily_quota else None,
    ]
    return SendLimits(
        global_bucket=TokenBucket("global", rate, settings.send_burst or max(1.0, rate)) if rate else None,
        domain_rates=settings.domain_rates,
        quotas=[q for q in quotas if q is not None],
    )


def make_rate_limiter(settings: Settings) -> RateLimiter | None:
    """The limiter the settings ask for; None when there is no limit at all."""
    limits = send_limits(settings)
    if not limits.any():
        return None
    prefix = f"{settings.celery_broker_key_prefix}ratelimit:"
    share = settings.rate_limit_outage_share if settings.rate_limit_redis else 1.0
    return RateLimiter(make_limiter(settings.rate_limit_redis, prefix, settings.rate_limit_outage_share), limits, share)
