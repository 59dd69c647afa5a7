"""Recovery from faults with the service's defaults: a killed worker, a Redis restarted empty, a Redis outage;
how long the work waits, and whether any message is lost or sent twice.

The production layout on PostgreSQL + Redis (API under gunicorn, ``worker``, ``scheduler``), every
setting at its default (LEASE_SECONDS, SCHEDULER_INTERVAL, BATCH_SIZE, processes and
SMTP_CONCURRENCY); the relay is the test suite's FakeRelay, --rtt away. One job of --recipients is
POSTed; when the relay has --kill-at of it, the --fault strikes:

- ``worker-kill``: the worker's process group gets SIGKILL and a new ``worker`` starts (as systemd or
  Docker would restart it). The recipients that were ``sending`` at the kill are those the dead worker
  held, those still ``pending`` nobody's yet; their ``sent_at`` tells when the new worker sent them.
- ``redis-restart-empty``: the Redis server, the broker and the store of the shared rate limits
  (SEND_RATE set, --send-rate), is killed (SIGKILL) and started again at once, empty. It is a
  redis-server of the benchmark's own (tests/support/private_redis.py), the machine's stays up.
- ``redis-outage``: the same Redis is killed, stays down --outage seconds and is started again, empty
  (it saves nothing: the wake-ups waiting in it are lost too). A second job is POSTed during the outage.

For the Redis faults it prints the messages the relay received while Redis was down, the time from
Redis being back to the next message and to each job's completion, the recipients unsent 10 s after
it was back, how long a small job POSTed once they are done takes (whether the API and the scheduler
still wake the workers), and the failures the processes logged. Lost and duplicated messages are
counted at the relay by Message-ID.

    .venv/bin/python bench/recovery.py
    .venv/bin/python bench/recovery.py --recipients 6000 --kill-at 0.33 --rtt 0.02
    .venv/bin/python bench/recovery.py --fault redis-outage --outage 2 --send-rate 300
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from _support import (
    Child,
    deployment,
    exit_cleanly_on_sigterm,
    job_body,
    make_addresses,
    post_job,
    print_machine,
    wait_until,
)
from email_service.config import Settings

# isort: split
# _support has put the repository root on sys.path.
from tests.support.fake_relay import Behaviour, FakeRelay
from tests.support.private_redis import PrivateRedis

FAULTS = ("worker-kill", "redis-restart-empty", "redis-outage")
# The requirement: sending resumes, and the jobs are done, this soon after Redis is back.
CHECK_AFTER = 10.0
SECOND_JOB = 100  # recipients of the job POSTed during a Redis outage
LATER_JOB = 20  # recipients of the job POSTed once the others are done
LATER_TIMEOUT = 60.0
# What the processes log when a Redis fault hurts them, or when the rate limits fall back on their own.
LOG_MARKERS = {
    "worker": {
        "tasks that raised (Celery: 'raised unexpected')": "raised unexpected",
        "rate limits counted locally ('Redis unreachable')": "rate limits: Redis unreachable",
        "rate limits shared again ('Redis answers again')": "rate limits: Redis answers again",
        "broker connection lost (Celery)": "Connection to broker lost",
    },
    "scheduler": {"sweeps failed": "sweep failed"},
    "api": {"wake-ups not published (broker unreachable)": "no wake-up published"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", choices=FAULTS, default="worker-kill")
    parser.add_argument("--recipients", type=int, default=6000)
    parser.add_argument("--kill-at", type=float, default=1 / 3, help="share of the job at the relay at the fault")
    parser.add_argument("--rtt", type=float, default=0.02, help="round trip of the relay, seconds")
    parser.add_argument("--outage", type=float, default=2.0, help="seconds Redis stays down (redis-outage)")
    parser.add_argument(
        "--send-rate", type=float, default=300, help="SEND_RATE for the Redis faults, so the shared limiter is used"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed after the fault")
    parser.add_argument("--logs", type=Path, help="folder to copy the processes' logs to, before they are removed")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    print_machine()
    defaults = Settings()
    print(
        f"defaults: LEASE_SECONDS={defaults.lease_seconds}, SCHEDULER_INTERVAL={defaults.scheduler_interval:g}, "
        f"BATCH_SIZE={defaults.batch_size}, "
        f"WORKER_PROCESSES={defaults.worker_processes}, SMTP_CONCURRENCY={defaults.smtp_concurrency}, "
        f"RATE_LIMIT_OUTAGE_SHARE={defaults.rate_limit_outage_share:g}"
    )
    relay = FakeRelay(Behaviour(rtt=args.rtt)).start()
    try:
        if args.fault == "worker-kill":
            _worker_kill(args, relay, defaults)
        else:
            _redis_fault(args, relay, defaults)
    finally:
        relay.stop()


def _worker_kill(args: argparse.Namespace, relay: FakeRelay, defaults: Settings) -> None:
    env = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(relay.port)}
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
        unclaimed = _recipients(client, api, job_id, "pending")  # nobody's yet: the new worker's to claim
        worker.process.wait()
        deployed.start_worker()
        ready_after = time.monotonic() - killed_at
        job = _completed_job(client, api, job_id, args.timeout)
        completed_after = time.monotonic() - killed_at
        everyone = {r["position"]: r for r in _recipients(client, api, job_id)}
        if args.logs:
            _copy_logs(deployed.workdir, args.logs)
    held = {r["position"] for r in stranded}
    waiting = {r["position"] for r in unclaimed}
    resent = [_seconds(everyone[position]["sent_at"], killed_clock) for position in held]
    later = [_seconds(everyone[position]["sent_at"], killed_clock) for position in waiting]
    print(f"\njob of {args.recipients:,} recipients, relay {args.rtt * 1000:.0f} ms away; killed at {at_kill:,} sent")
    print(f"  recipients the dead worker held (sending at the kill): {len(stranded):,}")
    print(f"  recipients nobody had claimed yet (pending at the kill): {len(unclaimed):,}")
    print(f"  new worker ready:                         {ready_after:6.1f} s after the kill")
    if resent:
        print(f"  first of the held ones sent again:        {min(resent):6.1f} s after the kill")
        print(f"  last of them sent:                        {max(resent):6.1f} s after the kill")
    if later:
        print(f"  first of the pending ones sent:           {min(later):6.1f} s after the kill")
        print(f"  last of them sent:                        {max(later):6.1f} s after the kill")
    print(f"  job completed:                            {completed_after:6.1f} s after the kill (seen by polling)")
    finished_after = _seconds(job["finished_at"], killed_clock)
    print(f"  job's finished_at:                        {finished_after:6.1f} s after the kill")
    before = [_seconds(r["sent_at"], killed_clock) for r in everyone.values() if r["position"] not in held | waiting]
    print(f"  last message sent before the kill:        {max(before):6.1f} s after the kill (clock check: <= 0)")
    print(f"  sent {job['counts']['sent']:,}, failed {job['counts']['failed']:,}; at the relay: ", end="")
    print(_lost_and_duplicates(relay, (r["message_id"] for r in everyone.values()), defaults))


def _redis_fault(args: argparse.Namespace, relay: FakeRelay, defaults: Settings) -> None:
    outage = args.outage if args.fault == "redis-outage" else 0.0
    env = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(relay.port), "SEND_RATE": f"{args.send_rate:g}"}
    with tempfile.TemporaryDirectory(prefix="bench_recovery_redis_") as folder:
        server = PrivateRedis(Path(folder)).start()
        try:
            with (
                deployment("postgres-redis", "recovery", env, redis_url=server.url) as deployed,
                httpx.Client(timeout=120) as client,
            ):
                processes = {"api": deployed.start_api()}
                processes["worker"] = deployed.start_worker()
                processes["scheduler"] = deployed.start_scheduler()
                api = deployed.base_url
                jobs = {"first": post_job(client, api, job_body(make_addresses(args.recipients)), args.recipients)}
                fault_at = args.kill_at * args.recipients
                wait_until(lambda: relay.count() >= fault_at, timeout=args.timeout, what="the fault", interval=0.005)
                server.stop()  # SIGKILL, as a crash would
                stopped_at, at_stop = time.monotonic(), relay.count()
                if outage:
                    second = [f"second{i}@example{i % 50}.com" for i in range(SECOND_JOB)]
                    jobs["second"] = post_job(client, api, job_body(second), SECOND_JOB)  # raises unless 202
                    accepted_after = time.monotonic() - stopped_at
                    time.sleep(max(0.0, stopped_at + outage - time.monotonic()))
                server.start()  # empty: it saves nothing
                back_at, back_clock, at_back = time.monotonic(), datetime.now().astimezone(), relay.count()
                logged_before = _log_counts(processes)
                time.sleep(max(0.0, back_at + CHECK_AFTER - time.monotonic()))
                at_check = relay.count()
                unsent = {name: _unsent(client, api, job_id) for name, job_id in jobs.items()}
                done = {name: _completion(client, api, job_id, args.timeout) for name, job_id in jobs.items()}
                # A job POSTed once all is over: do the API and the scheduler still wake the workers?
                later = [f"later{i}@example{i % 50}.com" for i in range(LATER_JOB)]
                posted_at = time.monotonic()
                later_job = _completion(client, api, post_job(client, api, job_body(later), LATER_JOB), LATER_TIMEOUT)
                later_after = time.monotonic() - posted_at
                everyone = {name: _recipients(client, api, job_id) for name, job_id in jobs.items()}
                logged = _log_counts(processes)
                if args.logs:
                    _copy_logs(deployed.workdir, args.logs)
        finally:
            server.stop()
    arrivals = relay.arrival_times()
    after_back = [at - back_at for at in arrivals if at >= back_at]
    print(f"\n{args.fault}: job of {args.recipients:,} recipients, relay {args.rtt * 1000:.0f} ms away, ", end="")
    print(f"SEND_RATE={args.send_rate:g}; Redis (broker and rate limits) killed at {at_stop:,} sent, ", end="")
    print(f"down {back_at - stopped_at:.1f} s, started again empty")
    print(f"  messages the relay received while Redis was down: {at_back - at_stop:,}")
    if outage:
        print(f"  job of {SECOND_JOB} POSTed during the outage: accepted (202) {accepted_after:.2f} s after the kill")
    print(f"  next message at the relay:                {after_back[0]:6.2f} s after Redis was back")
    pause = _longest_pause([at for at in arrivals if at >= stopped_at])
    print(f"  longest pause at the relay after the kill:{pause:6.2f} s")
    for name, job in done.items():
        if job is None:
            print(f"  {name} job: not completed {args.timeout:.0f} s after Redis was back")
        else:
            finished = _seconds(job["finished_at"], back_clock)
            print(f"  {name} job completed:                  {finished:6.1f} s after Redis was back (its finished_at)")
    rate_allows = int(args.send_rate * CHECK_AFTER)
    print(f"  messages in the {CHECK_AFTER:g} s after Redis was back: {at_check - at_back:,} ", end="")
    print(f"(SEND_RATE allows {rate_allows:,})")
    for name, count in unsent.items():
        print(f"  {name} job's recipients unsent {CHECK_AFTER:g} s after Redis was back: {count:,}")
    if later_job is None:
        print(f"  job of {LATER_JOB} POSTed after that: not completed after {LATER_TIMEOUT:.0f} s")
    else:
        print(f"  job of {LATER_JOB} POSTed after that: completed {later_after:.1f} s after it was POSTed")
    print("  logged (by the time Redis was back / later):")
    for label, count in logged.items():
        print(f"    {label}: {logged_before[label]} / {count - logged_before[label]}")
    statuses = Counter(r["status"] for recipients in everyone.values() for r in recipients)
    print(f"  sent {statuses['sent']:,}, failed {statuses['failed']:,}, unsent {_unfinished(statuses):,}; ", end="")
    sent = [r["message_id"] for recipients in everyone.values() for r in recipients if r["status"] == "sent"]
    print(f"at the relay: {_lost_and_duplicates(relay, sent, defaults)}")


def _log_counts(processes: dict[str, Child]) -> dict[str, int]:
    return {
        label: processes[name].log_count(marker)
        for name, markers in LOG_MARKERS.items()
        for label, marker in markers.items()
    }


def _unfinished(statuses: Counter[str]) -> int:
    return sum(statuses[status] for status in ("pending", "sending", "deferred"))


def _copy_logs(workdir: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for log in workdir.glob("*.log"):
        shutil.copy(log, folder / log.name)


def _lost_and_duplicates(relay: FakeRelay, message_ids: Iterable[str], defaults: Settings) -> str:
    received = relay.message_ids()
    lost = len(set(message_ids) - set(received))
    duplicates = sum(n - 1 for n in received.values())
    in_flight = defaults.worker_processes * defaults.smtp_concurrency
    return f"{lost} lost, {duplicates} duplicates (bound: {in_flight}, one message in flight per connection)"


def _longest_pause(times: list[float]) -> float:
    return max((later - earlier for earlier, later in itertools.pairwise(times)), default=0.0)


def _unsent(client: httpx.Client, api: str, job_id: str) -> int:
    """Recipients of the job without a final outcome."""
    job = client.get(f"{api}/api/email/{job_id}").json()
    return int(job["total"] - job["current"])


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


def _completion(client: httpx.Client, api: str, job_id: str, timeout: float) -> dict[str, Any] | None:
    """The job once completed; None when it has not completed after ``timeout`` seconds."""
    try:
        return _completed_job(client, api, job_id, timeout)
    except TimeoutError:
        return None


def _completed_job(client: httpx.Client, api: str, job_id: str, timeout: float) -> dict[str, Any]:
    job: dict[str, Any] = {}

    def completed() -> bool:
        job.update(client.get(f"{api}/api/email/{job_id}").json())
        return bool(job["status"] == "completed")

    wait_until(completed, timeout=timeout, what=f"job {job_id} to complete", interval=0.2)
    return job


def _seconds(stamp: str, since: datetime) -> float:
    return (datetime.fromisoformat(stamp) - since).total_seconds()


if __name__ == "__main__":
    main()
