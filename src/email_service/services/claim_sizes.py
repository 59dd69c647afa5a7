"""How many recipients a worker's claim takes: few enough that a thread of the process frees up about
every CLAIM_TURN seconds, whatever the relay's pace, for transactional work not to wait behind bulk.

A claim's length is its size over the pace of the thread sending it, and with n threads busy one frees
up every (claim length / n): claims of CLAIM_TURN * n seconds keep that at CLAIM_TURN. The pace is read
off the last claims, so a fast relay gets claims of BATCH_SIZE (a claim costs a transaction) and a relay
limited to 14 messages a second claims of one or two.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

# Seconds between two threads of a process freeing up, in the steady state (see the module's docstring).
CLAIM_TURN = 0.1
# A claim's size when the process has no measure yet: small, so a slow relay ties up little at first.
FIRST_CLAIM = 10


class ClaimSizer:
    """How many recipients a claim takes: the size that makes a claim last CLAIM_TURN seconds per busy
    thread, from the last claims' pace; at least 1, at most BATCH_SIZE, doubling at most per claim."""

    def __init__(self, most: int) -> None:
        self._most = most
        self._size = min(most, FIRST_CLAIM)
        self._busy = 0  # threads serving work now
        self._lock = threading.Lock()

    def size(self) -> int:
        """The next claim's size; claims of one size make taking turns share the rate equally."""
        return self._size

    @contextlib.contextmanager
    def serving(self) -> Iterator[None]:
        """Count the calling thread as busy for the block."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1

    def sent(self, size: int, seconds: float) -> None:
        """A claim of ``size`` recipients took ``seconds``: size the next ones."""
        if size <= 0:
            return
        with self._lock:
            wanted = CLAIM_TURN * max(1, self._busy)
            ideal = size * wanted / max(seconds, 1e-3)
            self._size = max(1, min(self._most, 2 * self._size, round(ideal)))
