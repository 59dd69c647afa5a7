"""The plain-text alternative of an HTML e-mail, made in one pass of the standard library's HTML parser."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from urllib.parse import unquote

# Never shown by a mail client.
_SKIP = frozenset({"script", "style", "head", "title", "template"})
# What may stand in <head>; any other start tag ends an unclosed head, as in a browser.
_HEAD_CONTENT = frozenset({"base", "link", "meta", "noscript", "script", "style", "template", "title"})
# Separated by a blank line (a line break only inside a list, to keep the items together).
_PARAGRAPHS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"})
_BLOCKS = frozenset(
    {
        "address",
        "article",
        "aside",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "header",
        "hgroup",
        "html",
        "legend",
        "main",
        "nav",
        "section",
        "summary",
        "table",
        "tbody",
        "tfoot",
        "thead",
        "tr",
    }
)
_RULE = "-" * 40
_CELL_SEPARATOR = " | "
_INDENT = "  "
_PIECE = 32_768  # characters parsed between two checks: a few milliseconds


def html_to_text(html: str, check: Callable[[], None] | None = None) -> str:
    """Readable plain text of ``html``: lines right-stripped, no blank line twice, ending in one newline.

    Empty when the HTML shows no text. Never raises: malformed markup gives text as a browser would mostly show it.
    ``check`` is called between pieces of the HTML, and may raise to stop (a render's deadline).
    """
    parser = _TextExtractor()
    for start in range(0, len(html), _PIECE):
        if check is not None:
            check()
        parser.feed(html[start : start + _PIECE])
    parser.close()
    return parser.text()


class _TextExtractor(HTMLParser):
    """Writes text as it comes; line breaks, list markers and cell separators wait for the next text to be written.

    Waiting keeps empty elements (spacer cells, empty items) from leaving markers or blank lines behind.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._breaks = 0  # line breaks owed before the next text
        self._line_empty = True
        self._space = False  # collapsed whitespace owed before the next text on the same line
        self._skip: list[str] = []  # open elements whose content is dropped
        self._pre = 0
        self._pre_fresh = False  # just after <pre>, whose first newline HTML ignores
        self._lists: list[int | None] = []  # next number of each open <ol>, None for a <ul>
        self._item: str | None = None  # marker of a list item whose text has not come yet
        self._rows: list[bool] = []  # per open table: whether the current row has text yet
        self._cell = False  # a cell began: separate it from the previous one in the row
        self._links: list[tuple[str | None, int]] = []  # shown target (None: not shown), where the text began

    def text(self) -> str:
        lines: list[str] = []
        blank = True  # no leading blank line
        for line in "".join(self._out).split("\n"):
            line = line.rstrip()
            if line or not blank:
                lines.append(line)
            blank = not line
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines) + "\n" if lines else ""

    # Python 3.11's parser raises AssertionError on "<![foo[" (an unknown marked section);
    # a browser reads it as a bogus comment, and so do we.
    def parse_marked_section(self, i: int, report: bool = True) -> int:
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            return self.parse_bogus_comment(i, report)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._pre_fresh = False
        if tag == "body":
            self._skip.clear()
        if self._skip:
            if self._skip[-1] != "head" or tag in _HEAD_CONTENT:
                if tag in _SKIP:
                    self._skip.append(tag)
                return
            self._skip.pop()
        if tag in _SKIP:
            self._skip.append(tag)
        elif tag in _PARAGRAPHS:
            self._break(self._paragraph())
            if tag == "pre":
                self._pre += 1
                self._pre_fresh = True
        elif tag in _BLOCKS:
            self._break(1)
            if tag == "table":
                self._rows.append(False)
            elif tag == "tr" and self._rows:
                self._rows[-1] = False
        elif tag in ("td", "th"):
            self._cell = True
        elif tag == "br":
            self._breaks += 1
        elif tag == "a":
            self._links.append((_shown_target(_attr(attrs, "href")), len(self._out)))
        elif tag == "img":
            alt = " ".join(_attr(attrs, "alt").split())
            if alt:
                self._write(alt)
        elif tag in ("ul", "ol", "menu"):
            self._break(self._paragraph())
            self._lists.append(_start_number(_attr(attrs, "start")) if tag == "ol" else None)
        elif tag == "li":
            self._list_item()
        elif tag == "hr":
            self._break(self._paragraph())
            self._write(_RULE)
            self._break(self._paragraph())

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag in self._skip:
                while self._skip.pop() != tag:
                    pass
            return
        if tag in _PARAGRAPHS:
            self._break(self._paragraph())
            if tag == "pre" and self._pre:
                self._pre -= 1
        elif tag in _BLOCKS:
            self._break(1)
            if tag == "table" and self._rows:
                self._rows.pop()
        elif tag == "a":
            if self._links:
                self._end_link()
        elif tag in ("ul", "ol", "menu"):
            if self._lists:
                self._lists.pop()
            self._item = None
            self._break(self._paragraph())
        elif tag == "li":
            self._item = None
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            # Text ends an unclosed head, as in a browser; any other skipped element keeps it.
            if self._skip[-1] != "head" or not data.strip():
                return
            self._skip.pop()
        if self._pre:
            self._preformatted(data)
            return
        words = data.split()
        if not words:
            self._space = self._space or bool(data)
            return
        if data[0].isspace():
            self._space = True
        self._write(" ".join(words))
        if data[-1].isspace():
            self._space = True

    def _preformatted(self, data: str) -> None:
        lines = data.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if self._pre_fresh and len(lines) > 1 and not lines[0]:
            del lines[0]
        self._pre_fresh = False
        for index, line in enumerate(lines):
            if index:
                self._breaks += 1
            if line:
                self._write(line)

    def _paragraph(self) -> int:
        return 1 if self._lists else 2

    def _break(self, lines: int) -> None:
        # Breaks asked by adjacent block boundaries overlap; only <br> and <pre> add up.
        self._breaks = max(self._breaks, lines)

    def _list_item(self) -> None:
        self._break(1)
        depth = max(1, len(self._lists))
        number = self._lists[-1] if self._lists else None
        if number is None:
            marker = "- "
        else:
            marker = f"{number}. "
            self._lists[-1] = number + 1
        self._item = _INDENT * (depth - 1) + marker

    def _end_link(self) -> None:
        target, start = self._links.pop()
        if target is None:
            return
        text = " ".join("".join(self._out[start:]).split())
        if not text:
            self._write(target)
        elif _bare(text) != _bare(target):
            # Straight after the text, even if a block inside the link already asked for a line break.
            self._out.append(f" ({target})")

    def _write(self, text: str) -> None:
        """Write ``text`` (no newline in it) after the line breaks, marker, separator or space it is owed."""
        out = self._out
        if self._breaks:
            if out:
                out.append("\n" * self._breaks)
                self._line_empty = True
            self._breaks = 0
        if self._line_empty:
            if self._item is not None:
                out.append(self._item)
                self._item = None
            elif self._lists:
                out.append(_INDENT * len(self._lists))
            self._line_empty = False
        elif self._cell and self._rows and self._rows[-1]:
            out.append(_CELL_SEPARATOR)
        elif self._space:
            out.append(" ")
        self._space = False
        self._cell = False
        if self._rows:
            self._rows[-1] = True
        out.append(text)


def _attr(attrs: list[tuple[str, str | None]], name: str) -> str:
    for key, value in attrs:
        if key == name:
            return value or ""
    return ""


def _shown_target(href: str) -> str | None:
    """What a link shows of its target: None for in-page and script links, the bare address of a mailto:."""
    # Browsers drop tabs and newlines from a URL.
    href = href.replace("\t", "").replace("\n", "").replace("\r", "").strip()
    lowered = href.lower()
    if not href or href.startswith("#") or lowered.startswith("javascript:"):
        return None
    if lowered.startswith("mailto:"):
        return unquote(href[len("mailto:") :].partition("?")[0]) or None
    return href


def _bare(target: str) -> str:
    """A link target or text without what makes "example.com" differ from "https://example.com/"."""
    bare = target.lower()
    for scheme in ("https://", "http://", "mailto:"):
        if bare.startswith(scheme):
            bare = bare[len(scheme) :]
            break
    return bare.rstrip("/")


def _start_number(start: str) -> int:
    try:
        return int(start.strip())
    except ValueError:
        return 1
