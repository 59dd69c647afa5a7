"""Who is calling (a key of an account): every request but the health checks, the metrics, the API documentation, the
unsubscribe links, the providers' bounce webhooks (which check their own signatures) and the dashboard (which
signs its users in with the same keys, api/dashboard/access.py) needs an API key."""

from __future__ import annotations

from flask import Flask, g, request

from email_service.api import quotas
from email_service.errors import Forbidden, Unauthenticated
from email_service.services import Services, auth

# Endpoints anyone may call: the health checks and metrics, the API documentation, the unsubscribe links,
# the bounce webhooks, which providers authenticate their own way, and the dashboard, which checks its session.
_PUBLIC_ENDPOINTS = frozenset({"_healthz", "_readyz", "_metrics", "static"})
_PUBLIC_BLUEPRINTS = frozenset({"openapi", "swagger", "unsubscribe", "bounces", "dashboard"})


def install_authentication(app: Flask, services: Services) -> None:
    """Check the API key of each request before anything else reads it (its body included)."""

    @app.before_request
    def _authenticate() -> None:
        g.caller = auth.OPEN_CALLER
        if services.settings.auth_disabled or _is_public(request.endpoint):
            return
        key = _presented_key()
        if key is None:
            raise Unauthenticated("an API key is required: `Authorization: Bearer <key>` or `X-API-Key: <key>`")
        caller = auth.authenticate(services, key)
        if caller is None:
            raise Unauthenticated("this API key is unknown or revoked, or its account is disabled")
        g.caller = caller
        quotas.take(caller.account, "requests", 1)


def current_caller() -> auth.Caller:
    """Who calls: the key's account and role (everyone, as the operator, when authentication is off)."""
    caller: auth.Caller = g.get("caller", auth.OPEN_CALLER)
    return caller


def current_account() -> str | None:
    """The id of the account of this request's key (None when authentication is off)."""
    return current_caller().account


def require_admin(what: str) -> None:
    """Forbidden unless the caller is an operator: a key with the admin role, or anyone with authentication off."""
    if not current_caller().admin:
        raise Forbidden(f"{what} needs a key with the admin role")


def _is_public(endpoint: str | None) -> bool:
    if endpoint is None:  # no route: the 404 tells nothing
        return True
    return endpoint in _PUBLIC_ENDPOINTS or endpoint.partition(".")[0] in _PUBLIC_BLUEPRINTS


def _presented_key() -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.headers.get("X-API-Key") or None
