"""The Celery task queue when the broker is down: a sending thread never waits for it."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from email_service.worker import tasks
from email_service.worker.tasks import BROKER_PAUSE, WAITING_MAX_AGE, CeleryTaskQueue


class DownBroker:
    """A Celery app whose broker refuses every connection, counting the attempts."""

    def __init__(self) -> None:
        self.attempts = 0
        self.conf = SimpleNamespace(task_default_queue="q")
        self.amqp = SimpleNamespace(queues={"q": None})

    def connection_for_read(self) -> None:
        self.attempts += 1
        raise ConnectionRefusedError("broker down")


def test_after_the_broker_failed_it_is_not_asked_again_until_the_pause_is_over(monkeypatch: pytest.MonkeyPatch):
    clock = [1000.0]
    monkeypatch.setattr(tasks.time, "monotonic", lambda: clock[0])
    broker = DownBroker()
    queue = CeleryTaskQueue(broker)  # type: ignore[arg-type]
    with pytest.raises(ConnectionRefusedError):
        queue.waiting()
    for _ in range(5):  # every thread of the process, meanwhile: no attempt, no wait for a connection
        clock[0] += WAITING_MAX_AGE
        assert queue.waiting() == 0, "the last count"
    assert broker.attempts == 1
    clock[0] += BROKER_PAUSE
    with pytest.raises(ConnectionRefusedError):
        queue.waiting()
    assert broker.attempts == 2, "tried again once the pause was over"


def test_a_wake_up_is_published_by_the_queue_s_thread_not_the_caller_s():
    published = []
    celery = SimpleNamespace(send_task=lambda name: published.append(name))
    queue = CeleryTaskQueue(celery)  # type: ignore[arg-type]
    queue.wake()
    queue.wake()
    deadline = time.monotonic() + 5
    while len(published) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert published == [tasks.WAKE, tasks.WAKE]
