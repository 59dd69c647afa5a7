"""The heartbeat of a worker process: it renews the lease of every claim the process is sending.

One thread per process, started with the first claim: every quarter of LEASE_SECONDS it pushes each
running claim's lease a whole LEASE_SECONDS ahead. A live worker thus keeps its rows however slow the
relay, and a dead one (killed, out of memory, its machine gone) stops renewing: its rows are claimed
again within LEASE_SECONDS and a sweep. A renewal that fails (database unreachable) is tried again at
the next beat; a claim whose lease runs low meanwhile stops and gives its rows back (Lease.held).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from email_service.storage import leases
from email_service.storage.leases import Lease
from email_service.storage.models import utcnow

log = logging.getLogger(__name__)

BEATS_PER_LEASE = 4


class LeaseKeeper:
    def __init__(self, sessions: sessionmaker[Session], lease_seconds: float) -> None:
        self._sessions = sessions
        self._interval = lease_seconds / BEATS_PER_LEASE
        self._held: set[Lease] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def keeping(self, lease: Lease) -> Iterator[Lease]:
        """Renew ``lease`` until the block ends."""
        with self._lock:
            self._held.add(lease)
            if self._thread is None:  # started here, not at import: a forked child would not have it
                self._thread = threading.Thread(target=self._beat, name="lease-keeper", daemon=True)
                self._thread.start()
        try:
            yield lease
        finally:
            with self._lock:
                self._held.discard(lease)

    def renew_all(self) -> None:
        """One beat: renew every lease held now."""
        with self._lock:
            held = list(self._held)
        for lease in held:
            self._renew(lease)

    def _beat(self) -> None:
        while True:
            time.sleep(self._interval)
            self.renew_all()

    def _renew(self, lease: Lease) -> None:
        started = time.monotonic()
        with lease.lock:
            if lease.lost:
                return
            try:
                with self._sessions.begin() as session:
                    until = leases.renew(session, lease, utcnow())
            except SQLAlchemyError:
                log.warning("job %s claim of %d: lease not renewed", lease.job_id, len(lease.ids), exc_info=True)
                return
            if until is None:
                lease.lost = True  # every row ended, or the sweep gave them to another claim
                log.info("job %s claim of %d: no row left to renew", lease.job_id, len(lease.ids))
            else:
                lease.renewed(until, started)
