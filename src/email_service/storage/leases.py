"""A claim's lease on its recipients: short, renewed while its worker lives, the guard of every write.

A claim takes its rows with one lease time (recipients.lease_until). Its process renews that time
while it sends; a worker that dies stops renewing, and the scheduler's sweep hands its rows to another
worker once the time has passed. Every write a claim makes on its rows is guarded by the lease time
they hold (storage.outcomes, jobs.release): a worker whose lease ran out cannot overwrite the
worker that took over. Writes and renewals of one lease take its lock, so a write always carries the
time the rows hold at that moment.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from email_service.storage.models import Recipient, RecipientStatus


@dataclass(eq=False)
class Lease:
    """The lease of one claim: the rows ``ids`` of a job that hold ``until``."""

    job_id: str
    until: datetime
    seconds: float
    # When ``until`` passes on this process's monotonic clock: taken before the claim or renewal was
    # written, so it never runs later than the database's copy.
    valid_until: float = field(default_factory=time.monotonic)
    ids: tuple[int, ...] = ()  # the rows claimed, set once the claim is made
    lost: bool = False  # another claim owns the rows (this process was too slow to renew)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def starting(cls, job_id: str, now: datetime, seconds: float) -> Lease:
        """The lease a claim made at ``now`` (and at this moment of the monotonic clock) sets."""
        return cls(job_id, now + timedelta(seconds=seconds), seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds this claim still owns its rows, as far as this process knows."""
        return 0.0 if self.lost else self.valid_until - time.monotonic()

    def held(self) -> bool:
        """Safe to start another message: at least a third of the lease is left, which is the case
        while renewals succeed (see services.leases); otherwise the claim gives its rows back."""
        return self.remaining() > self.seconds / 3

    def renewed(self, until: datetime, started: float) -> None:
        """The rows now hold ``until``, written by a renewal that began at ``started`` (monotonic)."""
        self.until, self.valid_until = until, started + self.seconds


def renew(session: Session, lease: Lease, now: datetime) -> datetime | None:
    """Push the lease of the rows the claim still owns to ``now`` + its length, in the caller's
    transaction: the new lease time, or None when the claim owns no row any more (all ended, or
    taken by another claim). The caller holds ``lease.lock`` until the transaction has committed,
    then records the new time with ``Lease.renewed`` (or sets ``lost``)."""
    until = now + timedelta(seconds=lease.seconds)
    result = session.execute(
        update(Recipient)
        .where(
            Recipient.id.in_(lease.ids),
            Recipient.status == RecipientStatus.SENDING,
            Recipient.lease_until == lease.until,
        )
        .values(lease_until=until)
    )
    return until if result.rowcount else None  # type: ignore[attr-defined]
