"""Lanes and turns: how long a transactional message waits during a bulk job, how accounts share the rate,
when a small job gets through behind a big one, the broker's queue, and bulk throughput beside the code before.

The production layout on PostgreSQL + Redis: the API under gunicorn, ``worker`` (WORKER_PROCESSES
processes of SMTP_CONCURRENCY connections), ``scheduler``; API keys on, each account made with
``email-service accounts create`` and given a key with ``keys create``; SEND_RATE (--send-rate) the
service's only limit; the relay is the test suite's FakeRelay in this process, --rtt away, which stamps
each message's arrival. Each part's recipients carry its own address prefix, so arrivals are told apart
by address. The parts (--parts):

1. --transactional one-recipient jobs with "lane": "transactional", POSTed at random moments (--seed)
   while a --bulk-recipient job with "lane": "bulk" of the same account is sent: the time from each
   POST's 202 answer to the relay's receipt of its message (p50, p99, max).
2. Three accounts POST an --account-recipients bulk job each, at once: each account's messages/s while
   all three are sending, and its share of the total (goal: a third, ± 15 % of a third).
3. A --big-recipients bulk job, and --small-delay s after its 202 a --small-recipients bulk job of another
   account: the small job's finish, beside the time its fair share allows (small / (SEND_RATE / 2)) and
   beside the big job's finish.
4. The Celery queue in Redis during part 1's workload (which runs for it if part 1 is not chosen): its
   length (LLEN of the queue's keys) and the tasks taken but not acknowledged, every 0.5 s.
5. A --throughput-recipients bulk job without SEND_RATE on the code of --before (its ``src`` first on
   the children's PYTHONPATH, POSTed without "lane") and on this code, each in a fresh deployment after a
   warm-up job, alternated (before, after, ...) --reps times: messages/s and the ratio after/before.
6. (--dev) part 1 on the embedded configuration ``email-service dev`` runs (SQLite, filesystem broker,
   one worker process, API keys off), with the relay in place of dev's catcher.

Parts 1 to 4 share one deployment. --scale multiplies every job's size (not the count of transactional
jobs); --no-lane-field leaves "lane" out of every body, for code that has no lanes yet.

    .venv/bin/python bench/lanes.py --before <checkout of the code before> --dev
    .venv/bin/python bench/lanes.py --parts 1,4 --scale 0.05 --no-lane-field
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import math
import random
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import redis
from kombu.transport.redis import PRIORITY_STEPS, Channel

from _support import (
    REDIS_URL,
    Child,
    Deployment,
    deployment,
    exit_cleanly_on_sigterm,
    job_body,
    make_addresses,
    post_job,
    print_machine,
    print_table,
    wait_until,
)
from email_service.config import Settings

# isort: split
# _support has put the repository root on sys.path.
from tests.support.fake_relay import Behaviour, FakeRelay

SHARE_TOLERANCE = 0.15  # part 2's goal: each account's share within a third ± 15 % of a third
QUEUE_SAMPLE_SECONDS = 0.5
SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60
WARMUP_RECIPIENTS = 200  # part 5's untimed first job of each deployment
TRANSACTIONAL_ACCOUNT = "p1-shop"  # parts 1 and 4: its bulk job and its transactional ones
SHARING_ACCOUNTS = ("p2-alpha", "p2-bravo", "p2-charlie")
BIG_ACCOUNT, SMALL_ACCOUNT = "p3-newsletter", "p3-shop"
PART_ACCOUNTS = {
    1: [TRANSACTIONAL_ACCOUNT],
    2: list(SHARING_ACCOUNTS),
    3: [BIG_ACCOUNT, SMALL_ACCOUNT],
    4: [TRANSACTIONAL_ACCOUNT],
}
COMPLETION_TIMEOUT = 120  # seconds for a job to say "completed" once the relay has all its messages


@dataclass(frozen=True)
class Posted:
    job_id: str
    account: str | None
    addresses: list[str]
    accepted_at: float  # time.monotonic() when the 202 arrived, the relay's clock


@dataclass
class Service:
    """A running deployment, the relay its workers send to, and one API client per account."""

    deployed: Deployment
    relay: FakeRelay
    lane_field: bool
    children: list[Child] = field(default_factory=list)
    # Clients by account; None: the one without a key, for keys off.
    clients: dict[str | None, httpx.Client] = field(default_factory=lambda: {None: httpx.Client(timeout=120)})

    def start(self, worker_processes: int | None = None) -> Service:
        self.children += [
            self.deployed.start_api(),
            self.deployed.start_worker(worker_processes),
            self.deployed.start_scheduler(),
        ]
        return self

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    @property
    def keys_on(self) -> bool:
        return self.deployed.env.get("AUTH_DISABLED") == "false"

    def add_account(self, name: str) -> None:
        """An account made with the CLI, and a client with a key of it (before the API starts: it wants one)."""
        self.deployed.run_cli("accounts", "create", name)
        key = self.deployed.run_cli("keys", "create", name, "--account", name).splitlines()[0].strip()
        self.clients[name] = httpx.Client(timeout=120, headers={"Authorization": f"Bearer {key}"})

    def post(self, account: str | None, addresses: list[str], lane: str, subject: str = "Benchmark") -> Posted:
        body = job_body(addresses, subject, fields={"lane": lane} if self.lane_field else None)
        client = self.clients[account]
        job_id = post_job(client, self.deployed.base_url, body, len(addresses))
        return Posted(job_id, account, addresses, time.monotonic())

    def ledger_times(self, job: Posted) -> tuple[datetime, datetime, datetime]:
        """The job's acceptance and start, and its first recipient's send, as the service recorded them."""
        client, base = self.clients[job.account], self.deployed.base_url
        view = client.get(f"{base}/api/email/{job.job_id}").json()
        [recipient] = client.get(f"{base}/api/email/{job.job_id}/recipients?limit=1").json()["items"]
        return tuple(
            datetime.fromisoformat(when) for when in (view["created_at"], view["started_at"], recipient["sent_at"])
        )  # type: ignore[return-value]

    def check_alive(self) -> None:
        for child in self.children:
            child.check_alive()

    def await_arrivals(self, start: int, count: int, timeout: float, what: str) -> None:
        """Until the relay has ``count`` messages more than its ``start``-th."""
        try:
            wait_until(
                lambda: self.relay.count() - start >= count,
                timeout=timeout,
                what=what,
                interval=0.1,
                alive=self.check_alive,
            )
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}: {self.relay.count() - start:,} of {count:,} messages arrived") from None

    def check_completed(self, jobs: Sequence[Posted]) -> None:
        """Each job completed with every recipient sent (asked once the relay has its messages); raises otherwise."""
        for job in jobs:
            client, url = self.clients[job.account], f"{self.deployed.base_url}/api/email/{job.job_id}"
            deadline = time.monotonic() + COMPLETION_TIMEOUT
            while (found := client.get(url).raise_for_status().json())["status"] != "completed":
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"job {job.job_id} still {found['status']} {COMPLETION_TIMEOUT} s after the relay had its "
                        f"messages: {found['counts']}"
                    )
                time.sleep(0.2)
            if found["counts"]["sent"] != len(job.addresses):
                raise RuntimeError(f"job {job.job_id} completed with {found['counts']}, not every recipient sent")

    def first_arrivals(self, start: int) -> dict[str, float]:
        """Each recipient's first arrival at the relay since its ``start``-th message."""
        arrivals: dict[str, float] = {}
        for address, at in self.relay.recipient_arrivals(start):
            arrivals.setdefault(address, at)
        return arrivals


