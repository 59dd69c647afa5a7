"""/readyz (can the service reach its database, broker and relay?) and /metrics (Prometheus text).

Both are public, like /healthz: they carry counts and timings, no address, id or secret. Keep them
for the inside: the proxy in front of the API should not route them (see README).
"""

from __future__ import annotations

import json

from flask import request
from flask_openapi3.openapi import OpenAPI
from prometheus_client.exposition import choose_encoder
from werkzeug.wrappers import Response

from email_service.api import readiness
from email_service.runtime import metrics_export
from email_service.services import Services, reports


def install_health(app: OpenAPI, services: Services) -> None:
    """Add /readyz and /metrics to ``app`` (left out of the OpenAPI document, like /healthz)."""
    # The queue figures are read from the database at each scrape: every API process answers the
    # same, and the worker hosts do not need to.
    registry = metrics_export.registry(metrics_export.QueueFigures(lambda: reports.waiting_work(services)))

    @app.get("/readyz", doc_ui=False)
    def _readyz() -> Response:
        checks = readiness.check(services)
        ready = all(check.ok for check in checks.values())
        body = {"status": "ready" if ready else "unready", "checks": {n: c.as_json() for n, c in checks.items()}}
        return Response(json.dumps(body), status=200 if ready else 503, mimetype="application/json")

    @app.get("/metrics", doc_ui=False)
    def _metrics() -> Response:
        encode, content_type = choose_encoder(request.headers.get("Accept", ""))  # text, or OpenMetrics
        return Response(encode(registry), content_type=content_type)
