"""Per account quotas (all its keys together): requests per minute, recipients per minute and per UTC day.

Clock-aligned windows of ``email_service.limiter``, shared by every API process through Redis or,
without Redis, counted in this process. A request over a quota is refused before anything is
stored, so nothing over it reaches the relay. While Redis is unreachable each process counts on its
own on RATE_LIMIT_OUTAGE_SHARE of each quota: no request fails for the outage, and one over that
share is refused with 429 and Retry-After like any request over its quota.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flask import current_app

from email_service.config import Settings
from email_service.errors import TooManyRequests
from email_service.limiter import Limiter, Window, make_limiter


@dataclass(frozen=True)
class KeyQuota:
    name: str  # what the caller is told
    kind: str  # requests or recipients
    limit: int
    seconds: int


class KeyQuotas:
    def __init__(self, quotas: list[KeyQuota], limiter: Limiter) -> None:
        self._quotas = quotas
        self._limiter = limiter

    def take(self, account: str, kind: str, amount: int) -> None:
        """Count ``amount`` requests or recipients for ``account``; TooManyRequests, with nothing counted,
        when that would go over a quota."""
        windows = self._windows(account, kind)
        grant = self._limiter.acquire(list(windows), amount, max_wait=0)
        if not grant.taken:
            assert isinstance(grant.limit, Window)
            quota = windows[grant.limit]
            retry_after = max(1, math.ceil(grant.wait))
            raise TooManyRequests(
                f"quota of {quota.limit} {quota.name} for this account reached; try again in {retry_after} s",
                retry_after=retry_after,
            )

    def give_back(self, account: str, kind: str, amount: int) -> None:
        """Uncount what a refused request had taken."""
        if amount:
            self._limiter.give_back(list(self._windows(account, kind)), amount)

    def _windows(self, account: str, kind: str) -> dict[Window, KeyQuota]:
        return {
            Window(f"account:{account}:{q.kind}:{q.seconds}", q.limit, q.seconds): q
            for q in self._quotas
            if q.kind == kind
        }


def make_key_quotas(settings: Settings) -> KeyQuotas | None:
    quotas = [
        KeyQuota("requests per minute", "requests", settings.key_requests_per_minute, 60),
        KeyQuota("recipients per minute", "recipients", settings.key_recipients_per_minute, 60),
        KeyQuota("recipients per day", "recipients", settings.key_recipients_per_day, 86400),
    ]
    quotas = [q for q in quotas if q.limit]
    if not quotas:
        return None
    prefix = f"{settings.celery_broker_key_prefix}quota:"
    return KeyQuotas(quotas, make_limiter(settings.rate_limit_redis, prefix, settings.rate_limit_outage_share))


def take(account: str | None, kind: str, amount: int) -> None:
    """Count for the calling account, if there are quotas (not when authentication is off)."""
    quotas: KeyQuotas | None = current_app.extensions.get("key_quotas")
    if quotas is not None and account is not None:
        quotas.take(account, kind, amount)


def give_back(account: str | None, kind: str, amount: int) -> None:
    quotas: KeyQuotas | None = current_app.extensions.get("key_quotas")
    if quotas is not None and account is not None:
        quotas.give_back(account, kind, amount)
