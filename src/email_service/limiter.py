"""Rate limits: token buckets and clock-aligned windows, in Redis or in this process.

The one mechanism behind the workers' sending rates (``delivery.ratelimit``) and the API's per-key
quotas (``api.quotas``). In Redis every process shares the counts; without a Redis (the embedded
default) each process keeps its own, and while Redis is unreachable each process counts on its own on
a share of every limit (``FallbackLimiter``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, Protocol

import redis

log = logging.getLogger(__name__)

REDIS_TIMEOUT = 1.0  # seconds to connect to Redis or to read its answer: a hung Redis stalls a sender no longer
RETRY_INTERVAL = 1.0  # seconds between two tries of an unreachable Redis
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _rounded(value: float) -> float:
    """``value`` without its floating-point noise (100 * 0.3 is 30.000000000000004), before a floor or a ceiling."""
    return round(value, 9)


@dataclass(frozen=True)
class TokenBucket:
    key: str
    rate: float  # tokens per second
    burst: float  # most tokens it holds


@dataclass(frozen=True)
class Window:
    key: str
    limit: int
    seconds: int  # aligned on the clock: a minute, an hour, a UTC day
    reserve: float = 0.0  # share of the limit only acquisitions that ``use_reserve`` may fill

    def index(self, now: float) -> int:
        return int(now // self.seconds)

    def ceiling(self, use_reserve: bool) -> int:
        """How far an acquisition may fill the window: the whole limit with ``use_reserve``; otherwise the
        limit less its reserve, and at least one less than the limit when there is a reserve."""
        if use_reserve or not self.reserve:
            return self.limit
        kept = max(1, math.ceil(_rounded(self.limit * self.reserve)))
        return max(0, self.limit - kept)


Limit = TokenBucket | Window


@dataclass(frozen=True)
class Grant:
    wait: float  # seconds before what was asked for may be used; 0.0: now
    taken: bool  # False when the wait was over max_wait: then nothing was taken
    limit: Limit | None  # the limit that sets the wait, None when there is none


class Limiter(Protocol):
    def acquire(
        self, limits: Sequence[Limit], amount: float = 1, max_wait: float = 0.0, *, use_reserve: bool = False
    ) -> Grant:
        """Take ``amount`` from every one of ``limits`` at once, or from none of them.

        A bucket may go below zero: the caller is given a slot in the future (the grant's wait)
        instead of polling for the next token, so many waiting senders cost one call each. A window
        over its limit makes the caller wait for the next window; one with a reserve counts as over
        its limit at ``Window.ceiling(use_reserve)``, so that only callers that ``use_reserve`` fill
        the reserve (buckets have none). When the longest wait is over ``max_wait``, nothing is taken
        and the grant says how long it would have been.
        """

    def give_back(self, limits: Sequence[Limit], amount: float) -> None:
        """Return what an ``acquire`` took and its caller did not use."""


def make_limiter(redis_url: str | None, prefix: str, outage_share: float) -> Limiter:
    """The limiter in Redis, falling back on ``outage_share`` of each limit while Redis is unreachable;
    without Redis, the limiter of this process. Timeouts in the URL (``?socket_timeout=``) win."""
    if redis_url:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT)
        return FallbackLimiter(RedisLimiter(client, prefix), outage_share)
    return LocalLimiter()


# Every limit is checked and taken together, atomically, on Redis's clock. KEYS: one per limit;
# ARGV: amount, max_wait, then per limit its kind ('b' bucket, 'w' window) and two numbers:
# (rate, burst) or (the level this acquisition may fill the window up to, seconds). A negative amount
# gives back, never waits, and leaves buckets at most full and windows at least empty. Returns {wait,
# taken (0/1), index of the limit that sets the wait or 0}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local amount, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local wait, longest = 0, 0
local level = {}
for i = 1, #KEYS do
  local kind, a, b = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  local needed = 0
  if kind == 'b' then
    local saved = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local tokens = tonumber(saved[1]) or b
    local ts = tonumber(saved[2]) or now
    level[i] = math.min(b, tokens + (now - ts) * a)
    if amount > 0 and level[i] < amount then needed = (amount - level[i]) / a end
  else
    level[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
    if amount > 0 and level[i] + amount > a then needed = b - (now % b) end
  end
  if needed > wait then wait, longest = needed, i end
end
if wait > max_wait then return {tostring(wait), 0, longest} end
for i = 1, #KEYS do
  local kind, a, b = ARGV[3 * i], tonumber(ARGV[3 * i + 1]), tonumber(ARGV[3 * i + 2])
  if kind == 'b' then
    local tokens = math.min(b, level[i] - amount)
    redis.call('HSET', KEYS[i], 'tokens', tokens, 'ts', now)
    redis.call('EXPIRE', KEYS[i], math.ceil((b - tokens) / a) + 60)
  else
    redis.call('SET', KEYS[i], math.max(0, level[i] + amount), 'EX', b + 60)
  end
end
return {tostring(wait), 1, longest}
"""


class RedisLimiter:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_ACQUIRE)

    def acquire(
        self, limits: Sequence[Limit], amount: float = 1, max_wait: float = 0.0, *, use_reserve: bool = False
    ) -> Grant:
        now = time.time()
        keys: list[str] = []
        args: list[str | float] = [amount, max_wait]
        for limit in limits:
            if isinstance(limit, TokenBucket):
                keys.append(f"{self._prefix}bucket:{limit.key}")
                args += ["b", limit.rate, limit.burst]
            else:
                keys.append(f"{self._prefix}window:{limit.key}:{limit.index(now)}")
                args += ["w", limit.ceiling(use_reserve), limit.seconds]
        wait, taken, longest = self._script(keys=keys, args=args)
        return Grant(float(wait), bool(taken), limits[longest - 1] if longest else None)

    def give_back(self, limits: Sequence[Limit], amount: float) -> None:
        self.acquire(limits, -amount)


