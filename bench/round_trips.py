"""Round trips to PostgreSQL and Redis of one POST /api/email/ (100 recipients) and one GET of its job, and
how long each takes in-process: what a request costs when every round trip waits for a busy server.

The app runs in this process (Flask's test client, no HTTP), with an API key, on a database and a Redis key
prefix of its own. The messages it sends to each server during one request are counted by strace (`make
bench` installs it) in a second, traced run of this script; each is a round trip, as the app waits for
every answer. The times come from the untraced run: the median of 200 requests of each kind.

    .venv/bin/python bench/round_trips.py
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from _support import print_machine, print_table

# isort: split
# _support has put the repository root on sys.path.
from tests.support.servers import REDIS_URL, own_database, own_redis_prefix
from tests.support.stack import relay_env, settings_from

from email_service.app import create_app
from email_service.services import auth, build_services

BODY = {
    "recipients": [f"reader{i}@example{i % 10}.com" for i in range(100)],
    "subject": "Round trips",
    "content": "Hello",
    "template": "default",
}
TIMED = 200
MARK = re.compile(r"MARK (\w+) (start|end)")


def _requests(run: Callable[[dict[str, Callable[[], object]]], None]) -> None:
    """Call ``run`` with the requests measured, on an app of its own (warmed up: pool, templates, prepared
    statements)."""
    with own_database() as database, own_redis_prefix() as prefix:
        settings = settings_from(relay_env(database, REDIS_URL, prefix, 25))
        key = auth.create_key(build_services(settings).sessions, "round-trips")[1]
        app = create_app(settings)
        client, headers = app.test_client(), {"Authorization": f"Bearer {key}"}

        def post() -> object:
            answer = client.post("/api/email/", json=BODY, headers=headers)
            assert answer.status_code == 202, answer.get_data(as_text=True)
            return answer

        job_id = ""
        for _ in range(10):
            job_id = post().get_json()["id"]  # type: ignore[attr-defined]

        def get_job() -> object:
            answer = client.get(f"/api/email/{job_id}", headers=headers)
            assert answer.status_code == 200
            return answer

        for _ in range(10):
            get_job()
        try:
            run({"POST /api/email/ (100 recipients)": post, "GET /api/email/<id>": get_job})
        finally:
            app.extensions["email_service"].engine.dispose()


def _mark_each(requests: dict[str, Callable[[], object]]) -> None:
    """In the traced run: one request of each kind between markers strace records."""
    with open(os.devnull, "w") as marks:
        for index, request in enumerate(requests.values()):
            os.write(marks.fileno(), f"MARK {index} start".encode())
            request()
            os.write(marks.fileno(), f"MARK {index} end".encode())


def _count(trace: Path) -> dict[int, Counter[str]]:
    """Messages sent during each marked request, by server: Redis speaks RESP (`*` first), the rest is libpq."""
    counts: dict[int, Counter[str]] = {}
    current = None
    for line in trace.read_text().splitlines():
        if mark := MARK.search(line):
            current = int(mark.group(1)) if mark.group(2) == "start" else None
        elif current is not None and "sendto(" in line:
            server = "Redis" if line.split(", ", 1)[1].startswith('"*') else "PostgreSQL"
            counts.setdefault(current, Counter())[server] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)  # the run strace watches
    args = parser.parse_args()
    if args.traced:
        _requests(_mark_each)
        return
    if shutil.which("strace") is None:
        raise SystemExit("strace is missing: `make bench` installs it")
    print_machine()
    times: dict[str, float] = {}

    def time_each(requests: dict[str, Callable[[], object]]) -> None:
        for name, request in requests.items():
            samples = []
            for _ in range(TIMED):
                started = time.perf_counter()
                request()
                samples.append(time.perf_counter() - started)
            times[name] = statistics.median(samples) * 1000

    _requests(time_each)
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace"
        command = ["strace", "-f", "-qq", "-e", "trace=sendto,write", "-s", "16", "-o", str(trace)]
        subprocess.run([*command, sys.executable, __file__, "--traced"], check=True, capture_output=True)
        counts = _count(trace)
    rows = [
        [name, str(counts[i]["PostgreSQL"]), str(counts[i]["Redis"]), f"{times[name]:.2f}"]
        for i, name in enumerate(times)
    ]
    print_table(["request", "PostgreSQL round trips", "Redis round trips", "median ms in-process"], rows)


if __name__ == "__main__":
    main()
