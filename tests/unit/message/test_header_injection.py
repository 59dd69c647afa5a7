"""No header can be injected through any field that reaches one: encoded words are decoded and checked at
intake, and the builder refuses any header block holding other fields than it wrote."""

from __future__ import annotations

import base64
import email
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from email_service.errors import TemplateError
from email_service.message.composing import JobContent, compose
from email_service.message.header_values import describe_header_block, describe_unsafe_text
from email_service.message.mime import AttachmentFile
from email_service.message.rendering import TemplateRenderer, TemplateSource
from email_service.services.job_options import Problems, decode_attachments

DATE = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
RENDERER = TemplateRenderer()
CONTROLS = st.sampled_from(["\r\n", "\n", "\r", "\x00", "\x0b", "\x1b", "\x7f", "\x85", "\x9f", "\u2028", "\u2029"])
SAFE = st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"], exclude_characters="/\\"), max_size=20)
EXAMPLES = settings(
    max_examples=150, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def _encoded_word(text: str, encoding: str, charset: str) -> str:
    octets = text.encode("utf-8")
    if encoding in "bB":
        return f"=?{charset}?{encoding}?{base64.b64encode(octets).decode()}?="
    return f"=?{charset}?{encoding}?{''.join(f'={byte:02X}' for byte in octets)}?="


ENCODED_CONTROL = st.builds(
    lambda before, control, after, encoding, charset: _encoded_word(before + control + after, encoding, charset),
    SAFE,
    CONTROLS,
    st.sampled_from(["Bcc: evil@evil.example", "", " x"]),
    st.sampled_from(["b", "B", "q", "Q"]),
    st.sampled_from(["utf-8", "UTF-8", "Utf-8"]),
)


@EXAMPLES
@given(prefix=SAFE, word=ENCODED_CONTROL, suffix=SAFE)
def test_a_filename_whose_encoded_words_decode_to_a_control_character_is_refused(
    prefix: str, word: str, suffix: str
) -> None:
    problems = Problems()
    attachment = SimpleNamespace(filename=f"{prefix}{word}{suffix}", content="eA==", content_type="text/plain")
    assert decode_attachments([attachment], max_count=5, max_bytes=1000, problems=problems) == ()
    assert [problem["field"] for problem in problems.items] == ["attachments[0].filename"]


@EXAMPLES
@given(text=SAFE, word=ENCODED_CONTROL)
def test_every_text_field_is_checked_once_its_encoded_words_are_decoded(text: str, word: str) -> None:
    assert describe_unsafe_text(f"{text} {word}") is not None
    assert describe_unsafe_text(text) is None


def test_a_filename_given_as_encoded_words_is_stored_decoded() -> None:
    problems = Problems()
    given_name = SimpleNamespace(filename="=?utf-8?q?r=C3=A9sum=C3=A9?=.pdf", content="eA==", content_type=None)
    (stored,) = decode_attachments([given_name], max_count=5, max_bytes=1000, problems=problems)
    assert not problems and stored.filename == "résumé.pdf" and stored.content_type == "application/pdf"


def test_a_header_block_with_a_line_more_than_written_is_refused() -> None:
    names = ["Content-Type", "Content-Disposition"]
    good = b'Content-Type: text/plain;\r\n name="a"\r\nContent-Disposition: attachment\r\n'
    assert describe_header_block(good, names) is None
    for bad in [
        b'Content-Type: text/plain; name="\r\nBcc: evil@evil.example"\r\nContent-Disposition: attachment\r\n',
        b'Content-Type: text/plain; name="\nx"\r\nContent-Disposition: attachment\r\n',
        b"Content-Type: text/plain\r\n \r\nContent-Disposition: attachment\r\n",
        b"Content-Type: text/plain\r\nContent-Disposition: attachment",
        b"Content-Type: text/plain\r\nnot a field\r\nContent-Disposition: attachment\r\n",
    ]:
        assert describe_header_block(bad, names) is not None, bad


# One value in six is unsafe, so that a quarter of the examples build a message (each must be refused otherwise).
UNSAFE = st.sampled_from(range(12)).flatmap(
    lambda draw: (
        SAFE if draw < 10 else ENCODED_CONTROL if draw < 11 else st.builds("{}{}{}".format, SAFE, CONTROLS, SAFE)
    )
)
TEMPLATE = TemplateSource(
    name="injection",
    origin="stored",
    version=1,
    stored_id=1,
    subject="{{ subject }} {{ v }}",
    text="{{ content }}",
    html=None,
)


@EXAMPLES
@given(
    subject=UNSAFE,
    name=UNSAFE,
    reply_name=UNSAFE,
    custom=UNSAFE,
    variable=UNSAFE,
    filename=UNSAFE,
    content_type=st.sampled_from(["text/plain", "application/pdf", 'text/plain; name="x"', "text/plain\r\nBcc: e@x"]),
)
def test_no_field_that_reaches_a_header_can_add_a_header_line(
    subject: str, name: str, reply_name: str, custom: str, variable: str, filename: str, content_type: str
) -> None:
    reply_to = '"{}" <desk@example.org>'.format(reply_name.replace("\\", "\\\\").replace('"', '\\"'))
    attachment = AttachmentFile(filename=filename or "f", content_type=content_type, data=b"x")
    headers = (("Reply-To", reply_to), ("X-Campaign", custom))
    job = JobContent(
        "job", TEMPLATE, "Service <service@example.org>", subject, "c", {"v": variable}, headers, (attachment,)
    )
    try:
        envelope = compose(RENDERER, job, address="will@example.com", name=name, variables=None, position=3, date=DATE)
    except TemplateError as exc:
        event(f"refused: {str(exc)[:50]}")
        return
    event("built")
    message = email.message_from_bytes(envelope.data, policy=policy.default)
    expected = ["date", "to", "message-id", "from", "reply-to", "subject", "x-campaign", "mime-version", "content-type"]
    assert [key.lower() for key in message] == expected
    parts = list(message.walk())
    assert [list(map(str.lower, part.keys())) for part in parts[1:]] == [
        ["content-type", "content-transfer-encoding"],
        ["content-type", "content-transfer-encoding", "content-disposition"],
    ]
    for part in parts:
        for value in part.values():
            assert describe_unsafe_text(str(value)) is None, value
    assert parts[2].get_filename() == attachment.filename
    raw_name = parts[2].get_param("name", header="content-type")
    assert isinstance(raw_name, str) and str(make_header(decode_header(raw_name))) == attachment.filename


@pytest.mark.parametrize("filename", ["=?utf-8?b?DQpCY2M6IGV2aWxAZXZpbC5leGFtcGxl?=", "a\r\nBcc: evil@evil.example"])
def test_the_builder_never_writes_a_line_break_from_a_filename_that_bypassed_intake(filename: str) -> None:
    attachment = AttachmentFile(filename=filename, content_type="text/plain", data=b"x")
    job = JobContent("job", TEMPLATE, "service@example.org", "s", "c", {"v": ""}, (), (attachment,))
    try:
        envelope = compose(RENDERER, job, address="will@example.com", name=None, variables=None, position=3, date=DATE)
    except TemplateError:
        return
    assert b"\r\nBcc:" not in envelope.data
    part = list(email.message_from_bytes(envelope.data, policy=policy.default).walk())[2]
    assert part.get_filename() == filename
