"""What one message's render may spend: time, loop steps, output, and the memory its values take.

A template and its variables are data from callers, so every bound holds against the worst input. One
``RenderBudget`` covers all the parts of a message (subject, text, HTML, the text derived from the HTML),
so a message's render ends within MAX_RENDER_SECONDS whatever its parts do. The sandbox charges every
string and container a template makes to it, and checks the deadline at every step a template can
repeat (a loop's iteration, a call, a filter, an attribute, an operator, an output).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from jinja2.utils import Namespace

from email_service.errors import RenderLimit

MAX_RENDER_SECONDS = 2.0
MAX_OUTPUT_CHARS = 1_000_000  # per message, its parts together: 10 times what Gmail shows before clipping
MAX_ALLOCATED_BYTES = 16_000_000  # strings and containers a message's render makes, added up
MAX_ITEMS = 200_000  # items of one list, tuple, set or dict a template makes or works on
MAX_NODES = 1_000_000  # values reachable from one value a template compares, sorts or prints
MAX_LOOP_STEPS = 200_000  # loop iterations per message
MAX_INT_BITS = 100_000

_SIZED = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_SMALL_SCALARS = {float: 50, bool: 5, type(None): 4, complex: 50}


class _Current(threading.local):
    budget: RenderBudget | None = None


active = _Current()  # this thread's render under way, if any


class RenderBudget:
    """The bounds of one message's render, and what it has spent of them."""

    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS
        self.steps = 0
        self.output = 0
        self.allocated = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimit(f"rendering took more than {MAX_RENDER_SECONDS:g} s")

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_LOOP_STEPS:
            raise RenderLimit(f"more than {MAX_LOOP_STEPS} loop steps")
        if time.monotonic() > self.deadline:
            self.check_time()

    def add_output(self, chars: int) -> None:
        self.output += chars
        if self.output > MAX_OUTPUT_CHARS:
            raise RenderLimit(f"the rendered message is over {MAX_OUTPUT_CHARS} characters")

    def charge(self, value: Any) -> None:
        """Count ``value``, just made by the template, against the memory a render may take."""
        if type(value) is str:
            self.allocated += sys.getsizeof(value)
            if self.allocated > MAX_ALLOCATED_BYTES:
                self.charge_bytes(0)  # raises
        elif isinstance(value, _SIZED):
            if not isinstance(value, str | bytes | bytearray) and len(value) > MAX_ITEMS:
                raise RenderLimit(f"a collection of {len(value)} items is over {MAX_ITEMS}")
            self.charge_bytes(sys.getsizeof(value))

    def charge_bytes(self, count: int) -> None:
        self.allocated += count
        if self.allocated > MAX_ALLOCATED_BYTES:
            raise RenderLimit(f"the template made more than {MAX_ALLOCATED_BYTES // 1_000_000} MB of values")


def current() -> RenderBudget:
    """The budget of the render under way in this thread; a fresh one outside any (a compile-time fold)."""
    budget = active.budget
    return budget if budget is not None else RenderBudget()


class message_render:
    """One budget for everything rendered inside, for one message (nested uses share the outer one)."""

    __slots__ = ("owner",)

    def __enter__(self) -> RenderBudget:
        self.owner = active.budget is None
        if self.owner:
            active.budget = RenderBudget()
        assert active.budget is not None
        return active.budget

    def __exit__(self, *exc: object) -> None:
        if self.owner:
            active.budget = None


def check_time() -> None:
    """Stop a render under way in this thread once past its deadline; nothing outside a render."""
    budget = active.budget
    if budget is not None:
        budget.check_time()


def measure(value: Any, max_chars: int = MAX_OUTPUT_CHARS) -> int:
    """About how many characters ``str(value)`` makes (never fewer), computed without making it.

    RenderLimit when that is over ``max_chars``, or when more than MAX_NODES values are reachable from
    ``value`` (a list holding itself a thousand times a thousand times costs nothing to build, and a
    billion to print or compare). Each distinct value is visited once, so the cost is that of the
    values that exist, not of the tree they stand for.
    """
    kind = type(value)
    if kind is str:
        chars = len(value)
    elif kind is int:
        chars = value.bit_length() // 3 + 2
    elif kind in _SMALL_SCALARS:
        chars = _SMALL_SCALARS[kind]
    else:
        chars = _Measure(max_chars).visit(value)[1]
    if chars > max_chars:
        raise RenderLimit(f"a value of about {chars} characters is over {max_chars}")
    return chars


class _Measure:
    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.seen: dict[int, tuple[int, int]] = {}

    def visit(self, value: Any) -> tuple[int, int]:
        """(values reachable, characters of its repr) of ``value``."""
        if isinstance(value, str | bytes | bytearray):
            return 1, len(value) + 3  # its repr; the output's own bound catches what escaping adds
        if isinstance(value, bool) or value is None:
            return 1, 5
        if isinstance(value, int):
            return 1, value.bit_length() // 3 + 2
        if isinstance(value, float | complex):
            return 1, 50
        children = _children(value)
        if children is None:
            return 1, 200  # a macro, a cycler, a loop: a short description
        key = id(value)
        if key in self.seen:
            return self.seen[key]
        self.seen[key] = (1, 5)  # a value inside itself shows as [...]
        nodes, chars = 1, 2
        for child in children:
            child_nodes, child_chars = self.visit(child)
            nodes, chars = nodes + child_nodes, chars + child_chars + 2
            if nodes > MAX_NODES:
                raise RenderLimit(f"a value holding more than {MAX_NODES} values")
            if chars > self.max_chars:
                raise RenderLimit(f"a value of more than {self.max_chars} characters")
        self.seen[key] = (nodes, chars)
        return nodes, chars


def _children(value: Any) -> Any:
    if isinstance(value, dict):
        return (item for pair in value.items() for item in pair)
    if isinstance(value, list | tuple | set | frozenset):
        return value
    if isinstance(value, Namespace):
        return _children(object.__getattribute__(value, "_Namespace__attrs"))
    return None
