"""gunicorn's access log without addresses or unsubscribe signatures in the request lines.

Paths such as ``DELETE /api/suppressions/will%40example.com`` name a person, and an unsubscribe
link's signature lets whoever reads it unsubscribe that recipient: both are masked like the
service's own logs before gunicorn writes the line.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from gunicorn.glogging import Logger

from email_service.logs import mask_addresses

# The request line, the path, the query string and the referer: where a client's URL shows.
_URL_ATOMS = ("r", "U", "q", "f", "{referer}i")
_UNSUBSCRIBE_SIGNATURE = re.compile(r"(/unsubscribe/[0-9a-f-]{36}\.\d{1,9}\.)[A-Za-z0-9_-]+")
# A path segment or a query name or value: an address never spans two of them.
_URL_PIECE = re.compile(r"[^/?&=\s]+")


def mask_url(text: str) -> str:
    """``text`` decoded (so ``%40`` is seen as ``@``) with addresses and unsubscribe signatures masked."""
    masked = _URL_PIECE.sub(lambda piece: mask_addresses(piece.group()), unquote(text))
    return _UNSUBSCRIBE_SIGNATURE.sub(r"\1***", masked)


class MaskingAccessLogger(Logger):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's logger (``--logger-class``) with the URL atoms of each access line masked."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        for key in _URL_ATOMS:
            if isinstance(atoms.get(key), str):
                atoms[key] = mask_url(atoms[key])
        return atoms
