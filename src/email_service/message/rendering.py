"""Template lookup and rendering: a sandboxed Jinja environment, compiled templates, rendered parts.

A template is either an ``.eml`` source (header lines, a blank line, then the body, as the
tutorial lays them out in the templates folder) or a stored template made of a subject, a text
body and/or an HTML body. Both render to the same ``RenderedEmail``: checked headers, a text part
and an HTML part. Files are found by name only, through a loader rooted in the templates folders,
never by path; ``{% extends %}`` and ``{% include %}`` reach the layouts folders only.
"""

from __future__ import annotations

import re
import threading
import traceback
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from jinja2 import (
    ChoiceLoader,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
)

from email_service.errors import RenderLimit, TemplateError
from email_service.message.header_values import describe_control_character
from email_service.message.html_text import html_to_text
from email_service.message.render_budget import check_time, message_render
from email_service.message.sandbox import BoundedSandbox, render_bounded

TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
TEMPLATE_SUFFIX = ".eml"
LAYOUTS_FOLDER = "layouts"

# Headers the service always sets itself from trusted values; a template's are ignored.
_SERVICE_HEADERS = frozenset({"date", "from", "to", "message-id", "mime-version", "content-transfer-encoding"})
# Headers a template may set besides any X-* header.
_TEMPLATE_HEADERS = frozenset({"subject", "content-type", "reply-to"})
_HEADER_LINE = re.compile(r"([A-Za-z0-9-]+):[ \t]*(.*)")
_UNDEFINED_NAME = re.compile(r"'([^']+)' is undefined|has no attribute '([^']+)'")
_COMPILED_CACHE_SIZE = 256


@dataclass(frozen=True)
class TemplateSource:
    """What a template is made of: ``eml``, or a ``subject`` with a ``text`` and/or an ``html`` body.

    A file is identified by its name, a stored version by its row, ``stored_id`` (versions never change;
    an account's template and a shared one may have the same name and version), a draft not at all.
    """

    name: str
    origin: Literal["file", "stored", "draft"]
    version: int | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    eml: str | None = None
    stored_id: int | None = None

    @property
    def cache_key(self) -> tuple[str, str | int] | None:
        """What its compiled form is kept under; None (compiled each time) for a draft, or a stored source
        that does not say its row."""
        if self.origin == "file":
            return (self.origin, self.name)
        if self.origin == "stored" and self.stored_id is not None:
            return (self.origin, self.stored_id)
        return None


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered template: the headers it sets (in order), its text part and its HTML part.

    At least one part is set; an HTML-only template gets a text part derived from its HTML.
    """

    headers: tuple[tuple[str, str], ...]
    text: str | None
    html: str | None = None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


def is_valid_template_name(name: str) -> bool:
    return TEMPLATE_NAME.fullmatch(name) is not None


@dataclass(frozen=True)
class _Part:
    """One compiled piece of a template; ``offset`` maps its lines back to the source's."""

    name: str  # subject, text, html, or eml
    template: Template
    offset: int = 0


@dataclass(frozen=True)
class _Compiled:
    head: _Part | None  # an .eml's header block
    subject: _Part | None
    text: _Part | None
    html: _Part | None


