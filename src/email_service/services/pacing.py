"""Bulk work's slots under the global sending rate, reserved before its recipients are claimed.

With SEND_RATE set, the rate, not the threads, bounds how fast mail goes. A thread that claimed
recipients and then queued for slots would hold them for as long as the queue is long: a job posted
behind a big one would wait for all the big one's claims to drain before its turn counts, and a
transactional message would queue behind every reserved slot. So a thread serving bulk work first
reserves the slots of its next claim, then claims, at that moment, the recipients of the job whose
turn it is, and sends them at once. Reservations are made one at a time in a process, each at most
BULK_RESERVATION_SECONDS ahead of its use: the rate's queue holds little bulk work, and transactional
messages, which reserve at once, find little before them. A thread waiting for slots holds no
recipient and gives up its wait as soon as transactional work is due.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from email_service.delivery.ratelimit import RateLimiter

# How far ahead of their use a process reserves bulk slots.
BULK_RESERVATION_SECONDS = 0.05
# How often a thread waiting for slots looks whether transactional work is due (one read per process).
TRANSACTIONAL_CHECK_SECONDS = 0.05


class SlotPacer:
    def __init__(
        self,
        limiter: RateLimiter,
        transactional_due: Callable[[], bool],
        stopping: threading.Event,
        rng: random.Random,
    ) -> None:
        burst = limiter.global_burst
        assert burst is not None, "pacing is for a global rate"
        self._limiter = limiter
        self._most = burst
        self._transactional_due = transactional_due
        self._stopping = stopping
        self._rng = rng
        self._reserving = threading.Lock()  # one reservation at a time in the process
        self._checked_at = float("-inf")
        self._due = False
        self._check = threading.Lock()

    def reserve(self, count: int) -> int | None:
        """Block until ``count`` slots (at most the rate's burst) are reserved and near: how many. None
        when transactional work is due meanwhile (it goes first) or the process stops."""
        count = max(1, min(count, self._most))
        while not self._reserving.acquire(timeout=TRANSACTIONAL_CHECK_SECONDS):
            if self._interrupted():
                return None
        try:
            while True:
                if self._interrupted():
                    return None
                wait = self._limiter.reserve_global(count, BULK_RESERVATION_SECONDS)
                if wait <= BULK_RESERVATION_SECONDS:
                    break
                # Come back when the slots are near; a short nap at a time, to see transactional work.
                pause = wait - BULK_RESERVATION_SECONDS + self._rng.uniform(0, BULK_RESERVATION_SECONDS)
                self._stopping.wait(min(pause, TRANSACTIONAL_CHECK_SECONDS))
        finally:
            self._reserving.release()
        self._stopping.wait(wait)
        return count

    def give_back(self, count: int) -> None:
        self._limiter.give_back_global(count)

    def _interrupted(self) -> bool:
        return self._stopping.is_set() or self._transactional_due_now()

    def _transactional_due_now(self) -> bool:
        """Whether transactional work is due, read at most every TRANSACTIONAL_CHECK_SECONDS."""
        with self._check:
            if time.monotonic() - self._checked_at >= TRANSACTIONAL_CHECK_SECONDS:
                self._checked_at = time.monotonic()
                self._due = self._transactional_due()
            due, self._due = self._due, False  # one waiting thread goes for it; the others at the next read
            return due
