"""Template bombs posted all at once to `email-service serve` while `/healthz` is polled: what the
integration test asserts and bench/render_bombs.py prints."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.stack import GunicornApi
from tests.unit.message.test_render_bombs import BOMBS, DEADLINE_ONLY

# The two only the deadline stops, and four that make the most before a bound stops them: fewer than
# serve's threads, so none waits for a thread.
HEAVIEST = DEADLINE_ONLY + [
    bomb
    for bomb in BOMBS
    if bomb not in DEADLINE_ONLY
    and ("append('x' * 999999)" in bomb or "map('center'" in bomb or bomb.endswith(("{{ c }}", "{{ f(60) }}")))
]


@dataclass(frozen=True)
class BombsAtOnce:
    answers: list[tuple[int, float]]  # (status, seconds) of each bomb's preview
    health: list[float]  # seconds of each /healthz answered meanwhile
    grown: int  # bytes the gunicorn worker's peak resident memory grew by


@contextlib.contextmanager
def one_worker_serve(folder: Path) -> Iterator[GunicornApi]:
    """`email-service serve` with one worker process, on SQLite, without keys."""
    env = {"DATA_DIR": str(folder), "DATABASE_URL": "", "AUTH_DISABLED": "true"}
    server = GunicornApi(env, folder / "serve.log", workers=1).wait_ready()
    try:
        yield server
    finally:
        server.stop()


def bombs_at_once(api: GunicornApi) -> BombsAtOnce:
    (worker,) = api.workers()
    with api.client() as client:
        ordinary = client.post("/api/templates/preview", json={"template": {"html": "<p>{{ 'a' * 3 }}</p>"}})
        assert ordinary.status_code == 200, ordinary.text
        before = _peak_rss(worker)

        def preview(html: str) -> tuple[int, float]:
            started = time.monotonic()
            answer = httpx.post(f"{api.url}/api/templates/preview", json={"template": {"html": html}}, timeout=30)
            return answer.status_code, time.monotonic() - started

        health: list[float] = []
        with ThreadPoolExecutor(len(HEAVIEST)) as pool:
            answers = [pool.submit(preview, html) for html in HEAVIEST]
            while not all(answer.done() for answer in answers):
                started = time.monotonic()
                assert client.get("/healthz", timeout=5).status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.1)
        return BombsAtOnce([answer.result() for answer in answers], health, _peak_rss(worker) - before)


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024
