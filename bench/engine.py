"""The delivery engine: messages per second through a relay 0 ms and 20 ms away and under a relay limit,
beside the tutorial's design and a single smtplib connection; the workers' CPU per message and memory.

The relay is the test suite's FakeRelay (tests/fake_relay.py) in this process: it delays each reply
by a round-trip time, offers PIPELINING, can accept only RATE messages/s (454 beyond), and records
every Message-ID it accepted. Three senders, each on the same workloads:

(a) the tutorial's design: one task, one smtplib connection, one message after another; for each
    message the template file is read from disk, compiled with jinja2.Template and rendered, then
    built the way Flask-Mail does (MIMEText of the rendered text, as_bytes) and sent with sendmail;
(b) a plain smtplib loop on one reused connection sending prebuilt messages: one connection's limit;
(c) email_service with its defaults on PostgreSQL + Redis: the API under gunicorn, ``worker`` and
    ``scheduler`` processes. One job is POSTed; the clock runs until GET /api/email/<id> says
    completed; the relay must then hold every one of the job's Message-IDs and nobody may have failed.

(a) and (b) run in a child process of their own, so they do not share a GIL with the relay. At 20 ms
a single connection manages about a dozen messages a second, so they send --slow-count messages
there instead of all of them. For (c) the script also reports CPU per message (utime + stime from
/proc of the worker processes, and of the other processes involved), the workers' RSS sampled every
0.5 s over a --big job at 0 ms, and a cProfile of the service's claims served in-process.

    .venv/bin/python bench/engine.py
    .venv/bin/python bench/engine.py --recipients 1000 --slow-count 50 --big 5000 --profile 500
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import cProfile
import multiprocessing
import os
import smtplib
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email import charset, policy
from email.message import EmailMessage
from email.mime.text import MIMEText
from email.utils import format_datetime, formatdate, make_msgid
from pathlib import Path
from typing import Any

import httpx
import jinja2
import psycopg
import redis

import email_service
from _support import (
    PG_ADMIN_URL,
    REDIS_URL,
    Child,
    cpu_seconds,
    deployment,
    exit_cleanly_on_sigterm,
    job_body,
    machine_cpu,
    make_addresses,
    pids_named,
    post_job,
    print_machine,
    print_table,
    process_tree,
    rss_bytes,
)
from email_service.config import Settings
from email_service.message.mime import message_id_for
from email_service.services import build_services, dispatch, intake

# isort: split
# _support has put the repository root on sys.path.
from tests.support.fake_relay import Behaviour, FakeRelay

SENDER = "email-service@localhost"  # the service's default MAIL_DEFAULT_SENDER
SUBJECT = "Benchmark"
TEMPLATE_PATH = Path(email_service.__file__).parent / "message" / "templates" / "default.eml"
WORKLOADS = ("zero", "rtt", "limit", "limit-no-send-rate")
GOAL_RTT_RATE = 1500  # msg/s at 20 ms: the relay's distance should barely matter
GOAL_RTT_FACTOR = 50  # times the tutorial's design at 20 ms
GOAL_ZERO_RATE = 2000  # msg/s at 0 ms
GOAL_ZERO_FACTOR = 3  # times the tutorial's design at 0 ms
GOAL_LIMIT_SHARE = 0.95  # of the relay's limit


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    rtt: float
    rate: float | None
    send_rate: float | None = None  # SEND_RATE given to the service


@dataclass
class Run:
    """One sender on one workload."""

    sender: str
    workload: str
    count: int
    seconds: float
    distinct: int
    duplicates: int
    missing: int
    sent: int | None = None
    failed: int | None = None
    completed: bool = True
    note: str = ""
    post_seconds: float = 0.0
    throttled: int = 0  # 454 replies from the relay during the run
    cpu_ms: dict[str, tuple[float, float]] = field(default_factory=dict)  # (user, system) ms a message, by group
    machine_busy: float = 0.0  # share of all cores busy during the run
    redis_commands: float = 0.0  # per message, on the shared Redis (broker, rate buckets; others' too)
    arrivals: list[float] = field(default_factory=list)  # seconds after the POST the relay accepted each message

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.completed else self.distinct / self.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=10_000, help="recipients of each workload's job")
    parser.add_argument(
        "--slow-count", type=int, default=300, help="messages (a) and (b) send at 20 ms and under the limit"
    )
    parser.add_argument("--rtt", type=float, default=0.02, help="round trip of the distant relay, seconds")
    parser.add_argument("--rate", type=float, default=200, help="messages/s the limited relay accepts")
    parser.add_argument("--content-bytes", type=int, default=1000, help="size of the templated `content`")
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--big", type=int, default=100_000, help="recipients of the memory job at 0 ms (0: skip)")
    parser.add_argument("--profile", type=int, default=2_000, help="recipients of the in-process profile (0: skip)")
    parser.add_argument("--skip-baselines", action="store_true", help="measure only the service")
    parser.add_argument("--warmup", type=int, default=200, help="recipients of the untimed warm-up job")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed for one job")
    parser.add_argument(
        "--throttled-timeout", type=float, default=300, help="seconds allowed for the job without SEND_RATE"
    )
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    print_machine()

    ms = f"{args.rtt * 1000:.0f} ms"
    workloads = {
        "zero": Workload("zero", "0 ms round trip", 0.0, None),
        "rtt": Workload("rtt", f"{ms} round trip", args.rtt, None),
        "limit": Workload(
            "limit", f"limit {args.rate:g}/s, {ms}, SEND_RATE={args.rate:g}", args.rtt, args.rate, args.rate
        ),
        "limit-no-send-rate": Workload(
            "limit-no-send-rate", f"limit {args.rate:g}/s, {ms}, no SEND_RATE", args.rtt, args.rate
        ),
    }
    chosen = [workloads[key] for key in WORKLOADS if key in args.workloads]
    content = make_content(args.content_bytes)
    print(f"content: {len(content):,} characters; template {TEMPLATE_PATH.name}", flush=True)

    relay = FakeRelay(Behaviour()).start()
    service = ServiceBench(relay, content, args)
    runs: list[Run] = []
    try:
        if not args.skip_baselines:
            runs += baselines(relay, chosen, content, args)
        runs += service.measure(chosen)
    finally:
        relay.stop()
    if args.big and "zero" in args.workloads:
        chosen.append(big_workload(args.big))
    summary(runs, chosen, args)
    if service.memory is not None:
        service.memory.report()
    if service.profile is not None:
        print_profile(service.profile)


def make_content(size: int) -> str:
    """Plain ASCII prose of about ``size`` characters in lines under 78, as a newsletter's text would be."""
    sentence = "The quick brown fox jumps over the lazy dog while the bulk mailer keeps on sending. "
    return textwrap.fill((sentence * (size // len(sentence) + 1))[:size].rstrip(), width=72)


# ---- (a) and (b): one connection, in a child process


def tutorial_design(port: int, addresses: Sequence[str], content: str) -> float:
    """The tutorial's task: per message, read and compile the template, render it, build it like
    Flask-Mail and send it on the one connection. Seconds for all of them."""
    # Flask-Mail registers this at import: UTF-8 bodies go as 8bit/7bit instead of base64.
    charset.add_charset("utf-8", charset.SHORTEST, None, "utf-8")
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for address in addresses:
            template = jinja2.Template(TEMPLATE_PATH.read_text())
            date = formatdate(localtime=True)
            text = template.render(
                {"date": date, "from": SENDER, "to": address, "subject": SUBJECT, "content": content}
            )
            message = MIMEText(text, "plain", "utf-8")  # the rendered header block ends up in the body
            message["Subject"] = SUBJECT
            message["From"] = SENDER
            message["To"] = address
            message["Date"] = date
            message["Message-ID"] = make_msgid()
            message.policy = policy.SMTP
            smtp.sendmail(SENDER, [address], message.as_bytes())
    return time.perf_counter() - started


def smtplib_loop(port: int, addresses: Sequence[str], content: str) -> float:
    """Prebuilt messages (the service's headers and body), sendmail one after another on one connection."""
    messages = []
    for address in addresses:
        message = EmailMessage(policy=policy.SMTP)
        message["Date"] = format_datetime(datetime.now().astimezone())
        message["From"] = SENDER
        message["To"] = address
        message["Subject"] = SUBJECT
        message["Message-ID"] = make_msgid(domain="localhost")
        message.set_content(f"{content}\n\n--\nEmail service\n")
        messages.append((address, message.as_bytes()))
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for address, data in messages:
            smtp.sendmail(SENDER, [address], data)
    return time.perf_counter() - started


def in_child_process(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` in a fresh interpreter: its own GIL, and no global state left behind."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args).result()


def baselines(relay: FakeRelay, workloads: Sequence[Workload], content: str, args: argparse.Namespace) -> list[Run]:
    runs = []
    for workload in workloads:
        if workload.key == "limit-no-send-rate":
            continue  # the same as "limit" for a single connection: SEND_RATE only concerns the service
        count = args.recipients if workload.rtt == 0 else args.slow_count
        relay.behaviour.rtt, relay.behaviour.rate = workload.rtt, workload.rate
        for sender, function in (("(a) tutorial design", tutorial_design), ("(b) smtplib loop", smtplib_loop)):
            start = relay.count()
            seconds = in_child_process(function, relay.port, make_addresses(count), content)
            received = [item.message_id for item in relay.accepted[start:]]
            distinct = len(set(received))
            run = Run(sender, workload.key, count, seconds, distinct, len(received) - distinct, count - distinct)
            if count != args.recipients:
                run.note = f"{count:,} messages"
            runs.append(run)
            print(
                f"== {sender}, {workload.label}: {count:,} messages in {seconds:.2f} s, {run.rate:,.1f} msg/s; "
                f"relay got {distinct:,} distinct Message-IDs",
                flush=True,
            )
    return runs


# ---- (c) the service


class ServiceBench:
    """One PostgreSQL + Redis deployment; workers and scheduler restarted when SEND_RATE changes."""

    def __init__(self, relay: FakeRelay, content: str, args: argparse.Namespace) -> None:
        self.relay = relay
        self.content = content
        self.args = args
        self.memory: MemoryReport | None = None
        self.profile: dict[str, Any] | None = None
        self._children: dict[str, Child] = {}
        self._send_rate: float | None = None
        self._log_offsets: dict[Path, int] = {}

    def measure(self, workloads: Sequence[Workload]) -> list[Run]:
        env = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(self.relay.port)}
        runs = []
        with deployment("postgres-redis", "engine", env) as deployed, httpx.Client(timeout=120) as client:
            self.deployed, self.client = deployed, client
            print("== (c) service: starting the API (2 gunicorn workers)", flush=True)
            self._children["api"] = deployed.start_api()
            # SEND_RATE first, so the rest runs on one set of workers with the service's defaults only.
            for workload in sorted(workloads, key=lambda w: w.send_rate is None):
                self._ensure_engine(workload.send_rate)
                runs.append(self._job(workload, self.args.recipients))
                if workload.key == "zero" and self.args.big:
                    self.memory = MemoryReport(self.args.big)
                    runs.append(self._job(big_workload(self.args.big), self.args.big, memory=self.memory))
            if self.args.profile:
                self.profile = self._profile(self.args.profile)
        return runs

    def _ensure_engine(self, send_rate: float | None) -> None:
        """Workers and scheduler running with this SEND_RATE (None: not set at all)."""
        if "worker" in self._children and self._send_rate == send_rate:
            return
        self._stop_engine()
        extra = {} if send_rate is None else {"SEND_RATE": f"{send_rate:g}"}
        settings = " SEND_RATE=" + extra["SEND_RATE"] if extra else " (no SEND_RATE)"
        print(f"== (c) service: starting `worker` (default processes and SMTP_CONCURRENCY) and `scheduler`{settings}")
        self._children["worker"] = self.deployed.start_worker(extra_env=extra)
        self._children["scheduler"] = self.deployed.start_scheduler(extra_env=extra)
        self._send_rate = send_rate
        # An untimed job: connections, templates and pools warm, and proof that the workers consume.
        self.relay.behaviour.rtt, self.relay.behaviour.rate = 0.0, None
        self._job(Workload("zero", "warm-up", 0.0, None), self.args.warmup, quiet=True)
        if send_rate:
            time.sleep(max(1.0, self.args.warmup / send_rate))  # let the shared rate bucket fill up again

    def _stop_engine(self) -> None:
        for name in ("scheduler", "worker"):
            if child := self._children.pop(name, None):
                child.stop()

    def _alive(self) -> None:
        for child in self._children.values():
            child.check_alive()

    def _job(self, workload: Workload, count: int, *, memory: MemoryReport | None = None, quiet: bool = False) -> Run:
        relay, args = self.relay, self.args
        relay.behaviour.rtt, relay.behaviour.rate = workload.rtt, workload.rate
        body = job_body(make_addresses(count), SUBJECT, self.content)  # encoded before the clock starts
        timeout = args.throttled_timeout if workload.key == "limit-no-send-rate" else args.timeout
        workers = process_tree(self._children["worker"].pid)
        groups_before = self._process_groups()
        cpu_before = {name: cpu_seconds(pids) for name, pids in groups_before.items()}
        busy_before, total_before = machine_cpu()
        throttled_before = relay.replies["454"]
        commands_before = self._redis_commands()
        start = relay.count()
        sampler = memory.start(workers[1:]) if memory else contextlib.nullcontext()
        with sampler:
            started, posted = time.perf_counter(), time.monotonic()  # the relay stamps arrivals on monotonic()
            job_id = post_job(self.client, self.deployed.base_url, body, count)
            post_seconds = time.perf_counter() - started
            job, completed = self._wait(job_id, count, start, timeout)
            seconds = time.perf_counter() - started
        busy_after, total_after = machine_cpu()
        commands = self._redis_commands() - commands_before
        cpu_ms = {}
        for name, pids in self._process_groups().items():
            after = cpu_seconds(sorted({*pids, *groups_before.get(name, [])}))
            # A process that started during the job counts from zero; one that ended during it is lost.
            before = {pid: cpu_before[name].get(pid, (0.0, 0.0)) for pid in after}
            user = sum(after[pid][0] - before[pid][0] for pid in after)
            system = sum(after[pid][1] - before[pid][1] for pid in after)
            cpu_ms[name] = (user / count * 1000, system / count * 1000)
        expected = {message_id_for(job_id, position, SENDER, "") for position in range(count)}
        accepted = [item for item in relay.accepted[start:] if item.message_id in expected]
        received = [item.message_id for item in accepted]
        distinct = len(set(received))
        run = Run(
            "(c) email_service",
            workload.key,
            count,
            seconds,
            distinct,
            len(received) - distinct,
            len(expected) - distinct,
            sent=job["counts"]["sent"],
            failed=job["counts"]["failed"],
            completed=completed,
            post_seconds=post_seconds,
            throttled=relay.replies["454"] - throttled_before,
            cpu_ms=cpu_ms,
            machine_busy=(busy_after - busy_before) / (total_after - total_before),
            redis_commands=commands / count,
            arrivals=sorted(item.at - posted for item in accepted),
        )
        if set(workers) != set(process_tree(self._children["worker"].pid)):
            run.note += " worker processes changed during the job (restarted?)"
        if not quiet:
            self._print_run(workload, run, job)
        problems = self._log_problems()
        if problems:
            print("   service logs since the previous job:\n" + "\n".join(f"     {line}" for line in problems))
        return run

    def _wait(self, job_id: str, count: int, start: int, timeout: float) -> tuple[dict[str, Any], bool]:
        """Until GET says completed. The relay's count (free to read) says when to ask often; before
        that one GET a second, so that counting a large job's rows does not load the database."""
        url = f"{self.deployed.base_url}/api/email/{job_id}"
        deadline = time.monotonic() + timeout
        next_get = 0.0
        while True:
            now = time.monotonic()
            arrived = self.relay.count() - start >= count
            if arrived or now >= next_get:
                job: dict[str, Any] = self.client.get(url).raise_for_status().json()
                if job["status"] == "completed":
                    return job, True
                self._alive()
                next_get = now + 1.0
            if now > deadline:
                print(f"   job {job_id} not completed after {timeout:.0f} s: {job['counts']}; cancelling it")
                self.client.post(f"{url}/cancel")
                return job, False
            time.sleep(0.01 if arrived else 0.05)

    def _process_groups(self) -> dict[str, list[int]]:
        """Processes whose CPU is measured, by group; each service command with all its children."""
        names = {"worker": "workers", "scheduler": "scheduler", "api": "API"}
        groups = {names[name]: process_tree(child.pid) for name, child in self._children.items()}
        groups["PostgreSQL"] = self._postgres_backends()
        groups["Redis (shared)"] = pids_named("redis-server")  # other runs on this machine use it too
        groups["bench+relay"] = [os.getpid()]  # the relay's thread, the polling, the RSS sampler
        return groups

    def _redis_commands(self) -> int:
        with contextlib.closing(redis.Redis.from_url(REDIS_URL)) as client:
            return int(client.info("stats")["total_commands_processed"])

    def _postgres_backends(self) -> list[int]:
        """The server processes serving our database (pool connections of API, workers, scheduler)."""
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (self.deployed.database,))
            return [int(pid) for (pid,) in rows]

    def _log_problems(self) -> list[str]:
        """New lines of the service's logs that say something went wrong."""
        markers = ("ERROR", "CRITICAL", "Traceback", "exited with", "WARNING")
        lines = []
        for child in self._children.values():
            path = child.log_path
            offset = self._log_offsets.get(path, 0)
            with path.open("rb") as log:
                log.seek(offset)
                new = log.read()
            self._log_offsets[path] = offset + len(new)
            found = [ln for ln in new.decode(errors="replace").splitlines() if any(m in ln for m in markers)]
            if found:
                lines.append(f"{child.name}: {len(found)} line(s) with a warning or error, first ones:")
                lines += [f"  {line[:300]}" for line in found[:5]]
        return lines

    def _print_run(self, workload: Workload, run: Run, job: dict[str, Any]) -> None:
        counts = ", ".join(f"{k} {v:,}" for k, v in job["counts"].items() if v)
        state = "completed" if run.completed else f"NOT completed ({job['status']})"
        print(
            f"== (c) email_service, {workload.label}: {run.count:,} recipients {state} in {run.seconds:.2f} s "
            f"(POST answered in {run.post_seconds:.2f} s), {run.rate:,.0f} msg/s",
            flush=True,
        )
        print(
            f"   relay: {run.distinct:,} of the job's Message-IDs, {run.missing:,} missing, "
            f"{run.duplicates:,} duplicates, {run.throttled:,} replies 454; job: {counts}",
            flush=True,
        )
        if run.arrivals:
            times = run.arrivals
            share = {
                label: times[min(len(times) - 1, int(q * len(times)))] for label, q in (("half", 0.5), ("99%", 0.99))
            }
            print(
                f"   relay arrivals after the POST: first {times[0]:.2f} s, half {share['half']:.2f} s, "
                f"99% {share['99%']:.2f} s, last {times[-1]:.2f} s",
                flush=True,
            )
        cpu = ", ".join(f"{name} {user + system:.2f}" for name, (user, system) in run.cpu_ms.items())
        user, system = run.cpu_ms["workers"]
        print(
            f"   CPU ms per message: {cpu} (workers: {user:.2f} user + {system:.2f} system); "
            f"machine {run.machine_busy:.0%} busy (all cores); {run.redis_commands:.1f} Redis commands per message",
            flush=True,
        )

    def _profile(self, count: int) -> dict[str, Any]:
        """The service's claims served in a process of ours at 0 ms: one thread, under cProfile, many threads."""
        print(f"== (c) profile: claims served in-process, {count:,} recipients at 0 ms", flush=True)
        self._stop_engine()  # nobody else may take the jobs
        self.relay.behaviour.rtt, self.relay.behaviour.rate = 0.0, None
        return in_child_process(profile_serving, self.deployed.env, count, self.content)


class _SilentQueue:
    """A TaskQueue for one process serving alone: wake-ups are not needed, the serving threads are there."""

    def wake(self) -> None:
        pass

    def waiting(self) -> int:
        return 1_000_000

    def deliver_events(self, job_id: str) -> None:
        pass


# Service functions whose cumulative time is shown, when the code measured has them.
PROFILED = [
    ("services/dispatch.py", "take_next"),
    ("services/deliver.py", "send_claim"),
    ("storage/scheduling.py", "active_jobs"),
    ("storage/scheduling.py", "claim_due"),
    ("message/composing.py", "compose"),
    ("message/rendering.py", "render"),
    ("message/mime.py", "build"),
    ("delivery/smtp.py", "_round"),
    ("storage/outcomes.py", "_write"),
    ("services/deliver.py", "_job_status_change"),
    ("storage/jobs.py", "complete_job_if_done"),
]
# Own time grouped by where it is spent: (label, test on the profiler's file name and function name).
AREAS: list[tuple[str, Callable[[str, str], bool]]] = [
    (
        "waiting for PostgreSQL (psycopg's wait)",
        lambda path, func: path.endswith("psycopg/connection.py") and func == "wait",
    ),
    ("socket I/O (SMTP, mostly waiting for replies)", lambda path, func: path == "~" and "_socket.socket" in func),
    ("psycopg, other", lambda path, func: "/psycopg/" in path),
    ("SQLAlchemy", lambda path, func: "/sqlalchemy/" in path),
    ("email package (building messages)", lambda path, func: "/email/" in path),
    ("Jinja", lambda path, func: "/jinja2/" in path),
    ("smtplib", lambda path, func: path.endswith("smtplib.py")),
    ("email_service's own code", lambda path, func: "/email_service/" in path),
    ("everything else (stdlib, built-ins)", lambda path, func: True),
]


PROFILE_MODES = ("plain", "profiled", "threads")


def profile_serving(env: dict[str, str], count: int, content: str) -> dict[str, Any]:
    """In a child process, with the service's own objects: a job of ``count`` accepted then served by one
    thread (wall and CPU); a second one the same under cProfile; a third served by SMTP_CONCURRENCY
    threads at once, as in a worker process."""
    for name in Settings.model_fields:  # the deployment's settings only, as its worker processes see them
        os.environ.pop(name.upper(), None)
    os.environ.update(env)
    services = build_services(Settings())
    services.queue = _SilentQueue()
    request = intake.JobRequest(recipients=make_addresses(count), subject=SUBJECT, content=content)
    result: dict[str, Any] = {"count": count}
    profiler = cProfile.Profile()
    for mode in PROFILE_MODES:
        intake.accept_job(services, request)
        wall, cpu = time.perf_counter(), time.process_time()
        if mode == "threads":
            threads = services.settings.smtp_concurrency
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                list(pool.map(lambda _: dispatch.serve(services), range(threads)))
        else:
            with profiler if mode == "profiled" else contextlib.nullcontext():
                dispatch.serve(services)
        result[mode] = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}
    result["threads"]["count"] = services.settings.smtp_concurrency
    services.engine.dispose()
    profiler.create_stats()
    stats: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = profiler.stats
    result["cumulative"] = [
        (
            f"{suffix}:{name}",
            sum(v[3] for (path, _, func), v in stats.items() if func == name and path.endswith(suffix)),
        )
        for suffix, name in PROFILED
    ]
    areas = dict.fromkeys((label for label, _ in AREAS), 0.0)
    for (path, _, func), v in stats.items():
        areas[next(label for label, test in AREAS if test(path, func))] += v[2]
    result["areas"] = list(areas.items())
    top = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:12]
    result["top"] = [(_short(path, line, func), v[1], v[2]) for (path, line, func), v in top]
    return result


def _short(path: str, line: int, func: str) -> str:
    if path == "~":
        return func  # a built-in
    parts = Path(path).parts
    for anchor in ("email_service", "site-packages", f"python{sys.version_info.major}.{sys.version_info.minor}"):
        if anchor in parts:
            parts = parts[parts.index(anchor) + (0 if anchor == "email_service" else 1) :]
            break
    return f"{'/'.join(parts)}:{line}({func})"


# ---- memory


class MemoryReport:
    """RSS of each worker process, sampled every 0.5 s while a job runs."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.samples: dict[int, list[int]] = {}

    @contextlib.contextmanager
    def start(self, pids: Sequence[int]) -> Iterator[None]:
        stop = threading.Event()

        def sample() -> None:
            while True:
                for pid in pids:
                    if (rss := rss_bytes(pid)) is not None:
                        self.samples.setdefault(pid, []).append(rss)
                if stop.wait(0.5):
                    return

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def report(self) -> None:
        print(f"\nWorker processes' RSS over the {self.count:,}-recipient job at 0 ms (sampled every 0.5 s)")
        rows = []
        for pid, values in self.samples.items():
            start, peak, end = values[0], max(values), values[-1]
            rows.append([f"worker process {pid}", len(values), _mb(start), _mb(peak), _mb(end), _mb(peak - start)])
        print_table(["process", "samples", "start MB", "max MB", "end MB", "max - start MB"], rows)


def _mb(value: int) -> str:
    return f"{value / 2**20:,.1f}"


# ---- summary


def big_workload(count: int) -> Workload:
    return Workload("big", f"0 ms round trip, {count:,} recipients", 0.0, None)


def summary(runs: Sequence[Run], workloads: Sequence[Workload], args: argparse.Namespace) -> None:
    def find(sender: str, key: str) -> Run | None:
        return next((r for r in runs if r.sender.startswith(sender) and r.workload == key), None)

    print(f"\nMessages per second; {args.recipients:,} recipients, ~{args.content_bytes:,} B of templated content")
    if args.slow_count != args.recipients and not args.skip_baselines:
        print(
            f"(a) and (b) sent {args.slow_count:,} messages at {args.rtt * 1000:.0f} ms and under the limit "
            f"(a single connection needs minutes for {args.recipients:,}); the rates compare, the counts differ."
        )
    rows = []
    for workload in workloads:
        tutorial = find("(a)", workload.key)
        loop = find("(b)", workload.key)
        service = find("(c)", workload.key)
        if workload.key == "limit-no-send-rate":
            tutorial, loop = find("(a)", "limit"), find("(b)", "limit")
        goal, met = _goal(workload, args, tutorial, service)
        rows.append(
            [
                workload.label,
                _rate(tutorial),
                _rate(loop),
                _rate(service),
                f"{service.rate / tutorial.rate:,.1f}x" if service and tutorial else "-",
                f"{service.rate / loop.rate:,.1f}x" if service and loop else "-",
                goal,
                met,
            ]
        )
    headers = ["workload", "(a) tutorial", "(b) smtplib", "(c) service", "(c)/(a)", "(c)/(b)", "goal", "met"]
    print_table(headers, rows)

    service_runs = [r for r in runs if r.sender.startswith("(c)")]
    if service_runs:
        print("\n(c) CPU per message (ms, utime + stime from /proc) and correctness, per service job")
        names = list(service_runs[0].cpu_ms)
        labels = {w.key: w.label for w in workloads}
        rows = []
        for run in service_runs:
            rows.append(
                [
                    labels.get(run.workload, run.workload) + (f" ({run.note.strip()})" if run.note else ""),
                    *(f"{sum(run.cpu_ms.get(name, (0, 0))):.2f}" for name in names),
                    f"{run.cpu_ms['workers'][1]:.2f}",
                    f"{run.redis_commands:.1f}",
                    f"{run.machine_busy:.0%}",
                    f"{run.sent:,}/{run.count:,}",
                    f"{run.failed:,}",
                    f"{run.missing:,}",
                    f"{run.duplicates:,}",
                    f"{run.throttled:,}",
                ]
            )
        print_table(
            [
                "job",
                *names,
                "of which workers' system",
                "Redis cmds",
                "machine busy",
                "sent",
                "failed",
                "missing",
                "dup",
                "454s",
            ],
            rows,
        )


def _rate(run: Run | None) -> str:
    if run is None:
        return "-"
    text = f"{run.rate:,.1f}" if run.rate < 100 else f"{run.rate:,.0f}"
    if not run.completed:
        text += " (incomplete)"
    if run.missing or (run.failed or 0):
        text += " (!)"
    return text


def _goal(workload: Workload, args: argparse.Namespace, tutorial: Run | None, service: Run | None) -> tuple[str, str]:
    if service is None:
        return "-", "-"
    ok = service.completed and service.missing == 0 and not service.failed
    if workload.key == "zero":
        target = max(GOAL_ZERO_RATE, GOAL_ZERO_FACTOR * tutorial.rate) if tutorial else GOAL_ZERO_RATE
        return (
            f">= {GOAL_ZERO_RATE:,} and >= {GOAL_ZERO_FACTOR}x (a) = {target:,.0f}",
            _yes(ok and service.rate >= target),
        )
    if workload.key == "rtt":
        target = max(GOAL_RTT_RATE, GOAL_RTT_FACTOR * tutorial.rate) if tutorial else GOAL_RTT_RATE
        return (
            f">= {GOAL_RTT_RATE:,} and >= {GOAL_RTT_FACTOR}x (a) = {target:,.0f}",
            _yes(ok and service.rate >= target),
        )
    if workload.key == "big":
        return "-", "-"
    target = GOAL_LIMIT_SHARE * args.rate
    return f">= {target:,.0f} ({GOAL_LIMIT_SHARE:.0%} of {args.rate:g}), none failed", _yes(
        ok and service.rate >= target
    )


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def print_profile(profile: dict[str, Any]) -> None:
    count = profile["count"]
    plain, profiled, threads = profile["plain"], profile["profiled"], profile["threads"]
    print(f"\nWhere a worker's time goes: the service's claims served in-process, {count:,} recipients at 0 ms")
    rows = [
        [
            f"{label}",
            f"{run['wall'] / count * 1000:.2f}",
            f"{run['cpu'] / count * 1000:.2f}",
            f"{count / run['wall']:,.0f}",
        ]
        for label, run in (
            ("one thread", plain),
            (f"{threads['count']} threads in one process", threads),
            ("one thread under cProfile", profiled),
        )
    ]
    print_table(["claims served, whole job", "wall ms per message", "CPU ms per message", "msg/s"], rows)
    print()
    whole = profiled["wall"]
    rows = [[label, f"{own / count * 1000:.3f}", f"{own / whole:.0%}"] for label, own in profile["areas"]]
    print_table(["own time under cProfile, by area", "ms per message", "share"], rows)
    print()
    rows = [
        [name, f"{value / count * 1000:.3f}", f"{value / whole:.0%}"] for name, value in profile["cumulative"] if value
    ]
    print_table(["cumulative time of service functions", "ms per message", "share"], rows)
    print()
    rows = [
        [name, f"{calls:,}", f"{own / count * 1000:.3f}", f"{own / whole:.0%}"] for name, calls, own in profile["top"]
    ]
    print_table(["top functions by own time", "calls", "ms per message", "share"], rows)


if __name__ == "__main__":
    main()
