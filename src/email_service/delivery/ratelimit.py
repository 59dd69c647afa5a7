"""Sending rates shared by every worker: token buckets and quotas in Redis.

Celery's own ``rate_limit`` is per worker process; these buckets are global. Without a Redis
(the embedded default) the same limits hold per worker process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import redis

from email_service.config import Settings


@dataclass(frozen=True)
class Bucket:
    name: str
    rate: float  # tokens per second
    burst: float  # most tokens it holds


@dataclass(frozen=True)
class Quota:
    name: str
    limit: int
    window: int  # seconds, aligned on the clock (hour, UTC day)


class RateLimiter(Protocol):
    def acquire(self, domain: str, max_wait: float) -> float:
        """Reserve the right to send one message to ``domain``: the seconds to wait before sending
        it (0.0: now). When the wait would exceed ``max_wait``, nothing is reserved and the wait is
        returned all the same, for the caller to give the message back until then.

        A reservation is one call per message, however many senders wait: each is given its own
        slot in the future instead of polling for the next token.
        """


def make_rate_limiter(settings: Settings) -> RateLimiter | None:
    """The limiter the settings ask for; None when there is no limit at all."""
    quotas = [
        Quota("hour", settings.hourly_quota, 3600) if settings.hourly_quota else None,
        Quota("day", settings.daily_quota, 86400) if settings.daily_quota else None,
    ]
    limits = Limits(
        global_bucket=Bucket("global", settings.send_rate, settings.send_burst or max(1.0, settings.send_rate))
        if settings.send_rate
        else None,
        domain_rates=settings.domain_rates,
        quotas=[q for q in quotas if q is not None],
    )
    if not limits.any():
        return None
    url = settings.rate_limit_redis
    if url:
        return RedisRateLimiter(
            redis.Redis.from_url(url), limits, prefix=f"{settings.celery_broker_key_prefix}ratelimit:"
        )
    return LocalRateLimiter(limits)


@dataclass(frozen=True)
class Limits:
    global_bucket: Bucket | None
    domain_rates: dict[str, float]
    quotas: Sequence[Quota]

    def any(self) -> bool:
        return bool(self.global_bucket or self.domain_rates or self.quotas)

    def buckets_for(self, domain: str) -> list[Bucket]:
        buckets = [self.global_bucket] if self.global_bucket else []
        rate = self.domain_rates.get(domain.lower())
        if rate:
            buckets.append(Bucket(f"domain:{domain.lower()}", rate, max(1.0, rate)))
        return buckets


# All buckets and quotas are checked and taken together, atomically, on Redis's clock. A bucket's
# tokens go below zero while slots are reserved ahead. KEYS: bucket keys, then quota keys.
# ARGV: max_wait, n_buckets, then (rate, burst) per bucket, then (limit, window) per quota.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local max_wait, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait = 0
local state = {}
for i = 1, n do
  local rate, burst = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  local saved = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(saved[1]) or burst
  local ts = tonumber(saved[2]) or now
  tokens = math.min(burst, tokens + (now - ts) * rate)
  if tokens < 1 then wait = math.max(wait, (1 - tokens) / rate) end
  state[i] = tokens
end
for j = n + 1, #KEYS do
  local limit, window = tonumber(ARGV[2 * j + 1]), tonumber(ARGV[2 * j + 2])
  local used = tonumber(redis.call('GET', KEYS[j]) or '0')
  if used >= limit then wait = math.max(wait, window - (now % window)) end
end
if wait > max_wait then return tostring(wait) end
for i = 1, n do
  local rate, burst = tonumber(ARGV[2 * i + 1]), tonumber(ARGV[2 * i + 2])
  redis.call('HSET', KEYS[i], 'tokens', state[i] - 1, 'ts', now)
  redis.call('EXPIRE', KEYS[i], math.ceil((burst + max_wait * rate) / rate) + 60)
end
for j = n + 1, #KEYS do
  local window = tonumber(ARGV[2 * j + 2])
  if redis.call('INCR', KEYS[j]) == 1 then redis.call('EXPIRE', KEYS[j], window + 60) end
end
return tostring(wait)
"""


class RedisRateLimiter:
    def __init__(self, client: redis.Redis, limits: Limits, prefix: str) -> None:
        self._client = client
        self._limits = limits
        self._prefix = prefix
        self._script = client.register_script(_ACQUIRE)

    def acquire(self, domain: str, max_wait: float) -> float:
        buckets = self._limits.buckets_for(domain)
        now = time.time()
        keys = [f"{self._prefix}bucket:{b.name}" for b in buckets]
        keys += [f"{self._prefix}quota:{q.name}:{int(now // q.window)}" for q in self._limits.quotas]
        args: list[float] = [max_wait, len(buckets)]
        for bucket in buckets:
            args += [bucket.rate, bucket.burst]
        for quota in self._limits.quotas:
            args += [quota.limit, quota.window]
        return float(self._script(keys=keys, args=args))


class LocalRateLimiter:
    """The same limits within one process, for a deployment without Redis."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, float]] = {}
        self._used: dict[str, int] = {}

    def acquire(self, domain: str, max_wait: float) -> float:
        now = time.time()
        with self._lock:
            buckets = self._limits.buckets_for(domain)
            levels = {}
            wait = 0.0
            for bucket in buckets:
                tokens, ts = self._tokens.get(bucket.name, (bucket.burst, now))
                tokens = min(bucket.burst, tokens + (now - ts) * bucket.rate)
                levels[bucket.name] = tokens
                if tokens < 1:
                    wait = max(wait, (1 - tokens) / bucket.rate)
            windows = {q.name: f"{q.name}:{int(now // q.window)}" for q in self._limits.quotas}
            for quota in self._limits.quotas:
                if self._used.get(windows[quota.name], 0) >= quota.limit:
                    wait = max(wait, quota.window - now % quota.window)
            if wait > max_wait:
                return wait
            for name, tokens in levels.items():
                self._tokens[name] = (tokens - 1, now)
            # Keep only the current windows' counts: the past ones no longer matter.
            self._used = {key: self._used.get(key, 0) + 1 for key in windows.values()}
            return wait
