"""Templates: found by name only, sandboxed, strict, parsed into headers and body."""

from __future__ import annotations

from pathlib import Path

import pytest

from email_service.errors import TemplateError
from email_service.message.rendering import RenderedEmail, TemplateRenderer, TemplateSource, is_valid_template_name

CONTEXT = {
    "date": "Thu, 14 Jun 2018 15:03:07 -0000",
    "from": "eleven@example.com",
    "to": "will@example.com",
    "subject": "Demogorgon",
    "content": "Run for your life",
    "name": "",
}


def render_file(renderer: TemplateRenderer, name: str, context: dict[str, str]) -> RenderedEmail:
    source = renderer.file_source(name)
    if source is None:
        raise TemplateError(f"unknown template {name!r}")
    return renderer.render(source, context)


def stored(**parts: str) -> TemplateSource:
    return TemplateSource(name="t", origin="draft", **parts)


def test_default_template_renders_into_headers_and_body_not_a_header_block():
    rendered = render_file(TemplateRenderer(), "default", CONTEXT)
    assert rendered.header("Subject") == "Demogorgon"
    assert rendered.html is None
    assert rendered.text == "Run for your life\n\n--\nEmail service\n"
    assert "From:" not in rendered.text and "Date:" not in rendered.text


def test_stored_versions_of_one_name_and_number_in_two_scopes_are_compiled_apart():
    renderer = TemplateRenderer()
    alphas, betas = (
        TemplateSource(name="news", origin="stored", version=1, stored_id=row, text=text)
        for row, text in ((7, "alpha's {{ content }}"), (8, "beta's {{ content }}"))
    )
    assert renderer.render(alphas, CONTEXT).text == "alpha's Run for your life"
    assert renderer.render(betas, CONTEXT).text == "beta's Run for your life", "not alpha's compiled template"


@pytest.mark.parametrize(
    "name", ["../default", "../../etc/passwd", "Default", "a/b", "", "-x", "x" * 65, "default.eml"]
)
def test_names_outside_the_allowlist_are_refused(name: str):
    assert not is_valid_template_name(name)
    assert TemplateRenderer().file_source(name) is None


def test_templates_dir_comes_first_and_html_is_a_subtype(tmp_path: Path):
    (tmp_path / "default.eml").write_text(
        "Subject: [News] {{ subject }}\nContent-Type: text/html\n\n<p>{{ content }}</p>\n"
    )
    rendered = render_file(TemplateRenderer(tmp_path), "default", CONTEXT)
    assert rendered.header("Subject") == "[News] Demogorgon"
    assert rendered.html == "<p>Run for your life</p>\n"
    assert rendered.text == "Run for your life\n", "the text part is derived from the HTML"


def test_undefined_variable_is_an_error_naming_the_line(tmp_path: Path):
    (tmp_path / "strict.eml").write_text("Subject: x\n\nline\n{{ nope }}\n")
    with pytest.raises(TemplateError, match=r"line 4.*nope"):
        render_file(TemplateRenderer(tmp_path), "strict", CONTEXT)


def test_sandbox_blocks_access_to_python_internals(tmp_path: Path):
    (tmp_path / "evil.eml").write_text("Subject: x\n\n{{ ''.__class__.__mro__[1].__subclasses__() }}\n")
    with pytest.raises(TemplateError):
        render_file(TemplateRenderer(tmp_path), "evil", CONTEXT)


def test_content_is_data_not_template_code():
    rendered = render_file(TemplateRenderer(), "default", {**CONTEXT, "content": "{{ 7 * 7 }} {% raw %}"})
    assert rendered.text is not None and rendered.text.startswith("{{ 7 * 7 }} {% raw %}\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no blank line", "blank line"),
        ("Bcc: x@example.com\n\nbody", "may not be set"),
        ("Subject: a\nnot a header\n\nbody", "not a header line"),
        ("Content-Type: application/pdf\n\nbody", "unsupported Content-Type"),
        # Jinja reads a lone CR of the source as a line break: the Bcc line is refused as a header.
        ("Subject: a\rBcc: x@example.com\n\nbody", "may not be set"),
    ],
)
def test_unsafe_or_malformed_eml_is_refused(text: str, message: str):
    with pytest.raises(TemplateError, match=message):
        TemplateRenderer().render(stored(eml=text), CONTEXT)


def test_service_headers_from_a_template_are_ignored_and_x_headers_kept():
    eml = "To: someone@else.com\nFrom: spoof@x.com\nX-Campaign: spring\n  sale\n\nbody"
    rendered = TemplateRenderer().render(stored(eml=eml), CONTEXT)
    assert rendered.headers == (("X-Campaign", "spring sale"),)


@pytest.mark.parametrize(
    "value", ["1\nReply-To: attacker@example.net", "a\n\nbody forged early", "x\r\nBcc: y@example.net", "\u2028"]
)
def test_a_variable_cannot_add_header_lines(tmp_path: Path, value: str):
    (tmp_path / "ref.eml").write_text("Subject: {{ subject }}\nX-Ref: {{ ref }}\n\nBody {{ ref }}\n")
    with pytest.raises(TemplateError, match="a value in a header has a"):
        render_file(TemplateRenderer(tmp_path), "ref", {**CONTEXT, "ref": value})


