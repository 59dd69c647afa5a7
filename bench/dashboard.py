"""What the dashboard's live job page costs the API, beside the API's own follow request, on a large job.

While a job sends, its page refreshes its summary every second (counts, the chart's intervals, the
failure reasons) and its recipients table every 2 s. This measures those requests in-process (Flask's
test client, no network) for a 100,000-recipient job still `sending`, whose messages were sent over
100 s and 1 % failed, beside `GET /api/email/<id>` (the counts alone, what an API caller polls) in the
same run, on SQLite and on PostgreSQL. "per second" is what one open page asks of the API each second:
a summary and half a recipients table.

    .venv/bin/python bench/dashboard.py [--recipients 100000] [--repeat 30]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from sqlalchemy import case, update

from _support import print_machine, print_table
from email_service.app import create_api
from email_service.config import Settings
from email_service.services import build_services
from email_service.storage import jobs
from email_service.storage.migrate import upgrade
from email_service.storage.models import Job, JobStatus, Recipient, RecipientStatus, utcnow

# isort: split
# _support has put the repository root on sys.path.
from tests.support.servers import own_database

REPLIES = ["550 5.1.1 unknown user", "554 5.7.1 refused by policy", "552 5.2.2 mailbox full"]


@contextlib.contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "SQLite":
        url = f"sqlite:///{folder / 'dashboard.db'}"
        upgrade(url)
        yield url
    else:
        with own_database() as url:
            yield url


def store_sent_job(settings: Settings, count: int) -> str:
    services = build_services(settings)
    job_id, now = str(uuid.uuid4()), utcnow()
    job = Job(
        id=job_id, status=JobStatus.SENDING, subject="December newsletter", content="c", template="default",
        sender="news@example.org", total=count, created_at=now, started_at=now,
    )  # fmt: skip
    rows = [(job_id, i, f"reader{i}@example{i % 50}.com", None, None, RecipientStatus.PENDING, 0) for i in range(count)]
    with services.sessions.begin() as session:
        jobs.insert_job(session, job, rows)
    failed = Recipient.position % 100 == 0  # 1 %, under three replies
    with services.sessions.begin() as session:
        session.execute(
            update(Recipient)
            .where(Recipient.job_id == job_id)
            .values(
                status=case((failed, RecipientStatus.FAILED), else_=RecipientStatus.SENT),
                last_error_code=case((failed, 550), else_=None),
                last_error=case(*((Recipient.position % 300 == 100 * k, REPLIES[k]) for k in range(3)), else_=None),
            )
        )
    # Sent over 100 s: each second's share of positions in one statement (the same SQL on both databases).
    with services.sessions.begin() as session:
        for second in range(100):
            first, last = count * second // 100, count * (second + 1) // 100
            session.execute(
                update(Recipient)
                .where(Recipient.job_id == job_id, Recipient.position >= first, Recipient.position < last)
                .values(sent_at=now + timedelta(seconds=second))
            )
    services.engine.dispose()
    return job_id


def median_ms(client: object, url: str, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        answer = client.get(url)  # type: ignore[attr-defined]
        samples.append(time.perf_counter() - start)
        assert answer.status_code == 200, answer.text
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print_machine()
    rows = []
    for kind in ("SQLite", "PostgreSQL"):
        with tempfile.TemporaryDirectory() as folder, database(kind, Path(folder)) as url:
            settings = Settings(data_dir=Path(folder), database_url=url, auth_disabled=True, dashboard_secret="b" * 32)
            job_id = store_sent_job(settings, args.recipients)
            services = build_services(settings)
            client = create_api(services).test_client()
            api = median_ms(client, f"/api/email/{job_id}", args.repeat)
            page = median_ms(client, f"/dashboard/jobs/{job_id}", args.repeat)
            summary = median_ms(client, f"/dashboard/jobs/{job_id}/summary", args.repeat)
            table = median_ms(client, f"/dashboard/jobs/{job_id}/recipients", args.repeat)
            listing = median_ms(client, "/dashboard/jobs", args.repeat)
            each_second = summary + table / 2
            rows.append(
                [kind, f"{api:.1f}", f"{page:.1f}", f"{summary:.1f}", f"{table:.1f}", f"{each_second:.1f}",
                 f"{each_second / api:.1f}x", f"{listing:.1f}"]
            )  # fmt: skip
            services.engine.dispose()
    print(f"\n{args.recipients:,} recipients, median of {args.repeat} requests, in-process (ms)")
    headers = ["database", "GET /api/email/<id>", "job page", "summary", "recipients", "per second", "/ API", "jobs"]
    print_table(headers, rows)


if __name__ == "__main__":
    main()
