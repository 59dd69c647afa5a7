"""Helpers shared by the benchmark scripts: isolated deployments of the service and small utilities.

A deployment is one configuration of the service (embedded SQLite + filesystem broker, or
PostgreSQL + Redis) with its own temp folder, its own database and Redis key prefix, and the
child processes started in it. Leaving the ``with`` block stops those children by pid and removes
everything the deployment created, also after an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

import email_service
from email_service.config import Settings

PYTHON = sys.executable  # run as .venv/bin/python, so children get the project's virtualenv
REPO_ROOT = Path(__file__).resolve().parents[1]
# The benchmarks use the test suite's helpers as they are (tests/support/, e.g. its SMTP relay fake_relay.py).
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL_TEMPLATE = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
REDIS_URL = "redis://127.0.0.1:6379/0"
CONFIGS = ("embedded", "postgres-redis")
CONFIG_LABELS = {"embedded": "SQLite + filesystem broker", "postgres-redis": "PostgreSQL + Redis"}
# Longer than the worker supervisor's own 30 s grace, so its warm shutdown is never cut short.
STOP_GRACE_SECONDS = 40
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    # Another process may take the port before the child binds it; on this machine that race is rare enough.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique_token(kind: str) -> str:
    """A name no other run on the shared servers uses: script, pid and random bits."""
    return f"bench_{kind}_{os.getpid()}_{secrets.token_hex(4)}"


def make_addresses(count: int) -> list[str]:
    return [f"user{i}@example{i % 50}.com" for i in range(count)]


def base_environment() -> dict[str, str]:
    """This process's environment without any of the service's settings, so nothing leaks in from the shell."""
    names = {name.upper() for name in Settings.model_fields}
    return {key: value for key, value in os.environ.items() if key.upper() not in names}


def median_and_min(samples: Sequence[float]) -> tuple[float, float]:
    return statistics.median(samples), min(samples)


def exit_cleanly_on_sigterm() -> None:
    # SystemExit unwinds the ``with`` blocks, so a terminated benchmark still stops its children and cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))


def print_machine() -> None:
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{started}; {os.cpu_count()} cores; Python {platform.python_version()}; {platform.platform()}")
    print(f"email_service from {Path(email_service.__file__).parent} ({_code_version()})")
    print(f"load average before the run: {Path('/proc/loadavg').read_text().split()[0]}", flush=True)


def _code_version() -> str:
    """The commit of the code measured, and whether the package has uncommitted edits."""
    root = Path(email_service.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        edits = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "."], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    state = f"{len(edits.splitlines())} file(s) with uncommitted edits" if edits else "no uncommitted edits"
    return f"commit {commit}, {state}"


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        # First column left-aligned (labels), the rest right-aligned (figures).
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))


def wait_until(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    alive: Callable[[], None] | None = None,
) -> None:
    """Poll ``predicate`` until true; ``alive`` raises if a process we depend on has died."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Child:
    """A process we started in its own session, output to a log file, stopped by its pid."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._stopped = False
        self._log = log_path.open("wb")
        # Own session, so a terminal's Ctrl-C reaches only the benchmark, which then stops us in order.
        self.process = subprocess.Popen(
            list(args), env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} (pid {self.pid}) exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_count(self, marker: str) -> int:
        self._log.flush()
        return self.log_path.read_text(errors="replace").count(marker)

    def stop(self) -> None:
        # SIGTERM lets gunicorn and Celery stop their own children; the group kill is a last resort
        # for those children only (the group is the one this child's own session created).
        if self._stopped:  # stopped early by the script, then again by the exit stack
            return
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                print(
                    f"  {self.name} (pid {self.pid}) did not stop in {STOP_GRACE_SECONDS}s; killing it", file=sys.stderr
                )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait()
        self._log.close()


class Deployment:
    """One configuration of the service; start its API, workers and scheduler, then read ``base_url``."""

    def __init__(
        self, config: str, env: dict[str, str], workdir: Path, stack: contextlib.ExitStack, database: str | None
    ) -> None:
        self.config = config
        self.label = CONFIG_LABELS[config]
        self.env = env
        self.workdir = workdir
        self.database = database  # the PostgreSQL database's name, None on SQLite
        self._stack = stack
        self.base_url = ""

    def run_cli(self, *args: str) -> str:
        """Run ``email-service <args>`` to its end; what it printed on stdout."""
        result = subprocess.run([PYTHON, "-m", "email_service", *args], env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"email-service {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def start(self, name: str, *args: str, extra_env: dict[str, str] | None = None) -> Child:
        """Start ``email-service <args>``; ``extra_env`` adds settings for this process only."""
        log_path = self.workdir / f"{name}.log"
        for n in itertools.count(2):  # a process started again under the same name keeps the old log
            if not log_path.exists():
                break
            log_path = self.workdir / f"{name}-{n}.log"
        child = Child(name, [PYTHON, "-m", "email_service", *args], {**self.env, **(extra_env or {})}, log_path)
        self._stack.callback(child.stop)
        return child

    def start_api(self, workers: int = 2) -> Child:
        port = free_port()
        api = self.start("api", "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers))
        self.base_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{self.base_url}/healthz"), timeout=60, what="the API", alive=api.check_alive)
        return api

    def start_worker(self, processes: int | None = None, extra_env: dict[str, str] | None = None) -> Child:
        """``email-service worker``: a supervisor and its Celery worker processes (WORKER_PROCESSES
        by default), each with SMTP_CONCURRENCY threads; returns once every one says it is ready."""
        args = ["worker"] if processes is None else ["worker", "--processes", str(processes)]
        worker = self.start("worker", *args, extra_env=extra_env)
        configured = {**self.env, **(extra_env or {})}.get("WORKER_PROCESSES")
        default = Settings.model_fields["worker_processes"].get_default(call_default_factory=True)
        expected = processes or int(configured or default)
        wait_until(
            lambda: worker.log_count(" ready.") >= expected,
            timeout=90,
            what=f"{expected} worker process(es) to be ready",
            interval=0.1,
            alive=worker.check_alive,
        )
        return worker

    def start_scheduler(self, extra_env: dict[str, str] | None = None) -> Child:
        """``email-service scheduler``, which queues again deferred and lost work; it runs beside the workers."""
        scheduler = self.start("scheduler", "scheduler", extra_env=extra_env)
        wait_until(
            lambda: scheduler.log_count("scheduler sweeping") > 0,
            timeout=60,
            what="the scheduler",
            interval=0.1,
            alive=scheduler.check_alive,
        )
        return scheduler


# ---- processes seen through /proc (Linux)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces): state is [0], ppid [1]."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def cpu_seconds(pids: Sequence[int]) -> dict[int, tuple[float, float]]:
    """(utime, stime) of each process still alive, in seconds (a vanished one is left out)."""
    seconds = {}
    for pid in pids:
        if fields := _stat(pid):
            seconds[pid] = (int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS)
    return seconds


def pids_named(command: str) -> list[int]:
    """Processes whose command name (/proc/<pid>/comm) is ``command``."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == command:
                found.append(int(entry.name))
    return found


