"""The Flask application factory: the HTTP API over services that ``bootstrap`` builds."""

from __future__ import annotations

from flask import redirect
from flask_openapi3.models.info import Info
from flask_openapi3.openapi import OpenAPI
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from email_service import __version__
from email_service.api import account, bounces, jobs, suppressions, templates
from email_service.api.auth import install_authentication
from email_service.api.dashboard import install_dashboard
from email_service.api.errors import register_error_handlers, validation_error_response
from email_service.api.guards import install_request_guards
from email_service.api.health import install_health
from email_service.api.hosts import install_host_check
from email_service.api.json_body import StrictJSONProvider
from email_service.api.quotas import make_key_quotas
from email_service.api.schemas import ErrorBody
from email_service.bootstrap import build_process
from email_service.bounces.providers import fetch_sns_certificate
from email_service.config import Settings
from email_service.delivery.transport import Transport
from email_service.logs import configure_logging
from email_service.services import Services

API_DESCRIPTION = (
    "Post a list of recipients, a subject, content and a template: the service answers at once with a "
    "job id, then its workers send one message per recipient and record each outcome."
)


def create_app(settings: Settings | None = None, transport: Transport | None = None) -> OpenAPI:
    """Build the WSGI application (gunicorn calls it as ``email_service.app:create_app()``)."""
    settings = settings or Settings()
    configure_logging(settings)
    return create_api(build_process(settings, transport).services)


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
    app.json = StrictJSONProvider(app)  # every JSON body is parsed by it: non-finite numbers are refused (400)
    app.config["MAX_CONTENT_LENGTH"] = services.settings.max_request_bytes
    if hops := services.settings.proxy_hops:
        # The values the last ``hops`` proxies wrote, never what the client sent before them. X-Forwarded-Port
        # and -Prefix stay untrusted: the nginx file does not set them, so they would be the client's.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.extensions["email_service"] = services
    app.extensions["key_quotas"] = make_key_quotas(services.settings)
    install_host_check(app, services.settings.allowed_hosts)  # first: another site's name is never served
    install_authentication(app, services)  # then: nothing reads a request its caller may not make
    app.register_api(account.blueprint)
    app.register_api(jobs.blueprint)
    app.url_map.converters["template_name"] = templates.TemplateNameConverter
    app.register_api(templates.blueprint)
    app.register_api(suppressions.blueprint)
    app.register_blueprint(suppressions.unsubscribe)
    app.register_api(bounces.blueprint)
    install_dashboard(app, services)
    app.extensions["sns_certificate"] = fetch_sns_certificate  # the network seams of /bounces/ses
    app.extensions["sns_confirm"] = bounces.confirm_sns_subscription
    register_error_handlers(app)
    # The tutorial served its Swagger UI at /api/; keep that address.
    app.view_functions["openapi.openapi"] = lambda: redirect("/api/swagger", code=302)

    install_request_guards(app)

    @app.get("/healthz", doc_ui=False)
    def _healthz() -> Response:
        return Response('{"status": "ok"}', mimetype="application/json")

    install_health(app, services)  # /readyz and /metrics

    return app
