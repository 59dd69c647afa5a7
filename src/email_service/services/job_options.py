"""Checks of a job's options (schedule, headers, attachments, callback): each turns a caller's value
into what is stored, or adds a problem naming the field."""

from __future__ import annotations

import binascii
import json
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import TypeAdapter, ValidationError

from email_service.message.addresses import quoted
from email_service.message.attachment_headers import CONTENT_TYPE
from email_service.message.encoded_words import decoded
from email_service.message.header_values import describe_unsafe_text
from email_service.message.mime import AttachmentFile
from email_service.outbound.destinations import IPNetwork, url_refusal

EXTRA_HEADER_NAME = re.compile(r"[Xx]-[A-Za-z0-9][A-Za-z0-9-]{0,62}")
MAX_EXTRA_HEADERS = 20
MAX_METADATA_BYTES = 4096
_DURATION = TypeAdapter(timedelta)


@dataclass
class Problems:
    """Every problem found in a request, reported together."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, field: str, reason: str, *, index: int | None = None, address: str | None = None) -> None:
        """A problem of ``field``; ``index`` in recipients and the refused ``address`` (quoted) when it is one's."""
        problem: dict[str, Any] = {"field": field, "reason": reason}
        if index is not None:
            problem["index"] = index
        if address is not None:
            problem["address"] = quoted(address)
        self.items.append(problem)

    def __bool__(self) -> bool:
        return bool(self.items)


class AttachmentIn(Protocol):
    filename: str
    content: str  # base64
    content_type: str | None


def parse_when(value: str, name: str, *, now: datetime, horizon_days: int, problems: Problems) -> datetime | None:
    """An ISO 8601 time with its offset ("2026-12-01T09:00:00+01:00") or a duration from now ("PT30M")."""
    text = value.strip()
    if text[:1] in ("P", "p"):
        try:
            when = now + _DURATION.validate_python(text.upper())
        except ValidationError:
            problems.add(name, "not an ISO 8601 duration such as PT30M or P1DT2H")
            return None
        except OverflowError:
            problems.add(name, f"at most {horizon_days} days ahead")
            return None
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:  # also a year out of range
            problems.add(name, "an ISO 8601 time (2026-12-01T09:00:00+01:00) or duration (PT30M)")
            return None
        if when.tzinfo is None:
            problems.add(name, "the time needs its UTC offset, e.g. 2026-12-01T09:00:00Z")
            return None
    if when > now + timedelta(days=horizon_days):
        problems.add(name, f"at most {horizon_days} days ahead")
        return None
    return when


def check_schedule(send_at: datetime | None, expires_at: datetime | None, *, now: datetime, problems: Problems) -> None:
    if expires_at is not None and expires_at <= max(now, send_at or now):
        problems.add("expires_at", "must be later than now and than send_at")


def check_extra_headers(headers: dict[str, str] | None, problems: Problems) -> None:
    """A job may add X-* headers only (Reply-To has a field of its own)."""
    if not headers:
        return
    if len(headers) > MAX_EXTRA_HEADERS:
        problems.add("headers", f"at most {MAX_EXTRA_HEADERS} headers")
    for name, value in headers.items():
        if EXTRA_HEADER_NAME.fullmatch(name) is None:
            problems.add(f"headers.{name}", "only X-* headers (letters, digits, hyphens) may be added")
        elif reason := describe_unsafe_text(value):
            problems.add(f"headers.{name}", reason)
        elif len(value) > 998:
            problems.add(f"headers.{name}", "at most 998 characters")


def decode_attachments(
    attachments: list[AttachmentIn], *, max_count: int, max_bytes: int, problems: Problems
) -> tuple[AttachmentFile, ...]:
    if len(attachments) > max_count:
        problems.add("attachments", f"at most {max_count} attachments")
        return ()
    files: list[AttachmentFile] = []
    total = 0
    for index, attachment in enumerate(attachments):
        where = f"attachments[{index}]"
        # A reader decodes encoded words in a file name: the name it shows is the one checked and stored.
        name = _decoded_filename(attachment.filename)
        if name is None or not name.strip() or "/" in name or "\\" in name or describe_unsafe_text(name):
            problems.add(
                f"{where}.filename",
                "a file name without path separators or control characters, also once its encoded words are decoded",
            )
            continue
        content_type = (attachment.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream").lower()
        if CONTENT_TYPE.fullmatch(content_type) is None or content_type.startswith(("multipart/", "message/")):
            problems.add(f"{where}.content_type", "a MIME type such as application/pdf (not multipart/* or message/*)")
            continue
        try:
            # Line breaks are common in base64 (MIME wraps it at 76); anything else that is not base64 is refused.
            data = binascii.a2b_base64("".join(attachment.content.split()), strict_mode=True)
        except (binascii.Error, ValueError) as exc:  # ValueError: characters that are not ASCII
            problems.add(f"{where}.content", f"not base64: {exc}")
            continue
        total += len(data)
        files.append(AttachmentFile(filename=name, content_type=content_type, data=data))
    if total > max_bytes:
        problems.add("attachments", f"{total} bytes in all, more than the {max_bytes} allowed")
    return tuple(files)


def _decoded_filename(filename: str) -> str | None:
    """``filename`` with its RFC 2047 encoded words decoded, trimmed; None when the name as given has a control
    character or an encoded word does not decode."""
    if describe_unsafe_text(filename):
        return None
    try:
        return decoded(filename).strip()  # readers drop white space at either end of a file name
    except ValueError:
        return None


def check_callback_url(
    url: str, *, can_sign: bool, allowed_networks: tuple[IPNetwork, ...], problems: Problems
) -> None:
    """A public http(s) URL: a literal address or a name that is not public is refused here, the addresses a
    name resolves to when the events are sent. ``can_sign``: there is a secret to sign the events with."""
    if reason := url_refusal(url, allowed_networks):
        problems.add("callback_url", reason)
    elif not can_sign:
        problems.add("callback_url", "webhooks are off: the service has no WEBHOOK_SECRET to sign them")


def check_metadata(metadata: dict[str, Any] | None, problems: Problems) -> None:
    if metadata is not None and len(json.dumps(metadata)) > MAX_METADATA_BYTES:
        problems.add("metadata", f"at most {MAX_METADATA_BYTES} bytes as JSON")
