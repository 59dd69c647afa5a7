"""Messages per second the service delivers into a local SMTP sink, beside a plain smtplib loop.

The sink is an aiosmtpd server in this process that only counts what it receives. Baseline:
one smtplib connection sending prebuilt messages one by one, the fastest a single Python
client can hand messages to that sink. Service: the API under gunicorn, the workers
(``email-service worker``: WORKER_PROCESSES processes of SMTP_CONCURRENCY threads, the service's
defaults unless told otherwise) and the scheduler beside them; the clock runs from the POST of one
job until GET /api/email/<id> says "completed", and the sink must then hold exactly one message per
recipient. Workers and API are warmed up by a small job first; each repetition is a new job in
the same deployment.

    .venv/bin/python bench/throughput.py
    .venv/bin/python bench/throughput.py --recipients 500 --reps 1 --configs postgres-redis --processes 1
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import threading
import time
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx
from aiosmtpd.controller import Controller

from _support import (
    CONFIG_LABELS,
    CONFIGS,
    deployment,
    exit_cleanly_on_sigterm,
    free_port,
    job_body,
    make_addresses,
    post_job,
    print_machine,
    print_table,
)

SENDER = "email-service@localhost"


class CountingHandler:
    """aiosmtpd handler that keeps nothing but counts: messages and distinct recipients."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # handle_DATA runs in the controller's thread, readers in ours
        self.messages = 0
        self.recipients: set[str] = set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages += 1
            self.recipients.update(envelope.rcpt_tos)
        return "250 OK"

    def reset(self) -> None:
        with self._lock:
            self.messages = 0
            self.recipients = set()

    def check(self, expected: int) -> None:
        with self._lock:
            messages, distinct = self.messages, len(self.recipients)
        if messages != expected or distinct != expected:
            raise RuntimeError(f"sink got {messages:,} messages for {distinct:,} recipients, expected {expected:,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=2_000, help="messages per run")
    parser.add_argument("--reps", type=int, default=3, help="runs of the baseline and jobs per configuration")
    parser.add_argument("--configs", nargs="*", choices=CONFIGS, default=["postgres-redis", "embedded"])
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: WORKER_PROCESSES)")
    parser.add_argument(
        "--smtp-concurrency", type=int, default=None, help="SMTP connections per process (default: SMTP_CONCURRENCY)"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="BATCH_SIZE of the service (default: 100)")
    parser.add_argument("--warmup", type=int, default=20, help="recipients of the untimed warm-up job")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between GET /api/email/<id>")
    parser.add_argument("--timeout", type=float, default=300, help="seconds allowed for one job")
    args = parser.parse_args()
    exit_cleanly_on_sigterm()
    print_machine()

    handler = CountingHandler()
    sink = Controller(handler, hostname="127.0.0.1", port=free_port())
    sink.start()
    try:
        results = [("plain smtplib loop, 1 connection", baseline(handler, sink.port, args.recipients, args.reps))]
        for config in args.configs:
            results.append((f"service: {CONFIG_LABELS[config]}", service_runs(handler, sink.port, config, args)))
    finally:
        sink.stop()

    count = args.recipients
    baseline_rate = count / statistics.median(results[0][1])
    print(f"\nDelivery of {count:,} messages into a local aiosmtpd sink (rates from the median and best run)")
    rows = []
    for label, seconds in results:
        median = statistics.median(seconds)
        rows.append(
            [
                label,
                f"{count:,}",
                len(seconds),
                f"{median:.2f}",
                f"{count / median:,.0f}",
                f"{count / min(seconds):,.0f}",
                f"{count / median / baseline_rate:.3f}x",
            ]
        )
    print_table(["sender", "messages", "runs", "median s", "msg/s (median)", "msg/s (best)", "vs baseline"], rows)


