"""No template and no variables make a render spend more than its deadline, or more memory than its budget:
the bombs an attacker with a valid key tried, their variants, and generated ones."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from email_service.errors import TemplateError
from email_service.message.render_budget import MAX_RENDER_SECONDS
from email_service.message.rendering import TemplateRenderer, TemplateSource
from email_service.services import intake
from email_service.storage import jobs
from tests.support.inline import Recipient, counts, inline_services
from tests.support.smtp_sink import SMTPSink

CONTEXT = {"to": "a@example.com", "from": "s@example.org", "name": "", "subject": "s", "content": "c", "date": "d"}
# Slack for a loaded machine: the render itself stops at the deadline plus a check's worth of work.
MOST_SECONDS = MAX_RENDER_SECONDS + 1.0
MOST_TRACED_BYTES = 60_000_000

# Neither steps much nor makes anything large: the deadline stops them, or the budget the many small values
# the first one's calls return.
DEADLINE_ONLY = [
    "{% macro f(n) %}{% if n %}{% set _ = f(n - 1) %}{% set _ = f(n - 1) %}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% set s = 'a' * 1000 ~ 'b' %}{% set t = 'a' * 999000 %}{% for i in range(200000) %}{% if s in t %}{% endif %}"
    "{% endfor %}",
]
TREE = "{% set a = ['x'] * 1000 %}{% set b = [a] * 1000 %}{% set c = [b] * 1000 %}"
BOMBS = [
    "{% for a in 'x'*650 %}{% for b in 'x'*650 %}{% for c in 'x'*650 %}{% endfor %}{% endfor %}{% endfor %}done",
    "{% for a in 'x'*2000 %}{% for b in 'x'*2000 %}{{ a ~ b }}{% endfor %}{% endfor %}",
    "{{ 'x'.ljust(200000000)|length }}",
    "{{ 'x'.rjust(200000000)|length }}",
    "{{ 'x'.center(200000000)|length }}",
    "{{ 'x'.zfill(200000000)|length }}",
    "{{ 'x'|center(200000000)|length }}",
    "{{ ('\t' * 100000).expandtabs(100000)|length }}",
    "{{ '%0200000000d'|format(1)|length }}",
    "{{ ('%0200000000d' % 1)|length }}",
    "{{ ('%.200000000f' % 1.5)|length }}",
    "{{ ('%*d' % (200000000, 1))|length }}",
    "{{ '{0:>200000000}'.format('a')|length }}",
    "{{ '{x:>200000000}'.format_map({'x': 1})|length }}",
    "{{ '{0:>{1}}'.format('a', 200000000)|length }}",
    "{% set s = 'x' * 100000 %}{{ s.replace('x', s)|length }}",
    "{% set s = 'x' * 100000 %}{{ s|replace('x', s)|length }}",
    "{% set s = 'x' * 100000 %}{{ s.replace('', s)|length }}",
    "{% set ns = namespace(x='x') %}{% for i in range(60) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
    "{% set ns = namespace(x='x') %}{% for i in range(60) %}{% set ns.x = ns.x + ns.x %}{% endfor %}{{ ns.x|length }}",
    "{% set ns = namespace(x='x') %}{% for i in range(60) %}{% set ns.x = ns.x * 2 %}{% endfor %}{{ ns.x|length }}",
    "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}",
    "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l * 2 %}{% endfor %}{{ ns.l|length }}",
    "{% set l = [1] %}{% for i in range(60) %}{% set _ = l.extend(l) %}{% endfor %}{{ l|length }}",
    "{% set l = [] %}{% for i in range(100000) %}{% set _ = l.append('x' * 999999) %}{% endfor %}{{ l|length }}",
    "{% set ns = namespace(y='x') %}{% for i in range(60) %}{% set ns.y %}{{ ns.y }}{{ ns.y }}{% endset %}"
    "{% endfor %}{{ ns.y|length }}",
    "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}{% endif %}{% endmacro %}"
    "{{ d('x', 60) }}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% for x in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}",
    *DEADLINE_ONLY,
    TREE + "{{ c }}",
    TREE + "{{ c|tojson|length }}",
    TREE + "{{ c|string|length }}",
    TREE + "{{ c|pprint|length }}",
    TREE + "{{ c ~ '' }}",
    TREE + "{{ c == [b] * 1000 }}",
    TREE + "{{ a in [b] * 1000 }}",
    TREE + "{{ (c|list)|sort|length }}",
    TREE + "{{ {c|list: 1} }}",
    TREE + "{% set d = [b] * 1000 %}{{ [c, d].index(d) }}",
    TREE + "{% set d = [b] * 1000 %}{{ [c, d].sort() }}",
    TREE + "{% for x in [c, [b] * 1000] %}{{ loop.changed(x) }}{% endfor %}",
    "{% set ns = namespace(x=[]) %}{% for i in range(100) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}{{ ns.x }}",
    "{% set ns = namespace(x=10 ** 200) %}{% for i in range(60) %}{% set ns.x = ns.x * ns.x %}{% endfor %}{{ 1 }}",
    "{{ ((10 ** 200) ** 256) ** 256 }}",
    "{{ (1).to_bytes(200000000, 'big')|length }}",
    "{{ ('a\n' * 100000)|indent(100000)|length }}",
    "{{ ('a\n' * 100000)|indent('x' * 100000)|length }}",
    "{{ ('x ' * 100000)|wordwrap(1, wrapstring='y' * 100000)|length }}",
    "{{ [1]|batch(200000000, 0)|list|length }}",
    "{{ [1]|slice(200000000, 0)|list|length }}",
    "{{ ([[1] * 1000] * 1000)|sum(start=[])|length }}",
    "{{ (['x' * 100000] * 1000)|join|length }}",
    "{{ ('y' * 100000).join('x' * 1000)|length }}",
    "{{ ', '.join(['x' * 100000] * 100)|length }}",
    "{{ ('x' * 100000).translate({120: 'y' * 100000})|length }}",
    "{{ ('a,' * 900000).split(',')|length }}",
    "{{ ('\u20ac' * 900000)|list|length }}",
    "{{ ('x' * 900000)[::-1] * 2 }}",
    "{{ range(200000)|map('string')|map('center', 1000)|join|length }}",
    "{% for i in range(199999) %}{{ 'x' ~ i }}{% endfor %}",
]
VARIABLE_BOMBS: list[tuple[str, dict[str, Any]]] = [
    ("{{ s * 3 }}", {"s": "x" * 900_000}),
    ("{{ s ~ s }}", {"s": "x" * 900_000}),
    ("{{ l|sort|length }}", {"l": list(range(5_000_000))}),
    ("{{ l|unique|list|length }}", {"l": list(range(5_000_000))}),
    ("{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}", {"l": list(range(100_000))}),
    ("{{ d.items()|list|length }}", {"d": {str(i): i for i in range(1_000_000)}}),
    ("{{ s.replace('x', s) }}", {"s": "x" * 10_000}),
    ("{{ s|e|length }}{{ s|e|e|e }}", {"s": "<" * 900_000}),
]


# Compiling costs about 25 µs and 3 KB a token in a template's tags (100,000 `{{a}}` took 6 s and 1 GB).
COMPILE_BOMBS = [
    "{{a}}" * 100_000,
    "{%if a%}x{%endif%}" * 27_000,
    "{%for x in a%}{{x}}{%endfor%}" * 17_000,
    "{{" + "(" * 20_000 + "1" + ")" * 20_000 + "}}",
    "{%if a%}" * 600 + "x" + "{%endif%}" * 600,
    "{{ a" + ".b" * 1400 + " }}",
    "{{ " + "+".join(["a"] * 150_000) + " }}",
    "{%macro m()%}{%endmacro%}" + "{{m()}}" * 60_000,
]


def _render(html: str, variables: dict[str, Any] | None = None) -> Any:
    source = TemplateSource(name="t", origin="draft", html=html)
    return TemplateRenderer().render(source, {**CONTEXT, **(variables or {})})


def _render_within_bounds(html: str, variables: dict[str, Any] | None = None) -> None:
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(TemplateError):
            _render(html, variables)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < MOST_SECONDS, (html, elapsed)
    assert peak < MOST_TRACED_BYTES, (html, peak)


@pytest.mark.parametrize("html", BOMBS)
def test_a_template_bomb_is_stopped_within_the_deadline_and_the_memory_budget(html: str):
    _render_within_bounds(html)


@pytest.mark.parametrize(("html", "variables"), VARIABLE_BOMBS)
def test_variables_cannot_make_an_ordinary_looking_template_a_bomb(html: str, variables: dict[str, Any]):
    _render_within_bounds(html, variables)


@pytest.mark.parametrize("html", COMPILE_BOMBS, ids=range(len(COMPILE_BOMBS)))
def test_a_template_too_large_to_compile_cheaply_is_refused_before_it_is_compiled(html: str):
    _render_within_bounds(html)


def test_a_large_ordinary_template_compiles():
    rows = "".join(f"<tr><td>{{{{ p{i}.name|upper }}}}</td><td>{{{{ p{i}.price }}}}</td></tr>" for i in range(150))
    html = f"<table>{rows}</table>{{% for p in items %}}{{{{ p }}}}{{% endfor %}}"
    variables = {f"p{i}": {"name": "n", "price": i} for i in range(150)}
    assert _render(html, {**variables, "items": [1, 2]}).html.count("<tr>") == 150


WIDTHS = st.integers(1_000_001, 10**12)
STRETCHERS = st.one_of(
    st.builds(lambda m, w: f"{{{{ 'ab'.{m}({w})|length }}}}", st.sampled_from(["ljust", "rjust", "center"]), WIDTHS),
    st.builds(lambda w, t: f"{{{{ '%0{w}{t}'|format(1)|length }}}}", WIDTHS, st.sampled_from("dfxoeg")),
    st.builds(lambda w, t: f"{{{{ ('%.{w}{t}' % 2.5)|length }}}}", WIDTHS, st.sampled_from("fegs")),
    st.builds(
        lambda w, a: f"{{{{ '{{0:{a}{w}}}'.format(7)|length }}}}", WIDTHS, st.sampled_from(["", ">", "<", "*^", "0="])
    ),
    st.builds(lambda w: f"{{{{ 'a'|center({w})|length }}}}", WIDTHS),
    st.builds(lambda w: f"{{{{ ('a\\n' * 10)|indent({w})|length }}}}", WIDTHS),
)
DOUBLINGS = st.builds(
    lambda start, step, n: (
        f"{{% set ns = namespace(x={start}) %}}{{% for i in range({n}) %}}{{% set ns.x = {step} %}}{{% endfor %}}"
        "{{ ns.x|length }}"
    ),
    st.sampled_from(["'ab'", "[1, 2]", "('x',)"]),
    st.sampled_from(
        ["ns.x ~ ns.x", "ns.x + ns.x", "ns.x * 2", "2 * ns.x", "ns.x * 3", "[ns.x, ns.x]|sum(start=ns.x[:0])"]
    ),
    st.integers(30, 200),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(STRETCHERS, DOUBLINGS))
def test_generated_stretchers_and_doublings_are_refused_before_they_are_made(html: str):
    _render_within_bounds(html)


def test_ordinary_templates_render_as_before():
    html = (
        "{% set items = [{'n': 'b', 'p': 2}, {'n': 'a', 'p': 1}] %}<ul>{% for i in items|sort(attribute='p') %}"
        "<li>{{ loop.index }} {{ i.n|upper }} {{ '%05.1f'|format(i.p) }} {{ '{:>4}'.format(i.n) }}</li>{% endfor %}"
        "</ul>{{ ['x', 'y']|join(', ') }} {{ 'ab' * 2 }} {{ 2 ** 10 }} {{ 'a-b'.split('-')|length }} {{ 'a' ~ 1 }}"
    )
    assert _render(html).html == ("<ul><li>1 A 001.0    a</li><li>2 B 002.0    b</li></ul>x, y abab 1024 2 a1")


def test_a_worker_fails_the_recipient_whose_variables_are_a_bomb_and_sends_the_others(tmp_path: Path, sink: SMTPSink):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "rows.eml").write_text(
        "Subject: {{ subject }}\n\n{% for a in rows %}{% for b in rows %}{{ a }}{% endfor %}{% endfor %}\n"
    )
    services = inline_services(tmp_path, mail_port=sink.port, templates_dir=templates)
    bomb = {"rows": list(range(100_000))}
    accepted = intake.accept_job(
        services,
        intake.JobRequest(
            recipients=[
                Recipient("a@example.com", variables={"rows": [1, 2]}),
                Recipient("bomb@example.com", variables=bomb),
                Recipient("c@example.com", variables={"rows": [3]}),
            ],
            subject="Rows",
            template="rows",
        ),
    )
    started = time.monotonic()
    assert services.queue is not None
    services.queue.wake()
    assert time.monotonic() - started < MOST_SECONDS + 2
    assert counts(services, accepted.id) == {"sent": 2, "failed": 1}
    with services.sessions() as session:
        (failed,) = jobs.list_recipients(session, accepted.id, status="failed", after=None, limit=10)
    assert failed.address == "bomb@example.com" and "loop steps" in (failed.last_error or "")
