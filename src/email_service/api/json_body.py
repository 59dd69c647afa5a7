"""Request bodies' JSON: NaN, Infinity and numbers too large for a float are not JSON numbers (RFC 8259
section 6), so they are refused where the body is parsed, naming where they stand."""

from __future__ import annotations

import json
import math
from typing import Any

from flask.json.provider import DefaultJSONProvider

from email_service.errors import MalformedJSON


class _NonFinite:
    """Stands in the parsed value where a non-finite number was, until its path is known."""


_NON_FINITE = _NonFinite()


def loads(text: str | bytes) -> Any:
    """``text`` parsed as strict JSON; MalformedJSON naming the field of its first non-finite number."""
    found: list[str] = []

    def non_finite(literal: str) -> _NonFinite:
        found.append(literal)
        return _NON_FINITE

    def finite_float(literal: str) -> float | _NonFinite:
        number = float(literal)
        return number if math.isfinite(number) else non_finite(literal)

    value = json.loads(text, parse_constant=non_finite, parse_float=finite_float)
    if found:
        literal = found[0] if len(found[0]) <= 40 else f"{found[0][:40]}…"
        raise MalformedJSON(
            "the JSON holds a number that is not finite",
            [{"field": _path_to_marker(value), "reason": f"{literal} is not a JSON number (only finite numbers are)"}],
        )
    return value


def _path_to_marker(value: Any) -> str:
    """Where the first stand-in of a non-finite number is in ``value``, written as the API names fields
    (``recipients[0].variables.n``); ``body`` for the whole body (without recursion: the value is the caller's)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if item is _NON_FINITE:
            return path or "body"
        if isinstance(item, dict):
            stack.extend((child, f"{path}.{key}" if path else str(key)) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{index}]") for index, child in reversed(list(enumerate(item))))
    return "body"


class StrictJSONProvider(DefaultJSONProvider):
    """Flask's JSON, parsing request bodies with ``loads`` above (answers are written as before)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads(s)
