"""Celery tasks: thin edges that take ids and call the services."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from celery import Celery

from email_service.services import Services, dispatch, events

log = logging.getLogger(__name__)

WAKE = "email_service.wake"
DELIVER_EVENTS = "email_service.deliver_events"
# Tasks of the versions that queued every batch of a job: a worker still takes those left in the broker
# at the upgrade, as wake-ups (what they pointed at is due in the database).
FORMER_WAKE_UPS = ("email_service.start_job", "email_service.send_batch")


def register_tasks(celery: Celery, services: Services) -> None:
    """Bind the service's tasks to ``celery``, each closing over the process's services."""

    @celery.task(name=WAKE, ignore_result=True)
    def wake() -> None:
        dispatch.serve(services)

    for name in FORMER_WAKE_UPS:

        @celery.task(name=name, ignore_result=True)
        def former_wake_up(*_: Any) -> None:
            dispatch.serve(services)

    @celery.task(name=DELIVER_EVENTS, ignore_result=True)
    def deliver_events(job_id: str) -> None:
        events.deliver_events(services, job_id)


# How long a process goes on counting from the broker's last answer to "how many wait" (plus what it published).
WAITING_MAX_AGE = 0.2
# How long a process asks the broker nothing after it failed to answer (CeleryTaskQueue._paused).
BROKER_PAUSE = 2.0


class CeleryTaskQueue:
    """The services' TaskQueue, published through Celery by task name."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery
        self._lock = threading.Lock()
        self._waiting, self._read_at = 0, float("-inf")
        self._failed_at = float("-inf")  # when the broker last failed to answer
        self._to_publish = 0
        self._publishing = threading.Event()
        self._publisher: threading.Thread | None = None

    def wake(self) -> None:
        """Have a wake-up published by the queue's own thread: a sending thread never waits for the broker
        (one that is down takes seconds to refuse a connection) before it sends what it claimed."""
        with self._lock:
            self._waiting += 1
            self._to_publish += 1
            # Started here, not in __init__, and again if it is gone: a forked process (the API's workers)
            # inherits the object but not the thread.
            if self._publisher is None or not self._publisher.is_alive():
                self._publisher = threading.Thread(target=self._publish, name="wake-up publisher", daemon=True)
                self._publisher.start()
        self._publishing.set()

    def _publish(self) -> None:
        while True:
            self._publishing.wait()
            self._publishing.clear()
            with self._lock:
                count, self._to_publish = self._to_publish, 0
            for _ in range(count):
                # Nothing is lost when one is not published: the work is in the database, and the sweep
                # wakes workers once the broker is back.
                if self._paused():
                    break
                try:
                    with self._answering():
                        self._celery.send_task(WAKE)
                except Exception:
                    log.warning("no wake-up published (broker unreachable): the next sweep wakes the workers")
                    break

    def waiting(self) -> int:
        """The broker's count, asked at most every WAITING_MAX_AGE by a process's threads together; while the
        broker is paused after a failure, the last count."""
        with self._lock:
            if time.monotonic() - self._read_at < WAITING_MAX_AGE or self._paused():
                return self._waiting
        # Declared as the workers declare it (a passive declare misses a Redis queue under a key prefix), on a
        # connection of its own: a pooled one that failed once (broker restarted) is handed out broken again.
        queue = self._celery.amqp.queues[self._celery.conf.task_default_queue]
        with self._answering(), self._celery.connection_for_read() as connection:
            connection.ensure_connection(max_retries=0)  # one attempt: kombu's default waits seconds to retry
            with connection.channel() as channel:
                count = int(queue.bind(channel).queue_declare()[1])
        with self._lock:
            self._waiting, self._read_at = count, time.monotonic()
        return count

    def _paused(self) -> bool:
        """Whether the broker failed less than BROKER_PAUSE ago: connecting to a broker that is down takes
        seconds, so until then nobody asks it, and no thread logs its failure again."""
        return time.monotonic() - self._failed_at < BROKER_PAUSE

    @contextlib.contextmanager
    def _answering(self) -> Iterator[None]:
        """Run the block that asks the broker; if it fails, the broker is paused (_paused)."""
        try:
            yield
        except Exception:
            self._failed_at = time.monotonic()
            raise

    def deliver_events(self, job_id: str) -> None:
        self._celery.send_task(DELIVER_EVENTS, args=(job_id,))
