"""The Celery application: broker settings from Settings, then tasks bound to the services."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_shutting_down

from email_service.config import Settings
from email_service.runtime.broker import broker_transport_options
from email_service.services import Services
from email_service.worker.tasks import register_tasks


def make_celery(settings: Settings) -> Celery:
    """A Celery app configured from ``settings``, without tasks yet (they need the services, which
    publish through this app: ``bind_services`` adds them)."""
    celery = Celery("email_service", set_as_current=False)
    celery.conf.update(
        broker_url=settings.celery_broker_url,
        result_backend=settings.celery_result_backend,
        broker_transport_options=broker_transport_options(settings),
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.celery_queue,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # The database, not the broker, says what is left to send; tasks only point at work.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
    )
    return celery


def bind_services(celery: Celery, services: Services) -> None:
    """Register the tasks that run on ``services``, and make a warm shutdown stop their batches."""
    register_tasks(celery, services)

    def _give_back_unsent_work(**_: Any) -> None:
        # Warm shutdown: running batches stop after their current message and release the rest.
        services.stopping.set()

    worker_shutting_down.connect(_give_back_unsent_work, weak=False)
