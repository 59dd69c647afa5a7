"""A job's options through the HTTP API on real servers: variables, attachments, Reply-To, X-* headers,
tags and metadata; bad options refused with nothing stored."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import psycopg
import pytest

from tests.support.servers import FeatureStack

PDF = bytes(range(256)) * 64  # 16 KB of every byte value


def _domain() -> str:
    return f"o-{uuid.uuid4().hex[:10]}.example.com"


def _rows(stack: FeatureStack, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.postgres_url.replace("+psycopg", "")) as connection:
        return connection.execute(sql, args).fetchall()


def test_every_option_reaches_every_message_and_attachments_are_stored_once(feature_stack: FeatureStack):
    domain = _domain()
    body = {
        "recipients": [
            {"email": f"r{i}@{domain}", "variables": {"code": f"C{i}"}} if i % 2 else f"r{i}@{domain}"
            for i in range(25)
        ],
        "subject": "Quarterly report",
        "content": "code {{ code }} stays text",
        "reply_to": "Desk@Example.org",
        "headers": {"X-Campaign": "q3", "x-ref": "r-42"},
        "tags": ["reports", "q3"],
        "metadata": {"batch": 42, "owner": "finance"},
        "variables": {"code": "none"},
        "attachments": [
            {"filename": "rapport été.pdf", "content": base64.b64encode(PDF).decode()},
            {"filename": "notes.txt", "content": base64.encodebytes(b"line\n" * 100).decode(),
             "content_type": "text/plain"},
        ],
    }  # fmt: skip
    answer = feature_stack.api.post_job(body)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]
    job = feature_stack.api.wait_until_completed(job_id)
    assert (job["tags"], job["metadata"], job["counts"]["sent"]) == (
        ["reports", "q3"],
        {"batch": 42, "owner": "finance"},
        25,
    )

    messages = feature_stack.messages_to(domain)
    assert len(messages) == 25
    for received in messages:
        message = received.message
        assert message["Reply-To"] == "Desk@example.org"
        assert (message["X-Campaign"], message["X-Ref"]) == ("q3", "r-42")
        assert message.get_content_type() == "multipart/mixed"
        files = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
        assert files == {"rapport été.pdf": PDF, "notes.txt": "line\n" * 100}
        assert [p.get_content_type() for p in message.iter_attachments()] == ["application/pdf", "text/plain"]
        assert "code {{ code }} stays text" in message.get_body(("plain",)).get_content()

    stored = _rows(
        feature_stack, "SELECT filename, length(data) FROM attachments WHERE job_id = %s ORDER BY position", job_id
    )
    assert stored == [("rapport été.pdf", len(PDF)), ("notes.txt", 500)], "one row per file, not per recipient"
    variables = _rows(
        feature_stack, "SELECT variables::text FROM recipients WHERE job_id = %s AND position = 1", job_id
    )
    assert variables == [('{"code": "C1"}',)]


def test_job_variables_are_merged_under_each_recipients(feature_stack: FeatureStack, tmp_path):
    name = f"merge-{uuid.uuid4().hex[:8]}"
    feature_stack.api.client.post("/api/templates", json={"name": name, "text": "{{ greeting }} {{ who }}"})
    domain = _domain()
    answer = feature_stack.api.post_job(
        {
            "recipients": [f"a@{domain}", {"email": f"b@{domain}", "variables": {"who": "Bob"}}],
            "subject": "s",
            "template": name,
            "variables": {"greeting": "Hello", "who": "everyone"},
        }
    )
    feature_stack.api.wait_until_completed(answer.json()["id"])
    bodies = {m.recipients[0]: m.message.get_content().strip() for m in feature_stack.messages_to(domain)}
    assert bodies == {f"a@{domain}": "Hello everyone", f"b@{domain}": "Hello Bob"}


GOOD = {"recipients": ["a@example.com"], "subject": "s", "content": "c"}
BAD_OPTIONS: dict[str, tuple[dict[str, Any], list[str]]] = {
    "Bcc header": ({"headers": {"Bcc": "x@example.com"}}, ["headers.Bcc"]),
    "Sender header": ({"headers": {"Sender": "x@example.com"}}, ["headers.Sender"]),
    "Return-Path header": ({"headers": {"Return-Path": "x@example.com"}}, ["headers.Return-Path"]),
    "From header": ({"headers": {"From": "ceo@example.com"}}, ["headers.From"]),
    "header line break": ({"headers": {"X-Ref": "a\r\nBcc: x@example.com"}}, ["headers.X-Ref"]),
    "bad reply_to": ({"reply_to": "not an address"}, ["reply_to"]),
    "reply_to non-ASCII local part": ({"reply_to": "jörg@example.org"}, ["reply_to"]),
    "attachment not base64": ({"attachments": [{"filename": "a.txt", "content": "%%%"}]}, ["attachments[0].content"]),
    "attachment path": (
        {"attachments": [{"filename": "../etc/passwd", "content": "eA=="}]}, ["attachments[0].filename"]
    ),
    "attachment type": (
        {"attachments": [{"filename": "a", "content": "eA==", "content_type": "evil\r\n"}]},
        ["attachments[0].content_type"],
    ),
    "attachments too large": (
        {"attachments": [{"filename": "big.bin", "content": base64.b64encode(b"x" * 10_000_001).decode()}]},
        ["attachments"],
    ),
    "attachment multipart": (
        {"attachments": [{"filename": "a.eml", "content": "eA==", "content_type": "multipart/mixed"}]},
        ["attachments[0].content_type"],
    ),
    "too many tags": ({"tags": [f"t{i}" for i in range(11)]}, ["tags"]),
    "metadata too large": ({"metadata": {"blob": "x" * 5000}}, ["metadata"]),
    "callback not http": ({"callback_url": "ftp://example.org/x"}, ["callback_url"]),
    "callback with credentials": ({"callback_url": "https://u:p@example.org/x"}, ["callback_url"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD_OPTIONS), ids=list(BAD_OPTIONS))
def test_bad_options_are_refused_and_nothing_is_stored(feature_stack: FeatureStack, case: str):
    options, fields = BAD_OPTIONS[case]
    subject = f"refused {uuid.uuid4().hex}"
    answer = feature_stack.api.post_job({**GOOD, "subject": subject, **options})
    assert answer.status_code == 422, answer.text
    assert [d["field"] for d in answer.json()["details"]] == fields
    assert _rows(feature_stack, "SELECT count(*) FROM jobs WHERE subject = %s", subject) == [(0,)]