@contextlib.contextmanager
def running_service(
    config: str,
    kind: str,
    args: argparse.Namespace,
    env: dict[str, str],
    *,
    lane_field: bool,
    code: Path | None = None,
    accounts: Sequence[str] = (),
) -> Iterator[Service]:
    """A deployment of ``config`` with its own relay, --rtt away, and ``accounts`` (API keys on if any),
    started; everything stopped on exit."""
    relay = FakeRelay(Behaviour(rtt=args.rtt)).start()
    try:
        relay_env = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(relay.port), **env}
        if accounts:
            relay_env["AUTH_DISABLED"] = "false"
        with deployment(config, kind, relay_env, code=code) as deployed:
            service = Service(deployed, relay, lane_field)
            try:
                for name in accounts:
                    service.add_account(name)
                yield service.start(1 if config == "embedded" else None)
            finally:
                service.close()
    finally:
        relay.stop()


def tagged_addresses(tag: str, count: int) -> list[str]:
    """``count`` distinct addresses starting with ``tag``, spread over domains like make_addresses'."""
    return [f"{tag}.{address}" for address in make_addresses(count)]


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least ``share`` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def part_timeout(args: argparse.Namespace, messages: int, rate: float) -> float:
    """--timeout, or twice the time ``messages`` take at ``rate`` plus two minutes."""
    return float(args.timeout) if args.timeout else 2 * messages / rate + 120


