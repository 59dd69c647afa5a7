"""The one place that builds a process's objects, in order and each once: the settings, the DKIM signer,
the Celery app, the services with their task queue, and the tasks bound to them."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery

from email_service.config import Settings
from email_service.delivery.transport import Transport
from email_service.message.dkim.signing import DkimSigner
from email_service.services import Services, build_services
from email_service.worker.celery_app import bind_services, make_celery
from email_service.worker.tasks import CeleryTaskQueue


@dataclass(frozen=True)
class Process:
    """What a process of the service runs on: its services and the Celery app they publish through."""

    services: Services
    celery: Celery


def build_process(settings: Settings, transport: Transport | None = None) -> Process:
    """Services that publish their work through Celery, and the Celery app whose tasks run on them.

    Raises ConfigurationError when a setting read from a file (the DKIM key) cannot be used.
    """
    celery = make_celery(settings)
    services = build_services(settings, transport, queue=CeleryTaskQueue(celery), dkim_signer=dkim_signer(settings))
    bind_services(celery, services)
    return Process(services, celery)


def dkim_signer(settings: Settings) -> DkimSigner | None:
    """The signer DKIM_* ask for, its key loaded and checked now; None when signing is off."""
    if settings.dkim_private_key_file is None:
        return None  # Settings made sure the three go together
    second = settings.dkim_second_private_key_file
    return DkimSigner.load(
        settings.dkim_domain,
        settings.dkim_selector,
        settings.dkim_private_key_file,
        (settings.dkim_second_selector, second) if second is not None else None,
    )