def test_the_same_value_is_fine_in_the_body(tmp_path: Path):
    (tmp_path / "ref.eml").write_text("Subject: {{ subject }}\n\nBody {{ ref }}\n")
    rendered = render_file(TemplateRenderer(tmp_path), "ref", {**CONTEXT, "ref": "1\nReply-To: a@example.net"})
    assert rendered.headers == (("Subject", "Demogorgon"),)
    assert rendered.text == "Body 1\nReply-To: a@example.net\n"


def test_html_bodies_are_autoescaped_and_text_bodies_are_not(tmp_path: Path):
    (tmp_path / "page.eml").write_text("Content-Type: text/html; charset=utf-8\n\n<p>{{ content }}</p>\n")
    (tmp_path / "plain.eml").write_text("Subject: s\n\n{{ content }}\n")
    context = {**CONTEXT, "content": "<script>alert(1)</script> & co"}
    assert render_file(TemplateRenderer(tmp_path), "page", context).html == (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>\n"
    )
    assert render_file(TemplateRenderer(tmp_path), "plain", context).text == "<script>alert(1)</script> & co\n"


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
    assert "broken" in renderer.file_names()
    with pytest.raises(TemplateError, match=message):
        render_file(renderer, "broken", {**CONTEXT, "count": "x"})


def test_a_stored_template_renders_subject_text_and_html_with_html_autoescaped():
    source = stored(subject="Hi {{ name }}", text="Dear {{ name }}: {{ content }}", html="<p>{{ content }}</p>")
    rendered = TemplateRenderer().render(source, {**CONTEXT, "name": "Jo", "content": "<b>&</b>"})
    assert rendered.headers == (("Subject", "Hi Jo"),)
    assert rendered.text == "Dear Jo: <b>&</b>"
    assert rendered.html == "<p>&lt;b&gt;&amp;&lt;/b&gt;</p>"


def test_html_only_gets_a_derived_text_part():
    rendered = TemplateRenderer().render(
        stored(html="<h1>Title</h1><p>See <a href='https://x.org'>this</a></p>"), CONTEXT
    )
    assert rendered.text is not None
    assert "Title" in rendered.text and "this (https://x.org)" in rendered.text and "<" not in rendered.text


def test_a_stored_subject_cannot_add_header_lines():
    with pytest.raises(TemplateError, match="a value in a header") as caught:
        TemplateRenderer().render(stored(subject="{{ name }}", text="x"), {**CONTEXT, "name": "a\nBcc: x@y.z"})
    assert caught.value.part == "subject"


def test_a_template_extends_a_layout_of_the_layouts_folder(tmp_path: Path):
    (tmp_path / "layouts").mkdir()
    (tmp_path / "layouts" / "brand.html").write_text("<div class=brand>{% block content %}{% endblock %}</div>")
    renderer = TemplateRenderer(tmp_path)
    html = '{% extends "brand.html" %}{% block content %}<p>{{ content }}</p>{% endblock %}'
    assert renderer.render(stored(html=html), CONTEXT).html == "<div class=brand><p>Run for your life</p></div>"
    built_in = '{% extends "base.html" %}{% block content %}<p>{{ content }}</p>{% endblock %}'
    rendered = renderer.render(stored(html=built_in), CONTEXT)
    assert (
        rendered.html is not None
        and "<p>Run for your life</p>" in rendered.html
        and "<title>Demogorgon" in rendered.html
    )


@pytest.mark.parametrize("layout", ["../default.eml", "/etc/passwd", "../../../../etc/passwd", "default.eml"])
def test_a_layout_outside_the_layouts_folders_is_not_found(tmp_path: Path, layout: str):
    (tmp_path / "default.eml").write_text("Subject: secret\n\nsecret")
    with pytest.raises(TemplateError, match="unknown layout"):
        TemplateRenderer(tmp_path).render(stored(html=f'{{% extends "{layout}" %}}'), CONTEXT)


def test_render_errors_name_the_part_line_and_variable():
    with pytest.raises(TemplateError) as caught:
        TemplateRenderer().render(stored(text="ok", html="<p>\n{{ missing_code }}</p>"), CONTEXT)
    assert (caught.value.part, caught.value.line, caught.value.variable) == ("html", 2, "missing_code")
    assert caught.value.detail() == {
        "field": "template.html",
        "reason": str(caught.value),
        "line": 2,
        "variable": "missing_code",
    }


def test_syntax_errors_are_found_by_check_with_their_part():
    with pytest.raises(TemplateError, match=r"syntax error \(line 2\)") as caught:
        TemplateRenderer().check(stored(text="fine", html="<p>\n{% for %}</p>"))
    assert caught.value.part == "html"


def test_a_template_needs_a_body():
    with pytest.raises(TemplateError, match="no body"):
        TemplateRenderer().check(stored(subject="only a subject"))
