"""Celery tasks: thin edges that take ids and call the services."""

from __future__ import annotations

import logging
import threading
import time
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


class CeleryTaskQueue:
    """The services' TaskQueue, published through Celery by task name."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery
        self._lock = threading.Lock()
        self._waiting, self._read_at = 0, float("-inf")

    def wake(self) -> None:
        self._celery.send_task(WAKE)
        with self._lock:
            self._waiting += 1

    def waiting(self) -> int:
        """The broker's count, asked at most every WAITING_MAX_AGE by a process's threads together."""
        with self._lock:
            if time.monotonic() - self._read_at < WAITING_MAX_AGE:
                return self._waiting
        # Declared as the workers declare it (a passive declare misses a Redis queue under a key prefix), on a
        # connection of its own: a pooled one that failed once (broker restarted) is handed out broken again.
        queue = self._celery.amqp.queues[self._celery.conf.task_default_queue]
        with self._celery.connection_for_read() as connection, connection.channel() as channel:
            count = int(queue.bind(channel).queue_declare()[1])
        with self._lock:
            self._waiting, self._read_at = count, time.monotonic()
        return count

    def deliver_events(self, job_id: str) -> None:
        self._celery.send_task(DELIVER_EVENTS, args=(job_id,))
