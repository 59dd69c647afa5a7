"""Template bombs sent to `email-service serve` all at once: each is answered 422 soon after the render
deadline, `/healthz` keeps answering within a second meanwhile, and the worker process stays small."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from email_service.message.render_budget import MAX_RENDER_SECONDS
from tests.support.stack import GunicornApi
from tests.unit.message.test_render_bombs import BOMBS, DEADLINE_ONLY

# The two only the deadline stops, and four that make the most before a bound stops them.
HEAVIEST = DEADLINE_ONLY + [
    bomb
    for bomb in BOMBS
    if bomb not in DEADLINE_ONLY
    and ("append('x' * 999999)" in bomb or "map('center'" in bomb or bomb.endswith(("{{ c }}", "{{ f(60) }}")))
]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[GunicornApi]:
    env = {"DATA_DIR": str(tmp_path), "DATABASE_URL": "", "AUTH_DISABLED": "true"}
    server = GunicornApi(env, tmp_path / "serve.log", workers=1).wait_ready()
    yield server
    server.stop()


def _peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) * 1024


def test_bombs_at_once_leave_the_api_answering_and_small(api: GunicornApi):
    assert len(HEAVIEST) == 6  # fewer than serve's threads
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
        with ThreadPoolExecutor(len(HEAVIEST)) as pool:  # fewer than serve's threads: none waits for one
            answers = [pool.submit(preview, html) for html in HEAVIEST]
            while not all(answer.done() for answer in answers):
                started = time.monotonic()
                assert client.get("/healthz", timeout=5).status_code == 200
                health.append(time.monotonic() - started)
                time.sleep(0.1)
        results = [answer.result() for answer in answers]
        grown = _peak_rss(worker) - before
    assert all(status == 422 for status, _ in results), results
    # The deadline is wall-clock time: six renders sharing one process each stop at it; what follows it (the
    # answer) shares the process's one interpreter lock with the five others.
    assert max(seconds for _, seconds in results) < MAX_RENDER_SECONDS + 1.0, results
    assert len(health) >= 3 and max(health) < 1.0, health
    assert grown < 100_000_000, grown
