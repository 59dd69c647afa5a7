"""Latency and throughput of POST /api/email/ through nginx, while the workers send, found by wrk.

The topology is the deployment test's (tests/deployment.py): Debian's nginx with deploy/nginx/email-service.conf,
gunicorn (2 workers) on a unix socket, 2 worker processes, the scheduler, PostgreSQL and Redis, all with the
service's default settings (so the workers run at WORKER_NICE, as they would beside the API on one host); the
workers send to an aiosmtpd sink in this process that only counts. wrk (bench/post_jobs.lua) posts
100-recipient jobs with an API key. Baselines on one connection: GET /healthz, and the same POSTs with the
worker processes paused. Then the knee: closed-loop steps of 1, 2, 4, 8, 16 and 32 connections; the knee is
the fewest connections giving 90 % of the best rate. Then 70 % of the knee's rate is held for two minutes:
Debian's wrk cannot pace a rate, so many connections each pause between a response and their next request
(wrk's delay()), twenty times longer than a request takes at that rate (measured by a 10 s trial first).

    .venv/bin/python bench/load.py
    .venv/bin/python bench/load.py --step-seconds 5 --hold-seconds 30     # a quicker look
    .venv/bin/python bench/load.py --worker-nice 0     # the workers at the API's priority: the baseline
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _support import base_environment, exit_cleanly_on_sigterm, print_machine, print_table
from throughput import CountingHandler

# isort: split
# _support has put the repository root on sys.path.
from tests.support.deployment import Topology, production_topology
from tests.support.smtp_sink import SMTPSink

SCENARIO = Path(__file__).resolve().parent / "post_jobs.lua"
STEPS = (1, 2, 4, 8, 16, 32)
KNEE_SHARE = 0.9  # the knee: the fewest connections reaching this share of the best rate
HOLD_SHARE = 0.7  # the sustained load, as a share of the knee's rate
P99_GOAL_MS = 200
PACING_RATIO = 20  # pause / latency of each paced connection
MAX_PAUSE_MS = 6000  # drawn up to 1.5 times: 9 s
SETTLE_SECONDS = 3
TRIAL_SECONDS = 10  # the trial run that measures a request's latency at the held rate


@dataclass
class Run:
    """One wrk run's figures."""

    connections: int
    pause_ms: float
    requests: int
    seconds: float
    errors: int
    error_kinds: str  # e.g. "2 read errors, 1 timeouts"
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def row(self) -> list[str]:
        return [
            str(self.connections),
            f"{self.pause_ms:.0f}",
            f"{self.rate:.1f}",
            f"{self.p50_ms:.1f}",
            f"{self.p90_ms:.1f}",
            f"{self.p99_ms:.1f}",
            f"{self.max_ms:.0f}",
            str(self.errors),
        ]


