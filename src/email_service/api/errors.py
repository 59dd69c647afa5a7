"""Every error the API answers is the same JSON envelope: {"error", "message", "details"}."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from email_service.api.readiness import describe_failure
from email_service.api.schemas import RECIPIENT_FORMS, ErrorBody
from email_service.errors import RequestError, TooManyRequests
from email_service.message.addresses import quoted

log = logging.getLogger(__name__)

# Every operation of the API but the documentation and the health checks takes one of these.
API_KEY: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
# What any operation may answer: no key (401), a bad path or query (422), over a quota (429), the database
# out of reach (503)...
COMMON_ERRORS: dict[int | str, Any] = {401: ErrorBody, 422: ErrorBody, 429: ErrorBody, 503: ErrorBody}
# ... and one taking a JSON body: not JSON (400), too large (413), not declared JSON (415).
BODY_ERRORS: dict[int | str, Any] = {**COMMON_ERRORS, 400: ErrorBody, 413: ErrorBody, 415: ErrorBody}
# The fields that hold an address (`address` is a recipient given as a string): a value refused there is
# quoted in its detail, as intake quotes the addresses it refuses.
_ADDRESS_FIELDS = frozenset({"address", "email", "reply_to", "sender"})


def error_response(status: int, code: str, message: str, details: list[dict[str, Any]] | None = None) -> Response:
    response = jsonify({"error": code, "message": message, "details": details or []})
    response.status_code = status
    return response


def validation_error_response(exc: ValidationError) -> Response:
    """flask-openapi3's callback for a request that does not fit its model."""
    details = []
    for error in exc.errors(include_url=False):
        field, index = _field_name(error["loc"])
        detail: dict[str, Any] = {"field": field, "reason": error["msg"]}
        if index is not None:
            detail["index"] = index
        if error["loc"] and error["loc"][-1] in _ADDRESS_FIELDS and isinstance(error["input"], str):
            detail["address"] = quoted(error["input"])
        details.append(detail)
    return error_response(422, "validation_error", f"{len(details)} problem(s) in the request", details)


def _field_name(loc: tuple[Any, ...]) -> tuple[str, int | None]:
    name = ""
    index = None
    for part in loc:
        if isinstance(part, int):
            name += f"[{part}]"
            if index is None and name.startswith("recipients["):
                index = part
        elif part not in RECIPIENT_FORMS:  # the union's tag says nothing to the caller
            name += f".{part}" if name else str(part)
    return name or "body", index


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(RequestError)
    def _request_error(exc: RequestError) -> Response:
        response = error_response(exc.status, exc.code, exc.message, exc.details)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="email_service"'
        if isinstance(exc, TooManyRequests):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = error_response(exc.code or 500, code, exc.description or exc.name)
        for name, value in exc.get_headers():  # e.g. Allow on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(OperationalError)
    def _database_unavailable(exc: OperationalError) -> Response:
        # Down, restarting, or refusing connections: the caller may try again (POST /api/email/ with the same
        # Idempotency-Key).
        cause = describe_failure(current_app.extensions["email_service"], exc)
        log.warning("database unavailable on %s %s: %s", request.method, request.path, cause)
        response = error_response(503, "database_unavailable", "the database is unavailable; try again shortly")
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "the service failed to handle this request")
