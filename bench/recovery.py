"""Crash recovery with the service's defaults: kill -9 of the whole worker during a job, a new one
started at once; how long the dead worker's recipients wait, and whether any is lost or sent twice.

The production layout on PostgreSQL + Redis (API under gunicorn, ``worker``, ``scheduler``), every
setting at its default (LEASE_SECONDS, SCHEDULER_INTERVAL, BATCH_SIZE, processes and
SMTP_CONCURRENCY); the relay is the test suite's FakeRelay, --rtt away. One job of --recipients is
POSTed; when the relay has --kill-at of it, the worker's process group gets SIGKILL and a new
``worker`` starts (as systemd or Docker would restart it). The recipients that were ``sending`` at the
kill are those the dead worker held; their ``sent_at`` tells when the new worker sent them. Lost and
duplicated messages are counted at the relay by Message-ID.

    .venv/bin/python bench/recovery.py
    .venv/bin/python bench/recovery.py --recipients 6000 --kill-at 0.33 --rtt 0.02
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from datetime import datetime
from typing import Any

import httpx

from _support import deployment, exit_cleanly_on_sigterm, job_body, make_addresses, post_job, print_machine, wait_until
from email_service.config import Settings

# isort: split
# _support has put the repository root on sys.path.
from tests.support.fake_relay import Behaviour, FakeRelay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=6000)
    parser.add_argument("--kill-at", type=float, default=1 / 3, help="share of the job at the relay when killed")
    parser.add_argument("--rtt", type=float, default=0.02, help="round trip of the relay, seconds")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed after the kill")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    print_machine()
    defaults = Settings()
    print(
        f"defaults: LEASE_SECONDS={defaults.lease_seconds}, SCHEDULER_INTERVAL={defaults.scheduler_interval:g}, "
        f"BATCH_SIZE={defaults.batch_size}, "
        f"WORKER_PROCESSES={defaults.worker_processes}, SMTP_CONCURRENCY={defaults.smtp_concurrency}"
    )
    relay = FakeRelay(Behaviour(rtt=args.rtt)).start()
    env = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(relay.port)}
    try:
        with deployment("postgres-redis", "recovery", env) as deployed, httpx.Client(timeout=120) as client:
            deployed.start_api()
            worker = deployed.start_worker()
            deployed.start_scheduler()
            api = deployed.base_url
            job_id = post_job(client, api, job_body(make_addresses(args.recipients)), args.recipients)
            kill_at = args.kill_at * args.recipients
            wait_until(lambda: relay.count() >= kill_at, timeout=args.timeout, what="the kill point", interval=0.005)
            os.killpg(worker.pid, signal.SIGKILL)  # the supervisor and every Celery process under it
            killed_at, killed_clock = time.monotonic(), datetime.now().astimezone()
            at_kill = relay.count()
            stranded = _recipients(client, api, job_id, "sending")
            worker.process.wait()
            deployed.start_worker()
            ready_after = time.monotonic() - killed_at
            job = _completed_job(client, api, job_id, args.timeout)
            completed_after = time.monotonic() - killed_at
            everyone = {r["position"]: r for r in _recipients(client, api, job_id)}
    finally:
        relay.stop()
    held = {r["position"] for r in stranded}
    resent = [_seconds(everyone[r["position"]]["sent_at"], killed_clock) for r in stranded]
    received = relay.message_ids()
    expected = {r["message_id"] for r in everyone.values()}
    lost = len(expected - set(received))
    duplicates = sum(n - 1 for n in received.values())
    in_flight = defaults.worker_processes * defaults.smtp_concurrency
    print(f"\njob of {args.recipients:,} recipients, relay {args.rtt * 1000:.0f} ms away; killed at {at_kill:,} sent")
    print(f"  recipients the dead worker held (sending at the kill): {len(stranded):,}")
    print(f"  new worker ready:                         {ready_after:6.1f} s after the kill")
    if resent:
        print(f"  first of them sent again:                 {min(resent):6.1f} s after the kill")
        print(f"  last of them sent:                        {max(resent):6.1f} s after the kill")
    print(f"  job completed:                            {completed_after:6.1f} s after the kill (seen by polling)")
    finished_after = _seconds(job["finished_at"], killed_clock)
    print(f"  job's finished_at:                        {finished_after:6.1f} s after the kill")
    before = [_seconds(r["sent_at"], killed_clock) for r in everyone.values() if r["position"] not in held]
    print(f"  last message sent before the kill:        {max(before):6.1f} s after the kill (clock check: <= 0)")
    print(f"  sent {job['counts']['sent']:,}, failed {job['counts']['failed']:,}; at the relay: {lost} lost, ", end="")
    print(f"{duplicates} duplicates (bound: {in_flight}, one message in flight per connection)")


def _recipients(client: httpx.Client, api: str, job_id: str, status: str | None = None) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if status is not None:
            params["status"] = status
        if after is not None:
            params["after"] = after
        page = client.get(f"{api}/api/email/{job_id}/recipients", params=params).json()
        items += page["items"]
        after = page["next_after"]
        if after is None:
            return items


def _completed_job(client: httpx.Client, api: str, job_id: str, timeout: float) -> dict[str, Any]:
    job: dict[str, Any] = {}

    def completed() -> bool:
        job.update(client.get(f"{api}/api/email/{job_id}").json())
        return job["status"] == "completed"

    wait_until(completed, timeout=timeout, what=f"job {job_id} to complete", interval=0.2)
    return job


def _seconds(stamp: str, since: datetime) -> float:
    return (datetime.fromisoformat(stamp) - since).total_seconds()


if __name__ == "__main__":
    main()