def baseline(handler: CountingHandler, port: int, count: int, reps: int) -> list[float]:
    """One reused connection per run, sendmail per message; the messages are built before the clock starts."""
    messages = [(address, _small_message(address)) for address in make_addresses(count)]
    print(f"== baseline: smtplib, {count:,} messages on one connection", flush=True)
    seconds = []
    for _ in range(reps):
        handler.reset()
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            smtp.ehlo()
            started = time.perf_counter()
            for address, data in messages:
                smtp.sendmail(SENDER, [address], data)
            seconds.append(time.perf_counter() - started)
        handler.check(count)
        print(f"   {seconds[-1]:.2f} s, {count / seconds[-1]:,.0f} msg/s; sink received all {count:,}", flush=True)
    return seconds


def service_runs(handler: CountingHandler, port: int, config: str, args: argparse.Namespace) -> list[float]:
    count = args.recipients
    env = {"MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(port)}
    # Only the settings asked for are set: the rest are the service's own defaults.
    for name, value in (("SMTP_CONCURRENCY", args.smtp_concurrency), ("BATCH_SIZE", args.batch_size)):
        if value is not None:
            env[name] = str(value)
    print(f"== service: {CONFIG_LABELS[config]}, {_worker_description(args)}", flush=True)
    seconds = []
    with deployment(config, "throughput", env) as deployed, httpx.Client(timeout=60) as client:
        api = deployed.start_api()
        worker = deployed.start_worker(args.processes)
        scheduler = deployed.start_scheduler()

        def alive() -> None:
            for child in (api, worker, scheduler):
                child.check_alive()

        # The warm-up job also proves the worker is consuming: its end means the pool is ready.
        warmup_id = post_job(client, deployed.base_url, job_body(make_addresses(args.warmup)), args.warmup)
        _wait_completed(client, deployed.base_url, warmup_id, args.poll, 120, alive)
        body = job_body(make_addresses(count))
        for _ in range(args.reps):
            handler.reset()
            started = time.perf_counter()
            job_id = post_job(client, deployed.base_url, body, count)
            job = _wait_completed(client, deployed.base_url, job_id, args.poll, args.timeout, alive)
            seconds.append(time.perf_counter() - started)
            if job["counts"]["sent"] != count:
                raise RuntimeError(f"job completed with counts {job['counts']}, expected {count:,} sent")
            handler.check(count)
            print(
                f"   {seconds[-1]:.2f} s POST→completed, {count / seconds[-1]:,.0f} msg/s; server clock: "
                f"{_seconds_between(job['created_at'], job['started_at']):.2f} s created→started, "
                f"{_seconds_between(job['created_at'], job['finished_at']):.2f} s created→finished; "
                f"sink received all {count:,}",
                flush=True,
            )
    return seconds


def _worker_description(args: argparse.Namespace) -> str:
    processes = f"--processes {args.processes}" if args.processes else "default processes (one per core)"
    threads = args.smtp_concurrency or "20 (default)"
    batch = args.batch_size or "100 (default)"
    return f"worker {processes}, SMTP_CONCURRENCY {threads}, BATCH_SIZE {batch}, scheduler beside"


def _wait_completed(
    client: httpx.Client, base_url: str, job_id: str, poll: float, timeout: float, alive: Callable[[], None]
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = client.get(f"{base_url}/api/email/{job_id}").raise_for_status().json()
        if job["status"] == "completed":
            return job
        alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} not completed after {timeout:.0f}s: {job['counts']}")
        time.sleep(poll)


def _small_message(address: str) -> bytes:
    # Same headers as the service's messages and a body of similar size.
    message = EmailMessage()
    message["Date"] = format_datetime(datetime.now().astimezone())
    message["From"] = SENDER
    message["To"] = address
    message["Subject"] = "Benchmark"
    message["Message-ID"] = make_msgid(domain="localhost")
    message.set_content("Hello from the benchmark.\n\n--\nEmail service\n")
    return message.as_bytes()


def _seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


if __name__ == "__main__":
    main()
