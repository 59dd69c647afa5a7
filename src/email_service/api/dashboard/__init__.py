"""/dashboard/: server-rendered pages for operators over the services the API uses (docs/dashboard.md)."""

from __future__ import annotations

import math
from datetime import datetime

from flask import Flask
from werkzeug.exceptions import HTTPException

from email_service.api.dashboard import (  # noqa: F401 (routes)
    job_pages,
    queue_page,
    statuses,
    suppression_pages,
    template_pages,
)
from email_service.api.dashboard.access import configure_sessions
from email_service.api.dashboard.blueprint import blueprint, render
from email_service.errors import RequestError
from email_service.services import Services


def install_dashboard(app: Flask, services: Services) -> None:
    configure_sessions(app, services)
    app.register_blueprint(blueprint)


blueprint.add_app_template_global(statuses.tone, "tone")


@blueprint.app_template_filter("when")
def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC" if moment is not None else "—"


@blueprint.app_template_filter("percent")
def _percent(fraction: float) -> str:
    return f"{math.floor(fraction * 100 + 1e-9)} %"  # rounded down: 100 % only when every outcome is in


@blueprint.app_template_filter("duration")
def _duration(seconds: float) -> str:
    """About how long, rounded up: "40 s", "12 min", "3 h 5 min"."""
    if seconds < 60:
        return f"{math.ceil(seconds)} s"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


@blueprint.errorhandler(RequestError)
def _refused(exc: RequestError) -> tuple[str, int]:
    return render("error.html", exc.status, title=exc.message, details=exc.details)


@blueprint.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    return render("error.html", exc.code or 500, title=exc.description or exc.name, details=[])
