"""gunicorn's logs with no credential, token or address: the access log's atoms and the error log's lines
are masked by the service's own ``mask_secrets`` before gunicorn writes them.

Paths such as ``DELETE /api/suppressions/will%40example.com`` name a person, and an unsubscribe
link's signature lets whoever reads it unsubscribe that recipient; an API key may come as a Basic
user (``curl -u KEY:``), in a header or in a query string.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from gunicorn.glogging import Logger

from email_service.logs import MASK, mask_secrets, mask_url

# The request line, the path, the query string and the referer: where a client's URL shows.
_URL_ATOMS = ("r", "U", "q", "f", "{referer}i", "{raw_uri}e", "{path_info}e", "{query_string}e", "{request_uri}e")
# Headers that are credentials whole, as request-header (``{name}i``) and environ (``{http_name}e``) atoms.
_CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "cookie")
_CREDENTIAL_ATOMS = frozenset(
    [f"{{{name}}}i" for name in _CREDENTIAL_HEADERS]
    + [f"{{http_{name.replace('-', '_')}}}e" for name in _CREDENTIAL_HEADERS]
)


class _MaskRecords(logging.Filter):
    """Writes a record's message masked, so that gunicorn's own formatter prints no secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_url(record.getMessage()), None
        return True


class MaskingAccessLogger(Logger):  # type: ignore[misc]  # gunicorn has no type hints
    """gunicorn's logger (``--logger-class``) with every atom of each access line, and the error log, masked."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.error_log.addFilter(_MaskRecords())
        # Only the atoms the format prints are masked (gunicorn looks ``{…}`` atoms up in lower case).
        names = re.findall(r"%\(([^)]*)\)", cfg.access_log_format)
        self._printed = frozenset(name.lower() if name.startswith("{") else name for name in names)

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        if atoms["u"] != "-":
            atoms["u"] = MASK  # the Basic user: `curl -u KEY:` sends the key there
        for key, value in atoms.items():
            if key not in self._printed or not isinstance(value, str):
                continue
            if key in _CREDENTIAL_ATOMS:
                atoms[key] = MASK
            elif key in _URL_ATOMS:
                atoms[key] = mask_url(value)
            else:
                atoms[key] = mask_secrets(value)
        return atoms