# ---- part 1 (and 4, 6): transactional jobs during a bulk job


class QueueSampler:
    """The Celery queue in Redis, every 0.5 s in a thread: its length (LLEN of its key and of the
    keys kombu adds for priorities) and the tasks delivered but not acknowledged (HLEN of unacked)."""

    def __init__(self, env: dict[str, str]) -> None:
        prefix, queue = env["CELERY_BROKER_KEY_PREFIX"], env["CELERY_QUEUE"]
        self.queue_key = f"{prefix}{queue}"
        self._keys = [self.queue_key] + [f"{prefix}{queue}{Channel.sep}{step}" for step in PRIORITY_STEPS[1:]]
        self._unacked_key = f"{prefix}{Channel.unacked_key}"
        self.samples: list[tuple[float, int, int]] = []  # (seconds since the start, queued, unacknowledged)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        stop = threading.Event()
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)  # a stuck Redis ends the sampling
        started = time.monotonic()

        def sample() -> None:
            while True:
                with client.pipeline(transaction=False) as pipe:
                    for key in self._keys:
                        pipe.llen(key)
                    pipe.hlen(self._unacked_key)
                    *lengths, unacked = pipe.execute()
                self.samples.append((time.monotonic() - started, sum(lengths), unacked))
                if stop.wait(QUEUE_SAMPLE_SECONDS):
                    return

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)
            client.close()


@dataclass
class TransactionalRun:
    waits: list[float]  # accept-to-relay of each transactional job, seconds
    missing: int  # transactional messages the relay never got
    bulk_count: int
    bulk_seconds: float  # bulk job's 202 to its last message at the relay
    queue: QueueSampler | None
    # Where each transactional job's time went, from the ledger: acceptance to the claim that started it,
    # and that claim to the relay's answer (seconds).
    to_claim: list[float] = field(default_factory=list)
    claim_to_sent: list[float] = field(default_factory=list)


