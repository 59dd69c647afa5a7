"""Checks every request passes before a view reads it: no NUL character anywhere, and a body that is
strict JSON of a bounded depth."""

from __future__ import annotations

from typing import Any

from flask import Flask, request
from werkzeug.exceptions import BadRequest

from email_service.errors import MalformedJSON, ValidationFailed

# Containers in a request body: recipients' variables need a few; a thousand are an attack on the parser.
MAX_JSON_DEPTH = 32


def install_request_guards(app: Flask) -> None:
    """Refuse, before any view runs, what no endpoint may receive."""

    @app.before_request
    def _refuse_nul_in_path_and_query() -> None:
        # No database stores U+0000 in text (PostgreSQL refuses it): refused here, everywhere at once.
        if "\x00" in request.path or any("\x00" in f"{k}{v}" for k, v in request.args.items(multi=True)):
            raise ValidationFailed("NUL characters are not accepted", [{"field": "path", "reason": "contains U+0000"}])

    @app.before_request
    def _parse_json_strictly() -> None:
        # flask-openapi3 parses bodies leniently (malformed JSON becomes null and a 422);
        # parsing here first makes malformed JSON a 400 and a non-JSON body a 415.
        # Mail clients post a form to the unsubscribe links, browsers the dashboard's forms.
        form_posts = request.blueprint in ("unsubscribe", "dashboard")
        if (
            request.method in ("POST", "PUT", "PATCH")
            and (request.is_json or request.content_length)
            and not form_posts
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