class TemplateRenderer:
    """Finds template files by name (TEMPLATES_DIR first, then the built-in ones) and renders sources.

    Header values (an .eml's header block, a stored subject) are rendered with every ``{{ value }}``
    checked for control characters, so no variable can add a header line; HTML is autoescaped.
    """

    def __init__(self, templates_dir: Path | None = None) -> None:
        files: list[Any] = []
        layouts: list[Any] = []
        if templates_dir is not None:
            files.append(FileSystemLoader(str(templates_dir)))
            layouts.append(FileSystemLoader(str(templates_dir / LAYOUTS_FOLDER)))
        files.append(PackageLoader("email_service.message", "templates"))
        layouts.append(PackageLoader("email_service.message", f"templates/{LAYOUTS_FOLDER}"))
        self._files = ChoiceLoader(files)
        common: dict[str, Any] = {"undefined": StrictUndefined, "keep_trailing_newline": True}
        self._head_env = BoundedSandbox(**common, autoescape=False, finalize=_safe_header_value)
        layout_loader = ChoiceLoader(layouts)
        self._text_env = BoundedSandbox(**common, autoescape=False, loader=layout_loader)
        self._html_env = BoundedSandbox(**common, autoescape=True, loader=layout_loader)
        self._compiled: dict[tuple[str, str | int], _Compiled] = {}
        self._compiled_lock = threading.Lock()  # a worker's threads share the cache

    def file_source(self, name: str) -> TemplateSource | None:
        """The template file ``name`` (``<name>.eml``), or None when there is none."""
        if not is_valid_template_name(name):
            return None
        try:
            source, _, _ = self._files.get_source(self._text_env, name + TEMPLATE_SUFFIX)
        except TemplateNotFound:
            return None
        return TemplateSource(name=name, origin="file", eml=source)

    def file_names(self) -> list[str]:
        """The names of the template files (``<name>.eml``) in the templates folders."""
        names = {
            path.removesuffix(TEMPLATE_SUFFIX)
            for path in self._files.list_templates()
            if path.endswith(TEMPLATE_SUFFIX) and "/" not in path
        }
        return sorted(name for name in names if is_valid_template_name(name))

    def check(self, source: TemplateSource) -> None:
        """Compile every part of ``source``; TemplateError names the part and line of a syntax error."""
        self._compile(source)

    def render(self, source: TemplateSource, context: dict[str, Any]) -> RenderedEmail:
        """Render ``source`` with ``context``, its parts together within one RenderBudget; TemplateError
        says what went wrong, where and why."""
        compiled = self._compile(source)
        with message_render():
            return self._render(source, compiled, context)

    def _render(self, source: TemplateSource, compiled: _Compiled, context: dict[str, Any]) -> RenderedEmail:
        if compiled.head is not None:
            head = _render_part(source, compiled.head, context)
            body_part = compiled.html or compiled.text
            assert body_part is not None
            body = _render_part(source, body_part, context)
            headers = _checked_headers(head)
            return _with_text(
                RenderedEmail(headers, text=None, html=body)
                if compiled.html is not None
                else RenderedEmail(headers, text=body)
            )
        headers = ()
        if compiled.subject is not None:
            subject = _render_part(source, compiled.subject, context).strip()
            headers = (("Subject", subject),)
        text = _render_part(source, compiled.text, context) if compiled.text is not None else None
        html = _render_part(source, compiled.html, context) if compiled.html is not None else None
        return _with_text(RenderedEmail(headers, text=text, html=html))

    def _compile(self, source: TemplateSource) -> _Compiled:
        key = source.cache_key
        compiled = self._compiled.get(key) if key is not None else None
        if compiled is not None:
            return compiled
        compiled = self._compile_eml(source) if source.eml is not None else self._compile_parts(source)
        if key is not None:
            with self._compiled_lock:
                if len(self._compiled) >= _COMPILED_CACHE_SIZE:
                    self._compiled.pop(next(iter(self._compiled)))
                self._compiled[key] = compiled
        return compiled

    def _compile_eml(self, source: TemplateSource) -> _Compiled:
        assert source.eml is not None
        head_source, separator, body_source = source.eml.replace("\r\n", "\n").partition("\n\n")
        if not separator:
            raise TemplateError(
                f"template {source.name!r}: header lines, a blank line, then the body", part="eml", line=1
            )
        body_offset = head_source.count("\n") + 2
        head = _Part("eml", self._parse(self._head_env, source, "eml", head_source, 0))
        if _declares_html(head_source):
            html = _Part("eml", self._parse(self._html_env, source, "eml", body_source, body_offset), body_offset)
            return _Compiled(head=head, subject=None, text=None, html=html)
        text = _Part("eml", self._parse(self._text_env, source, "eml", body_source, body_offset), body_offset)
        return _Compiled(head=head, subject=None, text=text, html=None)

    def _compile_parts(self, source: TemplateSource) -> _Compiled:
        if source.text is None and source.html is None:
            raise TemplateError(f"template {source.name!r} has no body: give text, html or eml", part="text")
        subject = text = html = None
        if source.subject is not None:
            subject = _Part("subject", self._parse(self._head_env, source, "subject", source.subject, 0))
        if source.text is not None:
            text = _Part("text", self._parse(self._text_env, source, "text", source.text, 0))
        if source.html is not None:
            html = _Part("html", self._parse(self._html_env, source, "html", source.html, 0))
        return _Compiled(head=None, subject=subject, text=text, html=html)

    @staticmethod
    def _parse(env: BoundedSandbox, source: TemplateSource, part: str, text: str, offset: int) -> Template:
        try:
            return env.from_string(text)
        except TemplateSyntaxError as exc:
            line = (exc.lineno or 0) + offset
            raise TemplateError(
                f"template {source.name!r}, {part}: syntax error (line {line}): {exc.message}", part=part, line=line
            ) from None
        except RecursionError:  # the parser and Python's compiler recurse once per level of nesting
            raise TemplateError(f"template {source.name!r}, {part}: nested too deeply", part=part) from None


