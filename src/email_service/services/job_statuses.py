"""A job's status as a worker process's batches see it: read from the database at most once a second.

Every batch of a job checks whether it was paused or cancelled meanwhile; fifty threads of one process
sending the same job would otherwise ask fifty times a second. A value is handed out only while it is
younger than MAX_AGE_SECONDS, so a batch that asks MAX_AGE_SECONDS after its claim sees a status read
after that claim (a job resumed before the claim is never taken for paused).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from email_service.storage import jobs

MAX_AGE_SECONDS = 1.0
# Statuses kept before those too old to be handed out are forgotten (jobs a process no longer sends).
_KEPT = 64


class JobStatuses:
    def __init__(
        self,
        readers: sessionmaker[Session],
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._readers = readers
        self._max_age = max_age
        self._clock = clock
        self._known: dict[str, tuple[float, str | None]] = {}  # job id: (when read, status)
        self._lock = threading.Lock()  # one reader at a time: the others take what it read

    def current(self, job_id: str) -> str | None:
        """The job's status, read at most ``max_age`` seconds ago (None: no such job)."""
        known = self._known.get(job_id)
        if known is None or self._stale(known):
            with self._lock:
                known = self._known.get(job_id)
                if known is None or self._stale(known):
                    known = (self._clock(), self._read(job_id))  # the time before the read: never younger
                    self._known[job_id] = known
                    self._forget_stale()
        return known[1]

    def _read(self, job_id: str) -> str | None:
        with self._readers() as session:
            return jobs.job_status(session, job_id)

    def _stale(self, known: tuple[float, str | None]) -> bool:
        return self._clock() - known[0] >= self._max_age

    def _forget_stale(self) -> None:
        if len(self._known) > _KEPT:
            for job_id in [job_id for job_id, known in self._known.items() if self._stale(known)]:
                del self._known[job_id]
