"""The Jinja sandbox templates run in, with bounds: a template is data from callers, and must not be
able to make a worker or the API spend unbounded memory or time.

On top of Jinja's sandbox (no access to Python internals): the output of a part is capped, string
and list repetition and powers are capped before they are computed, `range` is bounded and counts
against a per-render budget of loop steps, and the render stops past a time limit (checked at each
step of a `range` loop and at each piece of output).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

from jinja2 import Template
from jinja2.sandbox import SandboxedEnvironment

from email_service.errors import RenderLimit

MAX_OUTPUT_CHARS = 2_000_000  # per rendered part
MAX_RENDER_SECONDS = 2.0
MAX_LOOP_STEPS = 200_000  # `range` steps per render
MAX_EXPONENT = 256

_budget = threading.local()


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)  # made-up text of any length is no use in an e-mail

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise RenderLimit(f"exponent {right} is over {MAX_EXPONENT}")
        if operator == "*":
            size = _repeated_size(left, right) or _repeated_size(right, left)
            if size > MAX_OUTPUT_CHARS:
                raise RenderLimit(f"a repetition of {size} items is over {MAX_OUTPUT_CHARS}")
        return super().call_binop(context, operator, left, right)


def render_bounded(template: Template, context: dict[str, Any]) -> str:
    """Render ``template`` within the bounds; RenderLimit when it goes past one."""
    _budget.deadline = time.monotonic() + MAX_RENDER_SECONDS
    _budget.steps = 0
    pieces: list[str] = []
    size = 0
    try:
        for piece in template.generate(context):
            size += len(piece)
            if size > MAX_OUTPUT_CHARS:
                raise RenderLimit(f"the rendered text is over {MAX_OUTPUT_CHARS} characters")
            _check_time()
            pieces.append(piece)
    finally:
        _budget.deadline = None
    return "".join(pieces)


def _bounded_range(*args: int) -> Iterator[int]:
    numbers = range(*args)
    if len(numbers) > MAX_LOOP_STEPS:
        raise RenderLimit(f"range of {len(numbers)} numbers is over {MAX_LOOP_STEPS}")
    for number in numbers:
        _budget.steps = getattr(_budget, "steps", 0) + 1
        if _budget.steps > MAX_LOOP_STEPS:
            raise RenderLimit(f"more than {MAX_LOOP_STEPS} loop steps")
        _check_time()
        yield number


def _check_time() -> None:
    deadline = getattr(_budget, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise RenderLimit(f"rendering took more than {MAX_RENDER_SECONDS} s")


def _repeated_size(sequence: Any, times: Any) -> int:
    if isinstance(sequence, str | bytes | list | tuple) and isinstance(times, int):
        return len(sequence) * times
    return 0
