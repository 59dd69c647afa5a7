"""Running a set of child processes as one service: start them, restart one that dies, stop all."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

STOP_GRACE_SECONDS = 30
RESTART_PAUSE_SECONDS = 1.0


@dataclass
class Child:
    name: str
    args: list[str]  # arguments of `python -m email_service`
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0

    def start(self, own_session: bool) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "email_service", *self.args], env=self.env, start_new_session=own_session
        )
        self.started_at = time.monotonic()


def supervise(
    children: list[Child], *, own_sessions: bool = False, on_exit: Callable[[int], None] | None = None
) -> int:
    """Run ``children`` until SIGINT or SIGTERM; restart any that exits. Returns the exit code.

    With ``own_sessions`` each child has its own session, so a Ctrl-C reaches only this process,
    which then stops the children one by one in reverse order of start. ``on_exit`` is told the pid
    of each child that ended before it is restarted.
    """
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    for child in children:
        child.start(own_sessions)
    while not stopping:
        for child in children:
            assert child.process is not None
            if child.process.poll() is not None and not stopping:
                log.warning("%s exited with status %s; restarting it", child.name, child.process.returncode)
                if on_exit is not None:
                    on_exit(child.process.pid)
                time.sleep(max(0.0, child.started_at + RESTART_PAUSE_SECONDS - time.monotonic()))
                child.start(own_sessions)
        time.sleep(0.2)
    _stop(children)
    return 0


def _stop(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process is not None and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in reversed(children):
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %ds; killing it", child.name, STOP_GRACE_SECONDS)
            child.process.kill()
            child.process.wait()
