"""How many recipients a worker's claim takes: few enough that a thread of the process frees up about
every CLAIM_TURN seconds, whatever the relay's pace, for transactional work not to wait behind bulk.

A claim's length is its size over the pace of the thread sending it. Transactional work waits only when
every thread of the process is busy, and then, with n threads, one frees up every (claim length / n):
claims of CLAIM_TURN * n seconds keep that at CLAIM_TURN (while threads are idle, a wake-up finds one at
once). The pace is read off the last claims, so a fast relay gets claims of BATCH_SIZE (a claim costs a
transaction) and a relay limited to 14 messages a second claims of one or two per thread.
"""

from __future__ import annotations

import threading

# Seconds between two threads of a process freeing up, in the steady state (see the module's docstring).
CLAIM_TURN = 0.1
# A claim's size when the process has no measure yet: small, so a slow relay ties up little at first.
FIRST_CLAIM = 10


class ClaimSizer:
    """How many recipients a claim takes: the size that makes a claim last CLAIM_TURN seconds per thread of
    the process, from the last claims' pace; at least 1, at most BATCH_SIZE, doubling at most per claim."""

    def __init__(self, most: int, threads: int) -> None:
        self._most = most
        self._length = CLAIM_TURN * threads  # seconds a claim should last
        self._size = min(most, FIRST_CLAIM)
        self._lock = threading.Lock()

    def size(self) -> int:
        """The next claim's size."""
        return self._size

    def sent(self, size: int, seconds: float) -> None:
        """A claim of ``size`` recipients took ``seconds``: size the next ones."""
        if size <= 0:
            return
        with self._lock:
            ideal = size * self._length / max(seconds, 1e-3)
            self._size = max(1, min(self._most, 2 * self._size, round(ideal)))