HEADERS = ["connections", "pause ms", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"]


def wrk(
    topology: Topology, connections: int, seconds: float, recipients: int, pause_ms: float = 0, threads: int = 2
) -> Run:
    command = [
        "wrk",
        f"--threads={min(connections, threads)}",
        f"--connections={connections}",
        f"--duration={seconds:.0f}s",
        "--timeout=10s",  # a slower answer counts as an error
        f"--script={SCENARIO}",
        topology.nginx.url,
        "--",
        topology.api_key,
        str(recipients),
        f"{pause_ms:.0f}",
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    # Requests still queued when wrk stops are served all the same: let them drain before the next run.
    time.sleep(SETTLE_SECONDS)
    figures = json.loads(output.strip().splitlines()[-1])
    kinds = {k: figures[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")}
    return Run(
        connections,
        pause_ms,
        figures["requests"],
        figures["duration_us"] / 1e6,
        sum(kinds.values()),
        ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in kinds.items() if count),
        *(figures[k] / 1000 for k in ("p50_us", "p90_us", "p99_us", "max_us", "mean_us")),
    )


def measure_baselines(topology: Topology, args: argparse.Namespace) -> tuple[Run, Run]:
    """Two baselines on one connection: GET /healthz (nginx and gunicorn, no database), and the same POSTs
    as the load with the worker processes paused (SIGSTOP), i.e. the API alone on the machine's cores."""
    floor = wrk(topology, 1, args.step_seconds, 0)
    workers = topology.worker.children()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    try:
        alone = wrk(topology, 1, args.step_seconds, args.recipients)
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
    print("\n== baselines, 1 connection")
    print_table(["run", *HEADERS], [["GET /healthz", *floor.row()], ["POST, workers paused", *alone.row()]])
    return floor, alone


def measure_knee(topology: Topology, args: argparse.Namespace) -> tuple[list[Run], Run]:
    """Closed-loop steps of more and more connections; the knee is the fewest reaching 90 % of the best rate."""
    print(f"\n== the knee: {args.step_seconds:.0f} s per step, {args.recipients}-recipient jobs", flush=True)
    steps = []
    for connections in STEPS:
        steps.append(wrk(topology, connections, args.step_seconds, args.recipients))
        print(f"  {connections} connection(s): {steps[-1].rate:.1f} req/s", flush=True)
    print_table(HEADERS, [run.row() for run in steps])
    best = max(run.rate for run in steps)
    knee = next(run for run in steps if run.rate >= KNEE_SHARE * best)
    accepted = knee.rate * args.recipients
    print(f"knee: {knee.connections} connection(s), {knee.rate:.1f} req/s ({accepted:,.0f} recipients/s accepted)")
    return steps, knee


def pacing(target: float, latency_ms: float) -> tuple[int, float]:
    """Connections, and the mean pause of each, that send ``target`` requests a second when a request
    takes ``latency_ms``: C connections pausing P ms send C / (L + P) a second, and with P twenty times L
    the rate hardly depends on how L varies."""
    connections = max(8, math.ceil(PACING_RATIO * target * latency_ms / 1000))
    # nginx closes a new connection that sends nothing for client_header_timeout (10 s): pauses stay shorter.
    connections = max(1, min(connections, math.floor(target * (MAX_PAUSE_MS + latency_ms) / 1000)))
    return connections, 1000 * connections / target - latency_ms


def hold(topology: Topology, knee: Run, unqueued: Run, args: argparse.Namespace) -> Run:
    """HOLD_SHARE of the knee's rate. The pacing is planned with the latency of ``unqueued`` (the
    one-connection step), tried for TRIAL_SECONDS, and planned again with the latency the trial measured:
    under this load requests take longer than on one connection, and the rate would fall short."""
    target = HOLD_SHARE * knee.rate
    planned, planned_pause_ms = pacing(target, unqueued.mean_ms)
    trial = wrk(topology, planned, TRIAL_SECONDS, args.recipients, planned_pause_ms, threads=1)
    connections, pause_ms = pacing(target, trial.mean_ms)
    print(f"\n== {HOLD_SHARE:.0%} of the knee: {target:.1f} req/s for {args.hold_seconds:.0f} s "
          f"({connections} connections pausing {pause_ms:.0f} ms on average; a {TRIAL_SECONDS} s trial "
          f"measured {trial.mean_ms:.1f} ms a request)", flush=True)  # fmt: skip
    held = wrk(topology, connections, args.hold_seconds, args.recipients, pause_ms, threads=1)
    print_table(HEADERS, [held.row()])
    p99 = "met" if held.p99_ms <= P99_GOAL_MS else "MISSED"
    errors = "met" if held.errors == 0 else f"MISSED: {held.error_kinds}"
    print(f"held {held.rate:.1f} req/s = {held.rate / knee.rate:.0%} of the knee")
    print(f"p99 {held.p99_ms:.1f} ms (goal <= {P99_GOAL_MS} ms: {p99}); errors {held.errors} (goal 0: {errors})")
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100, help="recipients per job")
    parser.add_argument("--step-seconds", type=float, default=10, help="length of each step to find the knee")
    parser.add_argument("--hold-seconds", type=float, default=120, help="length of the run at 70 %% of the knee")
    parser.add_argument(
        "--worker-nice", type=int, help="WORKER_NICE of the workers (default: the service's); 0: the API's priority"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: `make deploy-tools` installs it (and nginx)")
    exit_cleanly_on_sigterm()
    environment = base_environment()  # the topology's processes inherit ours: no setting from the shell
    os.environ.clear()
    os.environ.update(environment)
    print_machine()
    sink = SMTPSink(CountingHandler()).start()  # counts, keeps nothing: the run sends some 100,000 messages
    folder = Path(tempfile.mkdtemp(prefix="bench_load_"))
    try:
        settings = {} if args.worker_nice is None else {"WORKER_NICE": str(args.worker_nice)}
        with production_topology(folder, sink.port, **settings) as topology:
            print(f"topology up: nginx {topology.nginx.url} -> gunicorn unix:{topology.gunicorn.socket}", flush=True)
            print(f"worker processes at niceness {os.getpriority(os.PRIO_PROCESS, topology.worker.pid)} (WORKER_NICE)")
            # Warm-up: both gunicorn workers, connections, caches, and a backlog that keeps the workers sending
            # through every step (jobs are accepted faster than they are sent).
            wrk(topology, 2, 5, args.recipients)
            started, delivered_before = time.monotonic(), sink.handler.messages
            floor, alone = measure_baselines(topology, args)
            steps, knee = measure_knee(topology, args)
            one = steps[0]
            print(f"a job on one connection while the workers send: p50 {one.p50_ms:.1f} ms = "
                  f"{one.p50_ms / alone.p50_ms:.1f} x with the workers paused, "
                  f"{one.p50_ms / floor.p50_ms:.0f} x GET /healthz")  # fmt: skip
            hold(topology, knee, steps[0], args)
            delivered = sink.handler.messages - delivered_before
            rate = delivered / (time.monotonic() - started)
            print(f"meanwhile the workers delivered {delivered:,} messages to the sink ({rate:,.0f}/s)")
    finally:
        sink.stop()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