def _render_part(source: TemplateSource, part: _Part, context: dict[str, Any]) -> str:
    try:
        return render_bounded(part.template, context)
    except TemplateError as exc:  # a header value with a line break, or past a sandbox bound
        raise TemplateError(f"template {source.name!r}, {part.name}: {exc}", part=part.name) from None
    except TemplateNotFound as exc:
        raise TemplateError(
            f"template {source.name!r}, {part.name}: unknown layout {exc.name!r}", part=part.name
        ) from None
    except Exception as exc:  # a template expression may raise anything (TypeError, ZeroDivisionError…)
        line = _template_line(exc)
        line = line + part.offset if line else None
        variable = _undefined_name(exc)
        where = f" (line {line})" if line else ""
        raise TemplateError(
            f"template {source.name!r}, {part.name} does not render{where}: {exc}",
            part=part.name,
            line=line,
            variable=variable,
        ) from None


def _with_text(rendered: RenderedEmail) -> RenderedEmail:
    if rendered.text is not None or rendered.html is None:
        return rendered
    return RenderedEmail(rendered.headers, text=_derived_text(rendered.html), html=rendered.html)


@lru_cache(maxsize=64)
def _derived_text(html: str) -> str:
    # Recipients of a batch often share one rendering: derive its text once.
    try:
        return html_to_text(html, check=check_time)
    except RenderLimit as exc:
        raise TemplateError(f"the text part derived from the HTML: {exc}", part="html") from None


def _safe_header_value(value: Any) -> Any:
    """Jinja finalize for header values: a value with a line break would forge header lines."""
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


def _undefined_name(exc: BaseException) -> str | None:
    """The variable a render error is about, when a template used one the context lacks."""
    if not isinstance(exc, UndefinedError):
        return None
    match = _UNDEFINED_NAME.search(str(exc))
    return (match.group(1) or match.group(2)) if match else None


def _checked_headers(head: str) -> tuple[tuple[str, str], ...]:
    """A rendered header block's headers a template may set (the service's own are dropped)."""
    headers: list[tuple[str, str]] = []
    for line in head.replace("\r\n", "\n").split("\n"):
        if line[:1] in (" ", "\t") and headers:  # folded continuation of the previous header
            name, value = headers[-1]
            headers[-1] = (name, f"{value} {line.strip()}")
            continue
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            raise TemplateError(f"not a header line in the template: {line[:80]!r}", part="eml")
        headers.append((match.group(1), match.group(2).strip()))

    kept: list[tuple[str, str]] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in _SERVICE_HEADERS:
            continue
        if lowered not in _TEMPLATE_HEADERS and not lowered.startswith("x-"):
            raise TemplateError(f"header {name!r} may not be set by a template", part="eml")
        reason = describe_control_character(value)
        if reason:
            raise TemplateError(f"header {name!r}: {reason}", part="eml")
        if lowered == "content-type":
            mime = value.split(";", 1)[0].strip().lower()
            if mime not in ("text/plain", "text/html"):
                raise TemplateError(f"unsupported Content-Type {mime!r}: use text/plain or text/html", part="eml")
            continue
        kept.append((name, value))
    return tuple(kept)
