"""Built messages: one recipient, exact headers, bodies that survive any relay and decode back."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from email_service.errors import TemplateError
from email_service.message.composing import JobContent, compose
from email_service.message.mime import AttachmentFile, MessageBuilder
from email_service.message.rendering import RenderedEmail, TemplateRenderer

DATE = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SENDER = "Service <service@example.org>"


def _compose(content: str, **kwargs) -> email.message.EmailMessage:
    renderer = TemplateRenderer()
    template = renderer.file_source("default")
    assert template is not None
    job = JobContent(job_id="job", template=template, sender=SENDER, subject="Démogorgon 🎃", content=content)
    envelope = compose(
        renderer,
        job,
        address="will@example.com",
        name=kwargs.get("name"),
        variables=None,
        position=0,
        date=DATE,
    )
    assert envelope.sender == "service@example.org" and envelope.recipient == "will@example.com"
    return email.message_from_bytes(envelope.data, policy=policy.default), envelope.data


def test_headers_are_exactly_the_expected_set():
    message, _ = _compose("Run")
    assert sorted(message.keys()) == sorted(
        ["Date", "From", "To", "Subject", "Message-ID", "Content-Type", "Content-Transfer-Encoding", "MIME-Version"]
    )
    assert message["To"] == "will@example.com"
    assert message["Subject"] == "Démogorgon 🎃"
    assert message["Message-ID"] == "<job.0@example.org>"
    assert message["Date"] == "Sat, 28 Nov 2026 12:00:00 +0000"


def test_long_lines_are_encoded_below_998_octets_and_decode_back():
    content = "é" * 5000 + "\n" + "x" * 3000
    message, data = _compose(content)
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    assert message.get_content().replace("\r\n", "\n").startswith(content + "\n")


def _build(body: str = "b", recipient: str = "r@example.com", name: str | None = None, subject: str = "s"):
    rendered = RenderedEmail(headers=(), text=body)
    return MessageBuilder(cache_size=1).build(
        rendered,
        sender="s@example.org",
        recipient=recipient,
        recipient_name=name,
        subject=subject,
        message_id="<m@x>",
        date=DATE,
    )


@settings(max_examples=200, deadline=None)
@given(content=st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=3000))
def test_any_content_decodes_back_exactly_and_no_line_exceeds_998(content: str):
    data = _build(body=content).data
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    decoded = email.message_from_bytes(data, policy=policy.default).get_content()
    # Text travels as lines: each line break becomes CRLF and the body ends with one.
    lines = content.encode("utf-8").splitlines() or [b""]
    expected = b"".join(line + b"\n" for line in lines).decode("utf-8")
    assert decoded.replace("\r\n", "\n") == expected


@pytest.mark.parametrize("name", ["Eleven, «Onze»", 'Jo "the" Doe', "Zoë 🎉"])
def test_display_names_are_quoted_or_encoded(name: str):
    message, _ = _compose("x", name=name)
    assert message["To"].addresses[0].display_name == name
    assert message["To"].addresses[0].addr_spec == "will@example.com"


@pytest.mark.parametrize("value", ["Hi\r\nBcc: x@y.z", "Hi\n", "Hi\u2028there"])
def test_a_control_character_in_a_header_is_refused(value: str):
    with pytest.raises(TemplateError):
        _build(name=value)
    with pytest.raises(TemplateError):
        _build(subject=value)


def test_internationalized_addresses_use_idna_domains_and_utf8_only_when_needed():
    ascii_local = _build(recipient="a@bücher.de")
    assert ascii_local.recipient == "a@xn--bcher-kva.de"
    assert b"To: a@xn--bcher-kva.de\r\n" in ascii_local.data and ascii_local.data.isascii()
    utf8_local = _build(recipient="jörg@bücher.de")
    assert utf8_local.recipient == "jörg@xn--bcher-kva.de"
    assert "To: jörg@xn--bcher-kva.de\r\n".encode() in utf8_local.data


def test_a_batch_builder_shares_subject_and_body_but_not_the_recipient_headers():
    builder = MessageBuilder()
    rendered = RenderedEmail(headers=(("X-Campaign", "spring"),), text="Héllo wörld " * 200)
    names = [None, "Zoë", 'Jo "J" Doe', None]
    for i, name in enumerate(names):
        data = builder.build(
            rendered,
            sender=SENDER,
            recipient=f"r{i}@example.com",
            recipient_name=name,
            subject="Sübject",
            message_id=f"<{i}@example.org>",
            date=DATE,
        ).data
        message = email.message_from_bytes(data, policy=policy.default)
        assert sorted(message.keys()) == sorted(
            [
                "Date",
                "To",
                "Message-ID",
                "From",
                "Subject",
                "X-Campaign",
                "Content-Type",
                "Content-Transfer-Encoding",
                "MIME-Version",
            ]
        )
        assert message["To"].addresses[0].addr_spec == f"r{i}@example.com"
        assert message["To"].addresses[0].display_name == (name or "")
        assert (message["Message-ID"], message["Subject"], message["From"]) == (f"<{i}@example.org>", "Sübject", SENDER)
        assert message.get_content().replace("\r\n", "\n") == "Héllo wörld " * 200 + "\n"
    assert len(builder._shared) == 1, "one shared part for the whole batch"


def _parts(message: email.message.EmailMessage) -> list[tuple[str, str | None]]:
    return [(part.get_content_type(), part.get_filename()) for part in message.walk()]


def test_text_and_html_make_multipart_alternative_with_text_first():
    rendered = RenderedEmail(headers=(), text="Hello Zoë", html="<p>Hello Zoë</p>")
    message = email.message_from_bytes(_build_rendered(rendered).data, policy=policy.default)
    assert _parts(message) == [("multipart/alternative", None), ("text/plain", None), ("text/html", None)]
    assert message.get_body(("plain",)).get_content().strip() == "Hello Zoë"
    assert message.get_body(("html",)).get_content().strip() == "<p>Hello Zoë</p>"


def test_attachments_make_multipart_mixed_and_decode_back():
    pdf = AttachmentFile("rapport été.pdf", "application/pdf", bytes(range(256)) * 40)
    notes = AttachmentFile("notes.txt", "text/plain", b"line\n" * 10)
    rendered = RenderedEmail(headers=(), text="see attached", html="<p>see attached</p>")
    builder = MessageBuilder()
    first, data = (
        _build_rendered(rendered, builder=builder, message_id=f"<{i}@x>", attachments=(pdf, notes)).data
        for i in range(2)
    )
    assert len(builder._attachment_parts) == 2, "each attachment encoded once for the batch"
    assert first.split(b"\r\n", 3)[3] == data.split(b"\r\n", 3)[3], "all but Date, To and Message-ID shared"
    assert max(len(line) for line in data.split(b"\r\n")) <= 78 and data.isascii()
    message = email.message_from_bytes(data, policy=policy.default)
    assert _parts(message)[:4] == [
        ("multipart/mixed", None),
        ("multipart/alternative", None),
        ("text/plain", None),
        ("text/html", None),
    ]
    files = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
    assert files == {"rapport été.pdf": pdf.data, "notes.txt": "line\n" * 10}


def test_job_headers_replace_the_templates_and_add_x_headers():
    rendered = RenderedEmail(headers=(("Reply-To", "t@example.org"), ("X-Campaign", "spring")), text="x")
    headers = (("Reply-To", "desk@example.org"), ("X-Campaign", "autumn"), ("X-Ref", "42"))
    message = email.message_from_bytes(_build_rendered(rendered, headers=headers).data, policy=policy.default)
    assert message.get_all("Reply-To") == ["desk@example.org"]
    assert message.get_all("X-Campaign") == ["autumn"]
    assert message["X-Ref"] == "42"


def _build_rendered(rendered: RenderedEmail, builder: MessageBuilder | None = None, **options):
    fields = {"recipient": "r@example.com", "message_id": "<m@x>", **options}
    return (builder or MessageBuilder(cache_size=1)).build(
        rendered, sender=SENDER, recipient_name=None, subject="s", date=DATE, **fields
    )
