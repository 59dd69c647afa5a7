"""Template bombs sent to `email-service serve` all at once: each is answered 422 soon after the render
deadline, `/healthz` keeps answering within a second meanwhile, and the worker process stays small."""

from __future__ import annotations

from pathlib import Path

from email_service.message.render_budget import MAX_RENDER_SECONDS
from tests.support.bombs_at_once import HEAVIEST, bombs_at_once, one_worker_serve


def test_bombs_at_once_leave_the_api_answering_and_small(tmp_path: Path):
    assert len(HEAVIEST) == 6  # fewer than serve's threads
    with one_worker_serve(tmp_path) as api:
        measured = bombs_at_once(api)
    assert all(status == 422 for status, _ in measured.answers), measured.answers
    # The deadline is wall-clock time: six renders sharing one process each stop at it; what follows it (the
    # answer) shares the process's one interpreter lock with the five others.
    assert max(seconds for _, seconds in measured.answers) < MAX_RENDER_SECONDS + 1.0, measured.answers
    assert len(measured.health) >= 3 and max(measured.health) < 1.0, measured.health
    assert measured.grown < 100_000_000, measured.grown
