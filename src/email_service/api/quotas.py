"""Per API key quotas: requests per minute, recipients per minute and per UTC day.

Fixed windows counted in Redis (shared by every API process) or, without Redis, in this process.
A request over a quota is refused before anything is stored, so nothing over it reaches the relay.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import redis
from flask import current_app

from email_service.config import Settings
from email_service.errors import TooManyRequests


@dataclass(frozen=True)
class Window:
    name: str  # what the caller is told
    kind: str  # requests or recipients
    limit: int
    seconds: int


class Counter(Protocol):
    def add(self, key: str, amount: int, seconds: int) -> int:
        """Add ``amount`` to the counter ``key`` (which expires with its window); its new value."""


class RedisCounter:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix

    def add(self, key: str, amount: int, seconds: int) -> int:
        pipeline = self._client.pipeline()
        pipeline.incrby(self._prefix + key, amount)
        pipeline.expire(self._prefix + key, seconds + 60)
        value, _ = pipeline.execute()
        return int(value)


class LocalCounter:
    """Without Redis: counts of this process only (each gunicorn worker has its own)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, key: str, amount: int, seconds: int) -> int:
        with self._lock:
            if len(self._counts) > 100_000:  # old windows are never read again
                self._counts.clear()
            self._counts[key] = self._counts.get(key, 0) + amount
            return self._counts[key]


class KeyQuotas:
    def __init__(self, windows: list[Window], counter: Counter) -> None:
        self._windows = windows
        self._counter = counter

    def take(self, owner: str, kind: str, amount: int) -> None:
        """Count ``amount`` requests or recipients for ``owner``; TooManyRequests, with nothing counted,
        when that would go over a quota."""
        now = time.time()
        taken: list[tuple[str, int]] = []
        for window in (w for w in self._windows if w.kind == kind):
            start = math.floor(now / window.seconds) * window.seconds
            key = f"{owner}:{window.kind}:{window.seconds}:{start}"
            value = self._counter.add(key, amount, window.seconds)
            taken.append((key, window.seconds))
            if value > window.limit:
                for counted, seconds in taken:
                    self._counter.add(counted, -amount, seconds)
                retry_after = max(1, math.ceil(start + window.seconds - now))
                raise TooManyRequests(
                    f"quota of {window.limit} {window.name} for this API key reached; try again in {retry_after} s",
                    retry_after=retry_after,
                )

    def give_back(self, owner: str, kind: str, amount: int) -> None:
        """Uncount what a refused request had taken."""
        if not amount:
            return
        now = time.time()
        for window in (w for w in self._windows if w.kind == kind):
            start = math.floor(now / window.seconds) * window.seconds
            self._counter.add(f"{owner}:{window.kind}:{window.seconds}:{start}", -amount, window.seconds)


def make_key_quotas(settings: Settings) -> KeyQuotas | None:
    windows = [
        Window("requests per minute", "requests", settings.key_requests_per_minute, 60),
        Window("recipients per minute", "recipients", settings.key_recipients_per_minute, 60),
        Window("recipients per day", "recipients", settings.key_recipients_per_day, 86400),
    ]
    windows = [w for w in windows if w.limit]
    if not windows:
        return None
    url = settings.rate_limit_redis
    counter: Counter = (
        RedisCounter(redis.Redis.from_url(url), f"{settings.celery_broker_key_prefix}quota:") if url else LocalCounter()
    )
    return KeyQuotas(windows, counter)


def take(owner: str | None, kind: str, amount: int) -> None:
    """Count for the calling key, if it has quotas (not when authentication is off)."""
    quotas: KeyQuotas | None = current_app.extensions.get("key_quotas")
    if quotas is not None and owner is not None:
        quotas.take(owner, kind, amount)


def give_back(owner: str | None, kind: str, amount: int) -> None:
    quotas: KeyQuotas | None = current_app.extensions.get("key_quotas")
    if quotas is not None and owner is not None:
        quotas.give_back(owner, kind, amount)
