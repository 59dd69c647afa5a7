"""The Celery application: broker settings from Settings, then tasks bound to the services."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_shutting_down

from email_service.config import Settings, is_redis_url
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


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if settings.celery_broker_url.startswith("filesystem"):
        folder = settings.broker_folder
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
        }
    if is_redis_url(settings.celery_broker_url):
        options: dict[str, Any] = {"visibility_timeout": settings.broker_visibility_timeout}
        if settings.celery_broker_key_prefix:
            options["global_keyprefix"] = settings.celery_broker_key_prefix
        return options
    return {}
