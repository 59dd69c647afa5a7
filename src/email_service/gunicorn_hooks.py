"""gunicorn's configuration for `email-service serve` (``--config python:email_service.gunicorn_hooks``)."""

from __future__ import annotations

from typing import Any

from .metrics_export import process_ended


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended (gunicorn starts another): its share of the live gauges goes with it."""
    process_ended(worker.pid)
