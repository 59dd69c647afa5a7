"""How to reach the Celery broker: the transport options the workers and the readiness check share."""

from __future__ import annotations

from typing import Any

from email_service.config import Settings, is_redis_url


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
