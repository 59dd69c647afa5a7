"""While a worker process queues a job's batches, the batches starting in that process wait for it.

Publishing a task costs CPU and a round trip to the broker, and every round trip hands the
interpreter lock to the process's sending threads: with many of them busy, the publisher waits its
turn at each task, and a job's last batches start long after its first (figures in
docs/benchmarks.md, delivery engine). A batch that starts while its process publishes waits (at most
MAX_WAIT_SECONDS, for a job of many thousands of batches) so the publisher runs alone; batches in
the other processes start at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

MAX_WAIT_SECONDS = 2.0


class DispatchGate:
    def __init__(self) -> None:
        self._publishers = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def publishing(self) -> Iterator[None]:
        """Hold the process's new batches back while the block publishes."""
        with self._changed:
            self._publishers += 1
        try:
            yield
        finally:
            with self._changed:
                self._publishers -= 1
                self._changed.notify_all()

    def wait(self, timeout: float = MAX_WAIT_SECONDS) -> None:
        """Return once no thread of the process publishes, or after ``timeout`` seconds."""
        with self._changed:
            self._changed.wait_for(lambda: self._publishers == 0, timeout)
