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

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
)
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


@dataclass(frozen=True)
class _CompiledEml:
    head: Template
    body: Template
    body_offset: int  # lines before the body in the file, to report body errors by file line


class TemplateRenderer:
    """Finds templates by name (TEMPLATES_DIR first, then the built-in ones) and renders them.

    The header block and the body of an ``.eml`` are compiled apart. In the header block every
    ``{{ value }}`` must be free of control characters, so no variable can add a header line or
    end the block early; the body is autoescaped when the template says ``Content-Type: text/html``.
    """

    def __init__(self, templates_dir: Path | None = None) -> None:
        loaders: list[Any] = []
        if templates_dir is not None:
            loaders.append(FileSystemLoader(str(templates_dir)))
        loaders.append(PackageLoader("email_service", "templates"))
        self._loader = ChoiceLoader(loaders)
        common: dict[str, Any] = {"undefined": StrictUndefined, "keep_trailing_newline": True}
        self._head_env = SandboxedEnvironment(**common, autoescape=False, finalize=_safe_header_value)
        self._text_env = SandboxedEnvironment(**common, autoescape=False)
        self._html_env = SandboxedEnvironment(**common, autoescape=True)
        self._compiled: dict[str, _CompiledEml] = {}

    def exists(self, name: str) -> bool:
        if not is_valid_template_name(name):
            return False
        try:
            self._loader.get_source(self._text_env, name + TEMPLATE_SUFFIX)
        except TemplateNotFound:
            return False
        return True

    def render(self, name: str, context: dict[str, Any]) -> RenderedEmail:
        """Render template ``name`` with ``context``; TemplateError says what went wrong."""
        compiled = self._compile(name)
        part, offset = "header", 0
        try:
            head = compiled.head.render(context)
            part, offset = "body", compiled.body_offset
            body = compiled.body.render(context)
        except TemplateError as exc:
            raise TemplateError(f"template {name!r}, {part}: {exc}") from None
        except Exception as exc:  # a template expression may raise anything (TypeError, ZeroDivisionError…)
            line = _template_line(exc)
            where = f" (line {line + offset})" if line else ""
            raise TemplateError(f"template {name!r} does not render{where}: {exc}") from None
        return _parsed(head, body)

    def _compile(self, name: str) -> _CompiledEml:
        compiled = self._compiled.get(name)
        if compiled is not None:
            return compiled
        if not is_valid_template_name(name):
            raise TemplateError(f"invalid template name {name!r}")
        try:
            source, _, _ = self._loader.get_source(self._text_env, name + TEMPLATE_SUFFIX)
        except TemplateNotFound:
            raise TemplateError(f"unknown template {name!r}") from None
        head_source, separator, body_source = source.replace("\r\n", "\n").partition("\n\n")
        if not separator:
            raise TemplateError(f"template {name!r}: header lines, a blank line, then the body")
        body_env = self._html_env if _declares_html(head_source) else self._text_env
        body_offset = head_source.count("\n") + 2
        try:
            head = self._head_env.from_string(head_source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template {name!r} has a syntax error (line {exc.lineno}): {exc}") from None
        try:
            body = body_env.from_string(body_source)
        except TemplateSyntaxError as exc:
            line = (exc.lineno or 0) + body_offset
            raise TemplateError(f"template {name!r} has a syntax error (line {line}): {exc}") from None
        compiled = self._compiled[name] = _CompiledEml(head, body, body_offset)
        return compiled


def _safe_header_value(value: Any) -> Any:
    """Jinja finalize for the header block: a value with a line break would forge header lines."""
    reason = describe_control_character(str(value))
    if reason:
        raise TemplateError(f"a value in a header has a {reason.removeprefix('control character ')}")
    return value


def _declares_html(head_source: str) -> bool:
    return any(
        line.lower().startswith("content-type:") and "text/html" in line.lower() for line in head_source.split("\n")
    )


def _template_line(exc: BaseException) -> int | None:
    """The template line a render error happened on (Jinja maps its frames back to the template)."""
    line = getattr(exc, "lineno", None)
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == "<template>":
            line = lineno
    return line


def parse_eml(text: str) -> RenderedEmail:
    """Split rendered .eml text into checked headers and a body."""
    head, separator, body = text.replace("\r\n", "\n").partition("\n\n")
    if not separator:
        raise TemplateError("a template needs header lines, a blank line, then the body")
    return _parsed(head, body)


def _parsed(head: str, body: str) -> RenderedEmail:
    headers: list[tuple[str, str]] = []
    for line in head.replace("\r\n", "\n").split("\n"):
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