def transactional_during_bulk(
    service: Service, args: argparse.Namespace, tag: str, sample_queue: bool
) -> TransactionalRun:
    account = TRANSACTIONAL_ACCOUNT if service.keys_on else None
    bulk = tagged_addresses(f"{tag}-bulk", sized(args.bulk_recipients, args.scale))
    receivers = [f"{tag}-reset{i}@example.org" for i in range(args.transactional)]
    nominal = len(bulk) / args.send_rate
    rng = random.Random(args.seed)
    # Random moments inside the bulk job's nominal run, leaving its first and last moments out.
    offsets = sorted(rng.uniform(0.05, 0.85) * nominal for _ in receivers)
    print(
        f"   posting a {len(bulk):,}-recipient bulk job, then {len(receivers)} transactional jobs over "
        f"{offsets[0]:.1f}-{offsets[-1]:.1f} s after its 202",
        flush=True,
    )
    sampler = QueueSampler(service.deployed.env) if sample_queue else None
    start = service.relay.count()
    transactional: list[Posted] = []
    with sampler.running() if sampler else contextlib.nullcontext():
        bulk_job = service.post(account, bulk, "bulk", subject="Newsletter")
        for offset, address in zip(offsets, receivers, strict=True):
            time.sleep(max(0.0, bulk_job.accepted_at + offset - time.monotonic()))
            transactional.append(service.post(account, [address], "transactional", subject="Password reset"))
        total = len(bulk) + len(receivers)
        service.await_arrivals(
            start, total, part_timeout(args, total, args.send_rate), "the bulk and transactional jobs' messages"
        )
    service.check_completed([bulk_job, *transactional])
    arrivals = service.first_arrivals(start)
    waits = [arrivals[job.addresses[0]] - job.accepted_at for job in transactional if job.addresses[0] in arrivals]
    last_bulk = max(arrivals[address] for address in bulk if address in arrivals)
    run = TransactionalRun(waits, len(transactional) - len(waits), len(bulk), last_bulk - bulk_job.accepted_at, sampler)
    for job in transactional:
        created, started, sent = service.ledger_times(job)
        run.to_claim.append((started - created).total_seconds())
        run.claim_to_sent.append((sent - started).total_seconds())
    return run


def print_transactional(title: str, run: TransactionalRun, args: argparse.Namespace) -> None:
    print(f"\n{title}")
    waits = run.waits
    print_table(
        ["accept (202) to relay, seconds", "jobs", "p50", "p99", "max", "min"],
        [
            [
                "transactional one-recipient jobs",
                len(waits),
                f"{percentile(waits, 0.5):.2f}",
                f"{percentile(waits, 0.99):.2f}",
                f"{max(waits):.2f}",
                f"{min(waits):.2f}",
            ]
        ],
    )
    if run.missing:
        print(f"   {run.missing} transactional message(s) never reached the relay (!)")
    if run.to_claim:
        print(
            f"   from the ledger: acceptance to the claim p50 {percentile(run.to_claim, 0.5):.2f} s, "
            f"p99 {percentile(run.to_claim, 0.99):.2f} s; claim to the relay's answer p50 "
            f"{percentile(run.claim_to_sent, 0.5):.2f} s, p99 {percentile(run.claim_to_sent, 0.99):.2f} s"
        )
    print(
        f"   the bulk job: {run.bulk_count:,} messages in {run.bulk_seconds:.1f} s after its 202 "
        f"({run.bulk_count / run.bulk_seconds:,.0f} msg/s; SEND_RATE={args.send_rate:g})"
    )


def print_queue(sampler: QueueSampler) -> None:
    samples = sampler.samples
    if not samples:
        print("\nPart 4: no sample of the Celery queue was taken (see the error above)")
        return
    queued = [length for _, length, _ in samples]
    unacked = [count for _, _, count in samples]
    print(f"\nPart 4: the Celery queue in Redis ({sampler.queue_key!r}) during part 1's workload, every 0.5 s")
    print_table(
        ["tasks", "samples", "max", "p50", "last"],
        [
            ["queued (LLEN)", len(queued), max(queued), percentile(queued, 0.5), queued[-1]],
            ["taken, unacknowledged (HLEN unacked)", len(unacked), max(unacked), percentile(unacked, 0.5), unacked[-1]],
        ],
    )
    print(f"   queued over time: {sparkline(queued)}  (max {max(queued):,})")
    picks = sorted({round(i * (len(samples) - 1) / 5) for i in range(6)})
    print("   samples: " + ", ".join(f"{samples[i][0]:.0f} s: {samples[i][1]:,}" for i in picks))


