"""Who may use the dashboard: a login form that takes an API key, a signed session cookie that carries
the random id of a session kept on the server (never the key; logging out or revoking the key ends it),
a CSRF token in every form, and security headers on every page."""

from __future__ import annotations

import hmac
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, flash, g, redirect, request, session, url_for
from werkzeug.wrappers import Response

from email_service.api.dashboard.blueprint import Viewer, blueprint, render, services
from email_service.errors import FormRefused, NotFound, ValidationFailed
from email_service.services import Services, auth

SESSION_COOKIE = "email_service_dashboard"
# Scripts and styles from the dashboard's own static files only; previews' HTML is framed with no script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
_OPEN_ENDPOINTS = frozenset({"dashboard.login", "dashboard.static"})


def configure_sessions(app: Flask, services: Services) -> None:
    """Flask's signed session cookie, kept to the dashboard's path; the API never reads it."""
    settings = services.settings
    app.secret_key = settings.dashboard_secret.get_secret_value() or None
    app.config.update(
        SESSION_COOKIE_NAME=SESSION_COOKIE,
        SESSION_COOKIE_PATH=blueprint.url_prefix,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.dashboard_cookie_secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.dashboard_session_hours),
    )


@blueprint.before_request
def _admit() -> Response | None:
    if not services().settings.dashboard_secret.get_secret_value():
        raise NotFound("the dashboard is off: set DASHBOARD_SECRET (32 characters or more) to turn it on")
    if request.method == "POST":
        _check_form()
    g.viewer = _signed_in()
    if g.viewer is None and request.endpoint not in _OPEN_ENDPOINTS:
        return redirect(url_for("dashboard.login", next=request.full_path.rstrip("?")))
    return None


@blueprint.after_request
def _secure_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "dashboard.static":
        response.headers["Cache-Control"] = "no-store"  # pages show one key's jobs: never kept in a cache
    return response


@blueprint.app_template_global()
def csrf_token() -> str:
    """The token every form of this session carries; made on the session's first form."""
    token: str | None = session.get("csrf")
    if token is None:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _check_form() -> None:
    expected, given = session.get("csrf", ""), request.form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise FormRefused("this form is not from this session (or the session ended): reload the page and try again")
    if any("\x00" in value for value in request.form.values()):
        raise ValidationFailed("NUL characters are not accepted", [{"field": "form", "reason": "contains U+0000"}])


def _signed_in() -> Viewer | None:
    if services().settings.auth_disabled:
        return Viewer(auth.OPEN_CALLER)
    session_id = session.get("sid")
    key = auth.dashboard_session_key(services(), session_id) if isinstance(session_id, str) else None
    if key is None:
        session.pop("sid", None)  # logged out, expired or revoked since, or never signed in
        return None
    return Viewer(key.caller())


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> Any:
    target = _local_target(request.values.get("next"))
    if g.viewer is not None:
        return redirect(target)
    plain_http = services().settings.dashboard_cookie_secure and not request.is_secure
    if request.method == "GET":
        return render("login.html", target=target, plain_http=plain_http)
    key = auth.active_key(services(), auth.hash_key(request.form.get("api_key", "").strip()))
    if key is None:
        error = "This API key is unknown or revoked, or its account is disabled."
        return render("login.html", 401, target=target, plain_http=plain_http, error=error)
    session.clear()  # a new session for the new identity: nothing of the anonymous one is kept
    session.permanent = True
    session["sid"] = auth.start_dashboard_session(services(), key.id)
    return redirect(target, code=303)


@blueprint.post("/logout")
def logout() -> Any:
    if isinstance(session_id := session.get("sid"), str):
        auth.end_dashboard_session(services(), session_id)
    session.clear()
    flash("Signed out.")
    return redirect(url_for("dashboard.login"), code=303)


def _local_target(target: str | None) -> str:
    """Where to go after signing in: a dashboard page of this host, never another site."""
    fallback = url_for("dashboard.jobs")
    if not target:
        return fallback
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(f"{blueprint.url_prefix}/") or "\\" in target:
        return fallback
    return target
