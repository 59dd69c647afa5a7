"""The application factory: settings, services, Celery and the HTTP API, built once per process."""

from __future__ import annotations

from typing import Any

from flask import redirect, request
from flask_openapi3.models.info import Info
from flask_openapi3.openapi import OpenAPI
from werkzeug.exceptions import BadRequest
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from email_service import __version__
from email_service.api import jobs, suppressions, templates
from email_service.api.auth import install_authentication
from email_service.api.errors import register_error_handlers, validation_error_response
from email_service.api.health import install_health
from email_service.api.quotas import make_key_quotas
from email_service.api.schemas import ErrorBody
from email_service.config import Settings
from email_service.delivery.transport import Transport
from email_service.errors import MalformedJSON, ValidationFailed
from email_service.logs import configure_logging
from email_service.services import Services, build_services
from email_service.worker.celery_app import make_celery

# Containers in a request body: recipients' variables need a few; a thousand are an attack on the parser.
MAX_JSON_DEPTH = 32

API_DESCRIPTION = (
    "Post a list of recipients, a subject, content and a template: the service answers at once with a "
    "job id, then its workers send one message per recipient and record each outcome."
)


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> OpenAPI:
    """Build the WSGI application (gunicorn calls it as ``email_service.app:create_app()``)."""
    settings = settings or Settings()
    configure_logging(settings)
    services = build_services(settings, transport)
    make_celery(services)  # installs the task queue the API publishes to
    return create_api(services)


def create_api(services: Services) -> OpenAPI:
    """The HTTP API over ``services`` (tests give them a queue of their own)."""
    app = OpenAPI(
        __name__,
        info=Info(title="email_service", version=__version__, description=API_DESCRIPTION),
        doc_prefix="/api",
        doc_url="/openapi.json",
        validation_error_status=422,
        validation_error_model=ErrorBody,
        validation_error_callback=validation_error_response,
        security_schemes={
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API key: `Authorization: Bearer <key>`."},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "The same key."},
        },
    )
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_request_bytes
    if hops := services.settings.proxy_hops:
        # The values the last ``hops`` proxies wrote, never what the client sent before them. X-Forwarded-Port
        # and -Prefix stay untrusted: the nginx file does not set them, so they would be the client's.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.extensions["email_service"] = services
    app.extensions["key_quotas"] = make_key_quotas(services.settings)
    install_authentication(app, services)  # first: nothing reads a request its caller may not make
    app.register_api(jobs.blueprint)
    app.url_map.converters["template_name"] = templates.TemplateNameConverter
    app.register_api(templates.blueprint)
    app.register_api(suppressions.blueprint)
    app.register_blueprint(suppressions.unsubscribe)
    register_error_handlers(app)
    # The tutorial served its Swagger UI at /api/; keep that address.
    app.view_functions["openapi.openapi"] = lambda: redirect("/api/swagger", code=302)

    @app.before_request
    def _refuse_nul_in_path_and_query() -> None:
        # No database stores U+0000 in text (PostgreSQL refuses it): refused here, everywhere at once.
        if "\x00" in request.path or any("\x00" in f"{k}{v}" for k, v in request.args.items(multi=True)):
            raise ValidationFailed("NUL characters are not accepted", [{"field": "path", "reason": "contains U+0000"}])

    @app.before_request
    def _parse_json_strictly() -> None:
        # flask-openapi3 parses bodies leniently (malformed JSON becomes null and a 422);
        # parsing here first makes malformed JSON a 400 and a non-JSON body a 415.
        unsubscribing = request.blueprint == "unsubscribe"  # mail clients post a form there
        if (
            request.method in ("POST", "PUT", "PATCH")
            and (request.is_json or request.content_length)
            and not unsubscribing
        ):
            try:
                body = request.get_json()
            except BadRequest:
                raise MalformedJSON("the request body is not valid JSON") from None
            except RecursionError:
                raise MalformedJSON(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep") from None
            depth, has_nul = _shape(body)
            if depth > MAX_JSON_DEPTH:
                raise MalformedJSON(f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep")
            if has_nul:
                raise ValidationFailed(
                    "NUL characters are not accepted", [{"field": "body", "reason": "contains U+0000"}]
                )

    @app.get("/healthz", doc_ui=False)
    def _healthz() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    install_health(app, services)  # /readyz and /metrics

    return app


def _shape(value: Any) -> tuple[int, bool]:
    """How deeply JSON containers nest in ``value``, and whether a key or string holds U+0000
    (without recursion: the value is the caller's)."""
    deepest, has_nul, stack = 0, False, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            has_nul = has_nul or "\x00" in item
        elif isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_JSON_DEPTH:
                children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
                stack.extend((child, depth + 1) for child in children)
    return deepest, has_nul
