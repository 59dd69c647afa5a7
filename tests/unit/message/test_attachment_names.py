"""Attachment names every client reads: ``name`` on Content-Type (an encoded word in quotes when not plain
ASCII, as Thunderbird, Outlook and Gmail write it) beside ``filename``/``filename*`` on Content-Disposition."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import Message

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.message.mime import AttachmentFile, MessageBuilder
from email_service.message.rendering import RenderedEmail

DATE = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FILENAME = st.text(
    st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"], exclude_characters="/\\"), min_size=1, max_size=255
).filter(lambda name: name.strip() == name and "=?" not in name)  # as intake stores it: trimmed, decoded


def _built(filename: str, content_type: str = "application/pdf") -> bytes:
    attachment = AttachmentFile(filename=filename, content_type=content_type, data=b"%PDF-1.4 " * 40)
    return (
        MessageBuilder()
        .build(
            RenderedEmail(headers=(), text="see attached"),
            sender="s@example.org",
            recipient="r@example.com",
            recipient_name=None,
            subject="s",
            message_id="<m@x>",
            date=DATE,
            attachments=(attachment,),
        )
        .data
    )


def _name_as_an_old_reader_sees_it(data: bytes) -> str:
    """What munpack and compat32 readers take: Content-Type's name, its encoded words decoded."""
    legacy = email.message_from_bytes(data, policy=policy.compat32)
    part = list(legacy.walk())[-1]
    assert isinstance(part, Message)
    raw = part.get_param("name")
    assert isinstance(raw, str), "Content-Type has no name parameter"
    return str(make_header(decode_header(email.utils.collapse_rfc2231_value(raw))))


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(filename=FILENAME)
def test_every_filename_reads_back_from_name_and_filename_within_76_columns(filename: str) -> None:
    data = _built(filename)
    part = list(email.message_from_bytes(data, policy=policy.default).walk())[-1]
    assert part.get_filename() == filename
    assert "".join(_name_as_an_old_reader_sees_it(data).split()) == "".join(filename.split())
    for line in data.split(b"\r\n"):
        assert len(line) <= 76, line


@pytest.mark.parametrize(
    ("filename", "content_type_line", "disposition"),
    [
        ("report.pdf", b'Content-Type: application/pdf; name="report.pdf"', b'attachment; filename="report.pdf"'),
        (
            "résumé.pdf",
            b'Content-Type: application/pdf; name="=?utf-8?b?csOpc3Vtw6kucGRm?="',
            b"attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf",
        ),
    ],
)
def test_names_are_written_as_the_major_clients_write_them(
    filename: str, content_type_line: bytes, disposition: bytes
) -> None:
    data = _built(filename)
    assert b"\r\n" + content_type_line + b"\r\n" in data
    assert b"\r\nContent-Disposition: " + disposition + b"\r\n" in data
    assert _name_as_an_old_reader_sees_it(data) == filename


def test_a_long_non_ascii_name_uses_rfc_2231_continuations() -> None:
    filename = "日本語のファイル名" * 6 + ".txt"
    data = _built(filename, "text/plain")
    assert b"filename*0*=utf-8''" in data and b"filename*1*=" in data
    assert list(email.message_from_bytes(data, policy=policy.default).walk())[-1].get_filename() == filename
