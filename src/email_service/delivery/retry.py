"""When a deferred recipient is tried again: exponential backoff with jitter, within a lifetime."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from email_service.config import Settings
from email_service.errors import DeliveryError


@dataclass(frozen=True)
class RetryPolicy:
    first_delay: float
    max_delay: float
    lifetime: float
    throttle_delay: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.retry_first_delay, settings.retry_max_delay, settings.retry_lifetime, settings.throttle_delay
        )

    def retry_at(
        self, error: DeliveryError, attempts: int, accepted_at: datetime, now: datetime, rng: random.Random
    ) -> datetime | None:
        """When to try again after ``attempts`` attempts; None when the lifetime is over.

        A throttled recipient starts from the shorter throttle delay: the relay asked us to slow
        down, not to wait hours.
        """
        base = self.throttle_delay if error.is_throttle else self.first_delay
        retry_at = now + timedelta(seconds=backoff_delay(base, self.max_delay, attempts, rng))
        if retry_at > accepted_at + timedelta(seconds=self.lifetime):
            return None
        return retry_at


def backoff_delay(base: float, cap: float, attempts: int, rng: random.Random) -> float:
    """Seconds before attempt ``attempts + 1``: doubling from ``base`` up to ``cap``, with "equal
    jitter" (half fixed, half random) so that retries of many items do not arrive together."""
    delay = min(cap, base * 2.0 ** max(0, attempts - 1))
    return delay / 2 + rng.uniform(0, delay / 2)