def rss_bytes(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError):
        return None


def machine_cpu() -> tuple[float, float]:
    """Busy and total CPU seconds of the whole machine since boot, all cores together (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice; guest time is already in user.
    total = sum(values[:8])
    return (total - values[3] - values[4]) / CLOCK_TICKS, total / CLOCK_TICKS


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextlib.contextmanager
def deployment(
    config: str,
    kind: str,
    extra_env: dict[str, str] | None = None,
    code: Path | None = None,
    redis_url: str | None = None,
) -> Iterator[Deployment]:
    """A fresh, migrated deployment of ``config`` ("embedded" or "postgres-redis"); removed on exit.
    ``code``: a checkout of the project whose ``src`` the children run instead of this process's code.
    ``redis_url``: a Redis server of the caller's own for "postgres-redis" (one it may stop), instead of
    the machine's; its keys are left to it (they go with the server)."""
    with contextlib.ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix=f"bench_{kind}_"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        # Without API keys: one indexed read per request, left out of the figures.
        env = {**base_environment(), "DATA_DIR": str(workdir / "data"), "AUTH_DISABLED": "true", **(extra_env or {})}
        if code is not None:
            # First on the path, before this process's entries and the virtualenv's editable install.
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code.resolve() / "src"), env.get("PYTHONPATH")]))
        token = unique_token(kind)
        if config == "embedded":
            env["CELERY_BROKER_URL"] = "filesystem://"
        elif config == "postgres-redis":
            stack.enter_context(_postgres_database(token))
            if redis_url is None:
                stack.enter_context(_redis_namespace(f"{token}:"))
            env.update(
                DATABASE_URL=PG_URL_TEMPLATE.format(name=token),
                CELERY_BROKER_URL=redis_url or REDIS_URL,
                CELERY_BROKER_KEY_PREFIX=f"{token}:",
                CELERY_QUEUE=token,
            )
        else:
            raise ValueError(f"unknown configuration {config!r}; choose from {CONFIGS}")
        (workdir / "data").mkdir()
        deployed = Deployment(config, env, workdir, stack, token if config == "postgres-redis" else None)
        deployed.run_cli("db", "upgrade")
        yield deployed  # children registered on the stack stop before the database and keys go


@contextlib.contextmanager
def _postgres_database(name: str) -> Iterator[None]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def _redis_namespace(prefix: str) -> Iterator[None]:
    # The prefix is letters, digits, '_' and ':' only, so it needs no glob escaping.
    client = redis.Redis.from_url(REDIS_URL)
    try:
        yield
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


def post_job(client: httpx.Client, base_url: str, body: bytes, expected_total: int) -> str:
    """POST a pre-encoded job body; the job id. Raises unless the service accepted all recipients."""
    response = client.post(f"{base_url}/api/email/", content=body, headers={"Content-Type": "application/json"})
    if response.status_code != 202 or response.json().get("total") != expected_total:
        raise RuntimeError(f"POST /api/email/ answered {response.status_code}: {response.text[:500]}")
    return str(response.json()["id"])


def job_body(
    addresses: Sequence[str],
    subject: str = "Benchmark",
    content: str = "Hello from the benchmark.",
    fields: Mapping[str, Any] | None = None,
) -> bytes:
    """A job's JSON body; ``fields`` adds more of the API's fields (e.g. ``lane``)."""
    return json.dumps(
        {"recipients": list(addresses), "subject": subject, "content": content, "template": "default", **(fields or {})}
    ).encode()