def sparkline(values: Sequence[int]) -> str:
    """One block per slice of the run (the slice's highest value), scaled to the highest of all."""
    width = min(SPARK_WIDTH, len(values))
    slices = [values[i * len(values) // width : (i + 1) * len(values) // width] for i in range(width)]
    top = max(values) or 1
    return "".join(SPARK_BLOCKS[round(max(part) / top * (len(SPARK_BLOCKS) - 1))] for part in slices)


# ---- part 2: three accounts at once


def three_accounts(service: Service, args: argparse.Namespace) -> None:
    names = SHARING_ACCOUNTS
    count = sized(args.account_recipients, args.scale)
    lists = {name: tagged_addresses(name, count) for name in names}
    start = service.relay.count()
    print(f"   three accounts posting {count:,} recipients each at once", flush=True)
    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        jobs = list(pool.map(lambda name: service.post(name, lists[name], "bulk"), names))
    total = count * len(names)
    service.await_arrivals(start, total, part_timeout(args, total, args.send_rate), "part 2's messages")
    service.check_completed(jobs)
    times = {
        name: sorted(at for address, at in service.relay.recipient_arrivals(start) if address.startswith(f"{name}."))
        for name in names
    }
    window_start = max(t[0] for t in times.values())
    window_end = min(t[-1] for t in times.values())
    print(f"\nPart 2: three accounts, {count:,}-recipient bulk jobs POSTed at once (SEND_RATE={args.send_rate:g})")
    rows = [[name, f"{t[0] - began:.1f}", f"{t[-1] - began:.1f}"] for name, t in times.items()]
    if window_end - window_start < 1:
        print_table(["account", "first arrival, s", "last arrival, s"], rows)
        print("   the three accounts were never all sending for as long as a second: no shares to compare")
        return
    within = {name: sum(window_start <= at <= window_end for at in t) for name, t in times.items()}
    seconds = window_end - window_start
    low, high = (1 - SHARE_TOLERANCE) / 3, (1 + SHARE_TOLERANCE) / 3
    for row, name in zip(rows, names, strict=True):
        share = within[name] / sum(within.values())
        row += [f"{within[name]:,}", f"{within[name] / seconds:,.0f}", f"{share:.1%}", _yes(low <= share <= high)]
    print_table(
        [
            "account",
            "first arrival, s",
            "last arrival, s",
            "messages while all send",
            "msg/s",
            "share",
            f"{low:.1%}-{high:.1%}",
        ],
        rows,
    )
    print(
        f"   all three sending from {window_start - began:.1f} s to {window_end - began:.1f} s after the POSTs began "
        f"({seconds:.1f} s, {sum(within.values()) / seconds:,.0f} msg/s together)"
    )


# ---- part 3: a small job behind a big one


def small_behind_big(service: Service, args: argparse.Namespace) -> None:
    big = tagged_addresses("p3-big", sized(args.big_recipients, args.scale))
    small = tagged_addresses("p3-small", sized(args.small_recipients, args.scale))
    start = service.relay.count()
    print(
        f"   posting a {len(big):,}-recipient job, then {args.small_delay:g} s later a {len(small):,}-recipient one",
        flush=True,
    )
    big_job = service.post(BIG_ACCOUNT, big, "bulk")
    time.sleep(max(0.0, big_job.accepted_at + args.small_delay - time.monotonic()))
    small_job = service.post(SMALL_ACCOUNT, small, "bulk")
    total = len(big) + len(small)
    service.await_arrivals(start, total, part_timeout(args, total, args.send_rate), "part 3's messages")
    service.check_completed([big_job, small_job])
    arrivals = service.first_arrivals(start)
    small_done = max(arrivals[a] for a in small) - small_job.accepted_at
    big_done = max(arrivals[a] for a in big) - big_job.accepted_at
    fair = len(small) / (args.send_rate / 2)
    print(
        f"\nPart 3: a {len(small):,}-recipient job posted {small_job.accepted_at - big_job.accepted_at:.1f} s after a "
        f"{len(big):,}-recipient one of another account (SEND_RATE={args.send_rate:g})"
    )
    print_table(
        ["job", "recipients", "finished, s after its 202", "fair share allows, s", "ratio"],
        [
            ["small", f"{len(small):,}", f"{small_done:.1f}", f"{fair:.1f}", f"{small_done / fair:.1f}x"],
            ["big", f"{len(big):,}", f"{big_done:.1f}", f"{len(big) / args.send_rate:.1f} (alone)", "-"],
        ],
    )


# ---- part 5: bulk throughput beside the code before


@dataclass(frozen=True)
class ThroughputRun:
    count: int
    post_seconds: float  # the POST's answer, from its start
    first: float  # the first and last message at the relay, seconds after the POST's start
    last: float

    @property
    def rate(self) -> float:
        return self.count / self.last


def throughput(args: argparse.Namespace) -> None:
    count = sized(args.throughput_recipients, args.scale)
    before = args.before.resolve()
    codes = {"before": before, "after": None}
    print(f"== part 5: {count:,}-recipient bulk job, no SEND_RATE; before = {before} ({_commit(before)})", flush=True)
    rates: dict[str, list[float]] = {"before": [], "after": []}
    for rep in range(args.reps):
        for label, code in codes.items():
            run = throughput_run(args, count, code)
            rates[label].append(run.rate)
            print(
                f"   run {rep + 1} {label}: {run.rate:,.0f} msg/s (POST answered in {run.post_seconds:.2f} s, "
                f"first message at {run.first:.2f} s, last at {run.last:.2f} s)",
                flush=True,
            )
    print(f"\nPart 5: bulk throughput, {count:,} recipients, relay {args.rtt * 1000:.0f} ms away, no SEND_RATE")
    rows = [
        [label, ", ".join(f"{r:,.0f}" for r in values), f"{statistics.median(values):,.0f}"]
        for label, values in rates.items()
    ]
    print_table(["code", "msg/s, each run", "median"], rows)
    print(f"   after / before (medians): {statistics.median(rates['after']) / statistics.median(rates['before']):.2f}")


def throughput_run(args: argparse.Namespace, count: int, code: Path | None) -> ThroughputRun:
    """One job in a fresh deployment running ``code`` (None: this code), after a warm-up job; the clock
    runs from the start of the POST to the job's last message at the relay."""
    lane_field = code is None and not args.no_lane_field  # the code before refuses the unknown field
    with running_service("postgres-redis", "lanes", args, {}, lane_field=lane_field, code=code) as service:
        for tag, size in (("p5-warmup", min(WARMUP_RECIPIENTS, count)), ("p5-job", count)):
            addresses = tagged_addresses(tag, size)
            start = service.relay.count()
            began = time.monotonic()
            job = service.post(None, addresses, "bulk")
            service.await_arrivals(start, size, part_timeout(args, size, 100), f"part 5's {tag}")
            service.check_completed([job])
        arrivals = service.first_arrivals(start).values()
    return ThroughputRun(count, job.accepted_at - began, min(arrivals) - began, max(arrivals) - began)


def _commit(checkout: Path) -> str:
    result = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return f"commit {result.stdout.strip()}" if result.returncode == 0 else "not a git checkout"


# ---- the whole run


def sized(count: int, scale: float) -> int:
    return max(1, round(count * scale))


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="1,2,3,4,5", help="comma-separated parts to run, 1 to 6")
    parser.add_argument("--dev", action="store_true", help="also part 6: part 1 on the embedded configuration")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every job's size")
    parser.add_argument("--send-rate", type=float, default=400, help="SEND_RATE of parts 1-4 and 6, messages/s")
    parser.add_argument("--rtt", type=float, default=0.02, help="round trip of the relay, seconds")
    parser.add_argument("--bulk-recipients", type=int, default=100_000, help="part 1's bulk job")
    parser.add_argument("--transactional", type=int, default=50, help="part 1's transactional jobs")
    parser.add_argument("--seed", type=int, default=1, help="of the transactional jobs' moments")
    parser.add_argument("--account-recipients", type=int, default=20_000, help="part 2's job of each account")
    parser.add_argument("--big-recipients", type=int, default=100_000, help="part 3's big job")
    parser.add_argument("--small-recipients", type=int, default=1_000, help="part 3's small job")
    parser.add_argument("--small-delay", type=float, default=2, help="seconds between part 3's two jobs")
    parser.add_argument("--throughput-recipients", type=int, default=20_000, help="part 5's job")
    parser.add_argument("--reps", type=int, default=2, help="part 5's before/after pairs")
    parser.add_argument("--before", type=Path, help="checkout of the code before, for part 5")
    parser.add_argument("--no-lane-field", action="store_true", help='POST without "lane" (code without lanes)')
    parser.add_argument(
        "--timeout", type=float, help="seconds allowed for each part's messages (default: 2x nominal + 120)"
    )
    args = parser.parse_args()
    try:
        parts = {int(part) for part in args.parts.split(",") if part.strip()} | ({6} if args.dev else set())
    except ValueError:
        parser.error(f"--parts takes numbers 1 to 6, comma-separated: {args.parts!r}")
    if not parts <= {1, 2, 3, 4, 5, 6}:
        parser.error(f"--parts takes numbers 1 to 6: {args.parts!r}")
    if args.transactional < 1:
        parser.error("--transactional must be 1 or more")
    if 5 in parts and (args.before is None or not (args.before / "src" / "email_service").is_dir()):
        parser.error("part 5 needs --before, a checkout of the code before (with src/email_service)")
    exit_cleanly_on_sigterm()
    print_machine()
    defaults = Settings()
    print(
        f"SEND_RATE={args.send_rate:g} (parts 1-4, 6), relay {args.rtt * 1000:.0f} ms away; defaults otherwise: "
        f"WORKER_PROCESSES={defaults.worker_processes}, SMTP_CONCURRENCY={defaults.smtp_concurrency}, "
        f"BATCH_SIZE={defaults.batch_size}; scale {args.scale:g}, seed {args.seed}"
        + ('; "lane" left out of the bodies' if args.no_lane_field else ""),
        flush=True,
    )
    limited = {"SEND_RATE": f"{args.send_rate:g}"}
    if parts & {1, 2, 3, 4}:
        accounts = sorted({name for part in parts & PART_ACCOUNTS.keys() for name in PART_ACCOUNTS[part]})
        with running_service(
            "postgres-redis", "lanes", args, limited, lane_field=not args.no_lane_field, accounts=accounts
        ) as service:
            if parts & {1, 4}:
                print("== part 1" + (" and 4" if 4 in parts else ""), flush=True)
                run = transactional_during_bulk(service, args, "p1", sample_queue=4 in parts)
                if 1 in parts:
                    print_transactional(
                        f"Part 1: {args.transactional} transactional jobs during a {run.bulk_count:,}-recipient bulk "
                        f"job (SEND_RATE={args.send_rate:g}, relay {args.rtt * 1000:.0f} ms away)",
                        run,
                        args,
                    )
                if run.queue is not None:
                    print_queue(run.queue)
            for number, measure in ((2, three_accounts), (3, small_behind_big)):
                if number in parts:
                    time.sleep(1)  # the shared rate bucket fills up again between parts
                    print(f"== part {number}", flush=True)
                    measure(service, args)
    if 5 in parts:
        throughput(args)
    if 6 in parts:
        print("== part 6", flush=True)
        with running_service("embedded", "lanes_dev", args, limited, lane_field=not args.no_lane_field) as service:
            run = transactional_during_bulk(service, args, "p6", sample_queue=False)
        print_transactional(
            f"Part 6: the same on the embedded configuration (SQLite, filesystem broker, one worker process), "
            f"{run.bulk_count:,}-recipient bulk job",
            run,
            args,
        )


if __name__ == "__main__":
    main()
