"""Template lookup and rendering: a sandboxed Jinja environment and the parsing of rendered .eml.

A template is an ``.eml`` file: header lines, a blank line, then the body. The rendered text is
split into headers and body here (the tutorial sent the header block as the body). Templates
are found by name only, through a loader rooted in the templates folders, never by path.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader, PackageLoader, StrictUndefined, TemplateNotFound
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.sandbox import SandboxedEnvironment

from .errors import TemplateError
from .header_values import describe_control_character

TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
TEMPLATE_SUFFIX = ".eml"

# Headers the service always sets itself from trusted values; a template's are ignored.
_SERVICE_HEADERS = frozenset({"date", "from", "to", "message-id", "mime-version", "content-transfer-encoding"})
# Headers a template may set besides any X-* header.
_TEMPLATE_HEADERS = frozenset({"subject", "content-type", "reply-to"})
_HEADER_LINE = re.compile(r"([A-Za-z0-9-]+):[ \t]*(.*)")


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered template: the headers it sets (in order), the body and its MIME subtype."""

    headers: tuple[tuple[str, str], ...]
    body: str
    subtype: str

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


def is_valid_template_name(name: str) -> bool:
    return TEMPLATE_NAME.fullmatch(name) is not None


class TemplateRenderer:
    """Finds templates by name (TEMPLATES_DIR first, then the built-in ones) and renders them."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders: list[Any] = []
        if templates_dir is not None:
            loaders.append(FileSystemLoader(str(templates_dir)))
        loaders.append(PackageLoader("email_service", "templates"))
        self._env = SandboxedEnvironment(
            loader=ChoiceLoader(loaders),
            undefined=StrictUndefined,
            autoescape=False,  # .eml templates are plain text; HTML escaping belongs to HTML parts
            keep_trailing_newline=True,
            auto_reload=False,
        )

    def exists(self, name: str) -> bool:
        if not is_valid_template_name(name):
            return False
        try:
            self._env.get_template(name + TEMPLATE_SUFFIX)
        except TemplateNotFound:
            return False
        return True

    def render(self, name: str, context: dict[str, Any]) -> RenderedEmail:
        """Render template ``name`` with ``context``; TemplateError says what went wrong."""
        if not is_valid_template_name(name):
            raise TemplateError(f"invalid template name {name!r}")
        try:
            template = self._env.get_template(name + TEMPLATE_SUFFIX)
            text = template.render(context)
        except TemplateNotFound:
            raise TemplateError(f"unknown template {name!r}") from None
        except JinjaTemplateError as exc:
            line = getattr(exc, "lineno", None) or _template_line(exc, template.filename)
            where = f" (line {line})" if line else ""
            raise TemplateError(f"template {name!r} does not render{where}: {exc}") from None
        return parse_eml(text)


def _template_line(exc: BaseException, filename: str | None) -> int | None:
    """The template line a render error happened on (Jinja maps its frames back to the template)."""
    line = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if filename and frame.f_code.co_filename == filename:
            line = lineno
    return line


def parse_eml(text: str) -> RenderedEmail:
    """Split rendered .eml text into checked headers and a body."""
    text = text.replace("\r\n", "\n")
    head, separator, body = text.partition("\n\n")
    if not separator:
        raise TemplateError("a template needs header lines, a blank line, then the body")
    headers: list[tuple[str, str]] = []
    for line in head.split("\n"):
        if line[:1] in (" ", "\t") and headers:  # folded continuation of the previous header
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            raise TemplateError(f"not a header line in the template: {line[:80]!r}")
        headers.append((match.group(1), match.group(2).strip()))

    kept: list[tuple[str, str]] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in _SERVICE_HEADERS:
            continue
        if lowered not in _TEMPLATE_HEADERS and not lowered.startswith("x-"):
            raise TemplateError(f"header {name!r} may not be set by a template")
        reason = describe_control_character(value)
        if reason:
            raise TemplateError(f"header {name!r}: {reason}")
        kept.append((name, value))

    subtype = "plain"
    content_type = next((v for k, v in kept if k.lower() == "content-type"), None)
    if content_type is not None:
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime not in ("text/plain", "text/html"):
            raise TemplateError(f"unsupported Content-Type {mime!r}: use text/plain or text/html")
        subtype = mime.split("/", 1)[1]
    return RenderedEmail(
        headers=tuple((k, v) for k, v in kept if k.lower() != "content-type"),
        body=body,
        subtype=subtype,
    )
