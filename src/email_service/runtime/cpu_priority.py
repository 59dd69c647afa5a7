"""The workers' CPU priority: on a host they share with the API, sending yields the CPU to answering callers.

Sending is batch work with a backlog to absorb a pause; an API request is someone waiting. With the
workers at a higher niceness the API's requests get a core as soon as they need one, and the workers
still take every cycle the API leaves (measured in docs/benchmarks.md, "Load through nginx").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Linux's autogroup shares the CPU between sessions before a process's niceness counts, and only against
# processes of its own session: a worker leading its own session (as service managers and the tests start
# it) must lower its session's niceness too, or it keeps an equal share against the API's session.
AUTOGROUP = Path("/proc/self/autogroup")


def lower(niceness: int) -> None:
    """Run this process, and the children it starts afterwards, at ``niceness`` (never back up)."""
    if niceness <= 0:
        return
    os.setpriority(os.PRIO_PROCESS, 0, max(niceness, os.getpriority(os.PRIO_PROCESS, 0)))
    if os.getsid(0) != os.getpid() or not AUTOGROUP.exists():
        return  # sharing a session (a shell's, say) with other programs: their share is not ours to lower
    try:
        AUTOGROUP.write_text(str(niceness))
    except OSError as exc:  # e.g. a kernel without autogroup scheduling
        log.warning("could not lower this session's CPU share (%s): the process niceness alone applies", exc)