class LocalLimiter:
    """The same limits within one process, for a deployment without Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key: (tokens, when counted)
        self._windows: dict[str, tuple[int, float]] = {}  # key: (window index, used); older windows are dropped

    def acquire(
        self, limits: Sequence[Limit], amount: float = 1, max_wait: float = 0.0, *, use_reserve: bool = False
    ) -> Grant:
        now = time.time()
        with self._lock:
            levels: list[float] = []
            wait, longest = 0.0, None
            for limit in limits:
                level, needed = self._level(limit, amount, now, use_reserve)
                levels.append(level)
                if needed > wait:
                    wait, longest = needed, limit
            if wait > max_wait:
                return Grant(wait, False, longest)
            for limit, level in zip(limits, levels, strict=True):
                if isinstance(limit, TokenBucket):
                    self._buckets[limit.key] = (min(limit.burst, level - amount), now)
                else:
                    self._windows[limit.key] = (limit.index(now), max(0.0, level + amount))
            return Grant(wait, True, longest)

    def give_back(self, limits: Sequence[Limit], amount: float) -> None:
        self.acquire(limits, -amount)

    def _level(self, limit: Limit, amount: float, now: float, use_reserve: bool) -> tuple[float, float]:
        """The limit's level now and the seconds to wait before ``amount`` fits."""
        if isinstance(limit, TokenBucket):
            tokens, counted = self._buckets.get(limit.key, (limit.burst, now))
            tokens = min(limit.burst, tokens + (now - counted) * limit.rate)
            return tokens, (amount - tokens) / limit.rate if amount > 0 and tokens < amount else 0.0
        index, used = self._windows.get(limit.key, (limit.index(now), 0.0))
        if index != limit.index(now):
            used = 0.0
        full = amount > 0 and used + amount > limit.ceiling(use_reserve)
        return used, (limit.seconds - now % limit.seconds) if full else 0.0


class FallbackLimiter:
    """A shared limiter in Redis that, while Redis does not answer, counts in this process on a share of
    each limit: sending goes on, more slowly, instead of failing, and the shared counts are back as soon
    as Redis answers. What was taken during the outage is not in Redis's windows: each process may add
    up to its share of a window's limit to that window's shared count."""

    def __init__(self, shared: Limiter, outage_share: float, retry_interval: float = RETRY_INTERVAL) -> None:
        self._shared = shared
        self._local = LocalLimiter()
        self._share = outage_share
        self._retry_interval = retry_interval
        self._lock = threading.Lock()
        self._retry_at: float | None = None  # monotonic time Redis may be tried again; None while it answers

    def acquire(
        self, limits: Sequence[Limit], amount: float = 1, max_wait: float = 0.0, *, use_reserve: bool = False
    ) -> Grant:
        route = self._route()
        if route != "local":
            try:
                grant = self._shared.acquire(limits, amount, max_wait, use_reserve=use_reserve)
            except REDIS_DOWN as error:
                self._failed(error)
            else:
                if route == "retry":
                    self._recovered()
                return grant
        scaled = {self._scaled(limit): limit for limit in limits}
        grant = self._local.acquire(list(scaled), amount, max_wait, use_reserve=use_reserve)
        caller_limit = scaled[grant.limit] if grant.limit is not None else None
        return replace(grant, limit=caller_limit)  # the limit the caller gave, not its share

    def give_back(self, limits: Sequence[Limit], amount: float) -> None:
        """Give back where the limits are counted now; what Redis does not receive is dropped (that
        limit is only the stricter for it)."""
        route = self._route()
        if route == "local":
            self._local.give_back([self._scaled(limit) for limit in limits], amount)
            return
        try:
            self._shared.give_back(limits, amount)
        except REDIS_DOWN as error:
            self._failed(error)
        else:
            if route == "retry":
                self._recovered()

    def _route(self) -> Literal["redis", "retry", "local"]:
        """Redis while it answers; during an outage, one caller per retry interval tries it again and
        the others count here meanwhile, so that a dead Redis is not asked once a message."""
        with self._lock:
            if self._retry_at is None:
                return "redis"
            now = time.monotonic()
            if now < self._retry_at:
                return "local"
            self._retry_at = now + self._retry_interval
            return "retry"

    def _failed(self, error: Exception) -> None:
        with self._lock:
            starts = self._retry_at is None
            self._retry_at = time.monotonic() + self._retry_interval
        if starts:
            log.warning(
                "rate limits: Redis unreachable (%s); each process counts on its own on %g of every limit "
                "until Redis answers again",
                error,
                self._share,
            )

    def _recovered(self) -> None:
        """Only a retry ends an outage: an answer to a call made before it began says nothing of Redis now."""
        with self._lock:
            ends = self._retry_at is not None  # two retries may overlap when Redis is slow
            self._retry_at = None
        if ends:
            log.info("rate limits: Redis answers again; the shared limits are back")

    def _scaled(self, limit: Limit) -> Limit:
        """``limit`` cut to this process's share, still letting one message through at once."""
        if isinstance(limit, TokenBucket):
            return TokenBucket(limit.key, limit.rate * self._share, max(1.0, limit.burst * self._share))
        return replace(limit, limit=max(1, math.floor(_rounded(limit.limit * self._share))))
