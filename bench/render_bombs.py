"""What the sandbox's bounds cost and hold: template bombs against the render budget, and ordinary templates.

(1) Each bomb of tests/unit/message/test_render_bombs.py (templates, then variables), rendered once for
    its time (how far past the 2 s deadline it ran, for those stopped by it) and once under tracemalloc
    for the memory it made at its peak; the worst of each.
(2) The render cost of ordinary templates, per message: the built-in `default` .eml, and a newsletter
    with a 20-item loop, filters, a comparison and a `%` format; the service's TemplateRenderer beside
    the same templates in Jinja's plain SandboxedEnvironment (the baseline), in the same process.

(3) The six heaviest bombs posted at once to `email-service serve` (one gunicorn process, SQLite), while
    `/healthz` is polled: each bomb's answer time, /healthz's, and how much the process's peak resident
    memory grew; --serve-runs times.

`--costs-only` runs (2) alone, so that the same script can measure the code before the bounds:
    PYTHONPATH=<older checkout>/src .venv/bin/python bench/render_bombs.py --costs-only

    .venv/bin/python bench/render_bombs.py
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from email_service.message.rendering import TemplateRenderer, TemplateSource

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONTEXT = {
    "to": "reader@example.com",
    "from": "news@example.org",
    "name": "Will",
    "subject": "spring news",
    "content": "Run for your life. " * 20,
    "date": "Mon, 07 Dec 2026 12:00:00 +0000",
    "products": [{"name": f"item {i}", "price": i * 1.5, "tags": ["new", "sale"]} for i in range(20)],
}
NEWSLETTER_HTML = (
    "<h1>{{ subject|title }}</h1><table>{% for p in products %}<tr><td>{{ loop.index }}</td>"
    "<td>{{ p.name|upper }}</td><td>{{ '%.2f'|format(p.price) }}</td><td>{{ p.tags|join(', ') }}</td>"
    "{% if p.price > 10 %}<td><b>deal</b></td>{% endif %}</tr>{% endfor %}</table><p>{{ content }}</p>"
)


def best_cpu(run: Callable[[], object], count: int, repeat: int) -> float:
    """The least CPU time of ``repeat`` runs of ``count`` calls, per call, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(count):
            run()
        times.append((time.process_time() - start) / count)
    return min(times)


def bombs() -> None:
    from tests.unit.message.test_render_bombs import BOMBS, VARIABLE_BOMBS

    from email_service.message.render_budget import MAX_RENDER_SECONDS

    renderer = TemplateRenderer()
    worst_past, worst_peak = 0.0, 0
    print(f"{'seconds':>8} {'past':>7} {'peak MB':>8}  bomb")
    for html, variables in [(bomb, {}) for bomb in BOMBS] + VARIABLE_BOMBS:
        source = TemplateSource(name="bomb", origin="draft", html=html)
        context = {**CONTEXT, **variables}
        started = time.monotonic()
        reason = _refusal(renderer, source, context)
        seconds = time.monotonic() - started
        tracemalloc.start()
        _refusal(renderer, source, context)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        past = seconds - MAX_RENDER_SECONDS if "took more than" in reason else 0.0
        worst_past, worst_peak = max(worst_past, past), max(worst_peak, peak)
        print(f"{seconds:8.3f} {past:+7.3f} {peak / 1e6:8.1f}  {html[:70]!r} -> {reason[:60]}")
    print(f"\nworst time past the deadline: {worst_past * 1000:.0f} ms;", end=" ")
    print(f"worst peak of made values: {worst_peak / 1e6:.1f} MB")


def _refusal(renderer: TemplateRenderer, source: TemplateSource, context: dict[str, Any]) -> str:
    try:
        renderer.render(source, context)
    except Exception as exc:  # every bomb must be refused: the reason is what is reported
        return str(exc)
    return "RENDERED (not refused)"


def costs(count: int, repeat: int) -> None:
    renderer = TemplateRenderer()
    default = renderer.file_source("default")
    assert default is not None and default.eml is not None
    newsletter = TemplateSource(
        name="news", origin="stored", version=1, stored_id=1, subject="{{ subject }}", html=NEWSLETTER_HTML
    )
    plain = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
    plain_default = plain.from_string(default.eml.partition("\n\n")[2])
    plain_newsletter = plain.from_string(NEWSLETTER_HTML)
    print(f"{'template':<12} {'service µs':>10} {'plain sandbox µs':>17} {'ratio':>6}")
    for name, source, baseline in (("default", default, plain_default), ("newsletter", newsletter, plain_newsletter)):
        service = best_cpu(lambda source=source: renderer.render(source, CONTEXT), count, repeat)
        plain_cost = best_cpu(lambda baseline=baseline: baseline.render(CONTEXT), count, repeat)
        print(f"{name:<12} {service * 1e6:10.1f} {plain_cost * 1e6:17.1f} {service / plain_cost:6.2f}")


def serve(runs: int) -> None:
    import tempfile

    from tests.support.bombs_at_once import bombs_at_once, one_worker_serve

    for run in range(1, runs + 1):
        with tempfile.TemporaryDirectory() as folder, one_worker_serve(Path(folder)) as api:
            measured = bombs_at_once(api)
        statuses = sorted({status for status, _ in measured.answers})
        answers = ", ".join(f"{seconds:.2f}" for _, seconds in sorted(measured.answers, key=lambda a: a[1]))
        print(
            f"serve run {run}: answers {statuses} in {answers} s; /healthz at worst {max(measured.health):.2f} s",
            end="",
        )
        print(f" ({len(measured.health)} polls); peak resident memory grew {measured.grown / 1e6:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--costs-only", action="store_true", help="only (2), e.g. against older code")
    parser.add_argument("--count", type=int, default=500, help="renders per timed run")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs; the best is kept")
    parser.add_argument("--serve-runs", type=int, default=4, help="runs of (3)")
    args = parser.parse_args()
    if not args.costs_only:
        bombs()
        print()
        serve(args.serve_runs)
        print()
    costs(args.count, args.repeat)


if __name__ == "__main__":
    main()
