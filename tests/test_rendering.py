"""Templates: found by name only, sandboxed, strict, parsed into headers and body."""

from __future__ import annotations

from pathlib import Path

import pytest

from email_service.errors import TemplateError
from email_service.rendering import TemplateRenderer, is_valid_template_name, parse_eml

CONTEXT = {
    "date": "Thu, 14 Jun 2018 15:03:07 -0000",
    "from": "eleven@example.com",
    "to": "will@example.com",
    "subject": "Demogorgon",
    "content": "Run for your life",
    "name": "",
}


def test_default_template_renders_into_headers_and_body_not_a_header_block():
    rendered = TemplateRenderer().render("default", CONTEXT)
    assert rendered.header("Subject") == "Demogorgon"
    assert rendered.subtype == "plain"
    assert rendered.body == "Run for your life\n\n--\nEmail service\n"
    assert "From:" not in rendered.body and "Date:" not in rendered.body


@pytest.mark.parametrize(
    "name", ["../default", "../../etc/passwd", "Default", "a/b", "", "-x", "x" * 65, "default.eml"]
)
def test_names_outside_the_allowlist_are_refused(name: str):
    assert not is_valid_template_name(name)
    assert not TemplateRenderer().exists(name)
    with pytest.raises(TemplateError):
        TemplateRenderer().render(name, CONTEXT)


def test_templates_dir_comes_first_and_html_is_a_subtype(tmp_path: Path):
    (tmp_path / "default.eml").write_text(
        "Subject: [News] {{ subject }}\nContent-Type: text/html\n\n<p>{{ content }}</p>\n"
    )
    rendered = TemplateRenderer(tmp_path).render("default", CONTEXT)
    assert rendered.header("Subject") == "[News] Demogorgon"
    assert rendered.subtype == "html"
    assert rendered.body == "<p>Run for your life</p>\n"


def test_undefined_variable_is_an_error_naming_the_line(tmp_path: Path):
    (tmp_path / "strict.eml").write_text("Subject: x\n\nline\n{{ nope }}\n")
    with pytest.raises(TemplateError, match=r"line 4.*nope"):
        TemplateRenderer(tmp_path).render("strict", CONTEXT)


def test_sandbox_blocks_access_to_python_internals(tmp_path: Path):
    (tmp_path / "evil.eml").write_text("Subject: x\n\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    with pytest.raises(TemplateError):
        TemplateRenderer(tmp_path).render("evil", CONTEXT)


def test_content_is_data_not_template_code():
    rendered = TemplateRenderer().render("default", {**CONTEXT, "content": "{{ 7 * 7 }} {% raw %}"})
    assert rendered.body.startswith("{{ 7 * 7 }} {% raw %}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no blank line", "blank line"),
        ("Bcc: x@example.com\n\nbody", "may not be set"),
        ("Subject: a\nnot a header\n\nbody", "not a header line"),
        ("Content-Type: application/pdf\n\nbody", "unsupported Content-Type"),
        ("Subject: a\rBcc: x@example.com\n\nbody", "control character"),
    ],
)
def test_unsafe_or_malformed_eml_is_refused(text: str, message: str):
    with pytest.raises(TemplateError, match=message):
        parse_eml(text)


def test_service_headers_from_a_template_are_ignored_and_x_headers_kept():
    rendered = parse_eml("To: someone@else.com\nFrom: spoof@x.com\nX-Campaign: spring\n  sale\n\nbody")
    assert rendered.headers == (("X-Campaign", "spring sale"),)


@pytest.mark.parametrize(
    "value", ["1\nReply-To: attacker@example.net", "a\n\nbody forged early", "x\r\nBcc: y@example.net", "\u2028"]
)
def test_a_variable_cannot_add_header_lines(tmp_path: Path, value: str):
    (tmp_path / "ref.eml").write_text("Subject: {{ subject }}\nX-Ref: {{ ref }}\n\nBody {{ ref }}\n")
    with pytest.raises(TemplateError, match="a value in a header has a"):
        TemplateRenderer(tmp_path).render("ref", {**CONTEXT, "ref": value})


def test_the_same_value_is_fine_in_the_body(tmp_path: Path):
    (tmp_path / "ref.eml").write_text("Subject: {{ subject }}\n\nBody {{ ref }}\n")
    rendered = TemplateRenderer(tmp_path).render("ref", {**CONTEXT, "ref": "1\nReply-To: a@example.net"})
    assert rendered.headers == (("Subject", "Demogorgon"),)
    assert rendered.body == "Body 1\nReply-To: a@example.net\n"


def test_html_bodies_are_autoescaped_and_text_bodies_are_not(tmp_path: Path):
    (tmp_path / "page.eml").write_text("Content-Type: text/html; charset=utf-8\n\n<p>{{ content }}</p>\n")
    (tmp_path / "plain.eml").write_text("Subject: s\n\n{{ content }}\n")
    context = {**CONTEXT, "content": "<script>alert(1)</script> & co"}
    assert TemplateRenderer(tmp_path).render("page", context).body == (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>\n"
    )
    assert TemplateRenderer(tmp_path).render("plain", context).body == "<script>alert(1)</script> & co\n"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("Subject: x\n\n{% if %}\n", r"syntax error \(line 3\)"),
        ("Subject: {{ x\n\nbody\n", r"syntax error \(line 1\)"),
        ("Subject: x\n\nline\n{{ count + 1 }}\n", r"does not render \(line 4\)"),
        ("Subject: x\n\n{{ 1 / 0 }}\n", "division by zero"),
    ],
)
def test_syntax_and_runtime_errors_are_template_errors_with_their_line(tmp_path: Path, source: str, message: str):
    (tmp_path / "broken.eml").write_text(source)
    renderer = TemplateRenderer(tmp_path)
    assert renderer.exists("broken")
    with pytest.raises(TemplateError, match=message):
        renderer.render("broken", {**CONTEXT, "count": "x"})
