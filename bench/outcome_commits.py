"""What committing sent outcomes in groups saves PostgreSQL, beside one commit per outcome in the same run.

The service's own OutcomeWriter writes the outcomes of claimed recipients (a job of its own in a database
of its own) in groups of 1 (the baseline: one autocommit statement each, as before group commit), 2, 4, 8
and 16. For each size: the CPU time of the PostgreSQL backend serving the writer (utime + stime from
/proc) and the wall time, per outcome, and the backend's CPU beside the baseline's. One client writes,
one group after the other, so these are the costs of the commits themselves; how large the groups are
under load depends on how many outcomes arrive during a commit (bench/engine.py measures the whole).

    .venv/bin/python bench/outcome_commits.py [--outcomes 4000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
import uuid

from sqlalchemy import update

from _support import cpu_seconds, print_machine, print_table
from email_service.storage import jobs, scheduling
from email_service.storage.database import make_engine, make_session_factory
from email_service.storage.leases import Lease
from email_service.storage.models import Job, JobStatus, Recipient, RecipientStatus, utcnow
from email_service.storage.outcomes import OutcomeWriter, SentOutcome

# isort: split
# _support has put the repository root on sys.path.
from tests.support.servers import own_database

GROUP_SIZES = (1, 2, 4, 8, 16)


def backend_cpu(pid: int) -> float:
    user, system = cpu_seconds([pid])[pid]
    return user + system


def write_in_groups(url: str, outcomes: int, size: int) -> tuple[float, float]:
    """Claim ``outcomes`` recipients of a new job and write them sent in groups of ``size``:
    (the backend's CPU seconds, wall seconds)."""
    engine = make_engine(url, pool_size=1)
    sessions = make_session_factory(engine)
    job_id, now = str(uuid.uuid4()), utcnow()
    job = Job(
        id=job_id, status=JobStatus.SENDING, subject="s", content="c", template="default",
        sender="news@example.org", total=outcomes, created_at=now, started_at=now,
    )  # fmt: skip
    rows = [(job_id, i, f"r{i}@example.com", None, None, RecipientStatus.PENDING, 0) for i in range(outcomes)]
    lease = Lease.starting(job_id, now, 600)
    with sessions.begin() as session:
        jobs.insert_job(session, job, rows)
        session.execute(update(Recipient).where(Recipient.job_id == job_id).values(lease_until=now))  # due now
    with sessions.begin() as session:
        claimed = scheduling.claim_due(session, job_id, limit=outcomes, now=now, lease_until=lease.until)
    lease.ids = tuple(r.id for r in claimed)
    writer = OutcomeWriter(engine)  # the pool's only connection: the one whose backend is read
    pid = writer._driver.info.backend_pid
    cpu, started = backend_cpu(pid), time.perf_counter()
    for first in range(0, outcomes, size):
        group = [SentOutcome(recipient, lease, now) for recipient in claimed[first : first + size]]
        writer.sent_group(group)
        assert all(outcome.written for outcome in group)
    wall, cpu = time.perf_counter() - started, backend_cpu(pid) - cpu
    writer.close()
    engine.dispose()
    return cpu, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outcomes", type=int, default=4000, help="outcomes written at each group size")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each size; the least CPU is kept")
    args = parser.parse_args()
    print_machine()
    print(f"{args.outcomes:,} sent outcomes at each group size, one writer, PostgreSQL")
    results = {}
    with own_database() as url:
        write_in_groups(url, 500, 1)  # warm-up: the statement prepared, the table's pages in memory
        for size in GROUP_SIZES:
            runs = [write_in_groups(url, args.outcomes, size) for _ in range(args.repeat)]
            results[size] = min(runs)
    baseline = results[1][0]
    print_table(
        ["group size", "PostgreSQL CPU µs per outcome", "wall µs per outcome", "CPU: baseline / this"],
        [
            [
                str(size),
                f"{cpu / args.outcomes * 1e6:.0f}",
                f"{wall / args.outcomes * 1e6:.0f}",
                f"{baseline / cpu:.1f}x",
            ]
            for size, (cpu, wall) in results.items()
        ],
    )


if __name__ == "__main__":
    main()
