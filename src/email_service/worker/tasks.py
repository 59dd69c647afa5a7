"""Celery tasks: thin edges that take ids and call the services."""

from __future__ import annotations

from typing import Any

from celery import Celery

from email_service.services import Services, deliver, dispatch, events

START_JOB = "email_service.start_job"
SEND_BATCH = "email_service.send_batch"
DELIVER_EVENTS = "email_service.deliver_events"


def register_tasks(celery: Celery, services: Services) -> None:
    """Bind the service's tasks to ``celery``, each closing over the process's services."""

    @celery.task(name=START_JOB, ignore_result=True)
    def start_job(job_id: str) -> None:
        dispatch.start_job(services, job_id)

    @celery.task(name=SEND_BATCH, ignore_result=True)
    def send_batch(job_id: str, first: int, last: int) -> None:
        deliver.send_batch(services, job_id, first, last)

    @celery.task(name=DELIVER_EVENTS, ignore_result=True)
    def deliver_events(job_id: str) -> None:
        events.deliver_events(services, job_id)


class CeleryTaskQueue:
    """The services' TaskQueue, published through Celery by task name."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def start_job(self, job_id: str) -> None:
        self._publish(START_JOB, job_id)

    def send_batch(self, job_id: str, first: int, last: int) -> None:
        self._publish(SEND_BATCH, job_id, first, last)

    def deliver_events(self, job_id: str) -> None:
        self._publish(DELIVER_EVENTS, job_id)

    def _publish(self, name: str, *args: Any) -> None:
        self._celery.send_task(name, args=args)
