"""The Jinja sandbox templates run in, with bounds: a template is data from callers, and must not be
able to make a worker or the API spend unbounded memory or time.

On top of Jinja's sandbox (no access to Python internals), every operation a template can repeat or
use to make a large value goes through a check against the message's RenderBudget (render_budget.py):
each loop iteration, call, filter, test, attribute, item, operator, ``~`` and output checks the
deadline; an operation whose result size follows from its arguments (``ljust``, ``center``,
``replace``, ``format``, ``%``, ``*``, ``**``, ``+``, ``~``, ``join``, ``indent``, ``batch``…) is
refused before it runs when the result would be too large; every string and container made is charged
to the budget; and a value printed, compared or sorted may hold at most MAX_NODES values. So neither a
template nor its variables can hold a thread past the deadline or grow the process without bound.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from time import monotonic
from typing import Any

from jinja2 import Template, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import _PassArg, pass_context

from email_service.errors import RenderLimit
from email_service.message import render_budget
from email_service.message.render_budget import (
    MAX_ALLOCATED_BYTES,
    MAX_INT_BITS,
    MAX_ITEMS,
    MAX_OUTPUT_CHARS,
    RenderBudget,
    active,
    current,
    measure,
)

MAX_TAG_TOKENS = 3_000  # per template part: names, operators and literals in {{ }} and {% %}, some 800 tags
# Names no template can write (not identifiers): the filters the sandbox adds around loops and comparisons.
LOOP_GUARD = "loop-guard"
OPERAND_GUARD = "operand-guard"

# Filters that look at their input without copying it; any other gets at most MAX_ITEMS items.
_CHEAP_FILTERS = frozenset({"length", "count", "first", "last", "default", "d", "safe", "random", "items", "attr"})
# Filters that compare what their input holds, however deep: it may hold at most MAX_NODES values.
_DEEP_FILTERS = frozenset({"sort", "unique", "groupby", "dictsort", "min", "max", "sum"})
# Filters that make a string of their whole input: its printed size is bounded like an output's.
_STRINGIFYING_FILTERS = frozenset(
    {"string", "e", "escape", "forceescape", "pprint", "tojson", "urlencode", "xmlattr", "striptags", "urlize",
     "upper", "lower", "title", "capitalize", "trim", "wordcount", "center", "indent", "truncate", "wordwrap",
     "replace", "format"}
)  # fmt: skip
# Filters that take a string character by character, each one an item.
_CHARACTER_FILTERS = frozenset(
    {"list", "sort", "unique", "batch", "slice", "groupby", "min", "max", "map", "select", "reject", "selectattr",
     "rejectattr", "dictsort", "sum"}
)  # fmt: skip
_SCALARS = frozenset({str, int, float, bool, type(None)})
_CONTAINERS = frozenset({list, tuple, dict, set, frozenset})
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")
_NUMBERS = re.compile(r"\d+")


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%", "//"})

    def __init__(self, **options: Any) -> None:
        given_finalize = options.pop("finalize", None)
        super().__init__(**options)
        self.code_generator_class = _BoundedCodeGenerator
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)  # made-up text of any length is no use in an e-mail
        self.filters = {name: _bounded_filter(name, function) for name, function in self.filters.items()}
        self.filters[LOOP_GUARD] = _guarded_iterable
        self.filters[OPERAND_GUARD] = _guarded_operand
        self.tests = {name: _bounded_test(function) for name, function in self.tests.items()}
        self.finalize = _bounded_output(given_finalize)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        _check_tag_tokens(self, source, name, filename)
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(loop.iter, LOOP_GUARD, [], [], None, None, lineno=loop.iter.lineno)
        for comparison in tree.find_all(nodes.Compare):
            comparison.expr = _guarded(comparison.expr)
            for operand in comparison.ops:
                operand.expr = _guarded(operand.expr)
        for pair in tree.find_all(nodes.Pair):  # a dict's keys are hashed, which visits all they hold
            pair.key = _guarded(pair.key)
        return tree

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.check_time()
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's next level
            args = (_guarded_iterable(args[0]), *args[1:])
        owner = getattr(__obj, "__self__", None)
        if owner is not None:  # a method may compare or hash its arguments (index, count, get, changed…)
            for argument in (*args, *kwargs.values()):
                _guarded_operand(argument)
        if isinstance(owner, str | bytes):
            args = _check_text_method(owner, __obj.__name__, args, kwargs)
        elif isinstance(owner, list | tuple | dict | set) and __obj.__name__ not in ("get", "items", "keys", "values"):
            _check_items(owner)
            if __obj.__name__ in ("sort", "index", "count", "remove"):
                _guarded_operand(owner)  # compares its items
        elif isinstance(owner, int) and __obj.__name__ == "to_bytes":
            _check_size(args[0] if args else kwargs.get("length", 1), MAX_OUTPUT_CHARS, "bytes")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(owner, list | dict | set):  # it may have grown: append, extend, update…
            _check_items(owner)
        budget.charge(result)
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        budget.check_time()
        _check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        budget.charge(result)
        return result

    def call_test(self, name: str, value: Any, *args: Any, **kwargs: Any) -> Any:
        current().check_time()
        return super().call_test(name, value, *args, **kwargs)

    def getitem(self, obj: Any, argument: Any) -> Any:
        result = super().getitem(obj, argument)
        if type(argument) is slice:
            current().charge(result)  # a slice is a copy
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template, is_map = value.__self__, value.__name__ == "format_map"

        def bounded_format(*args: Any, **kwargs: Any) -> str:
            current().check_time()
            _check_format(template, (*args, *kwargs.values()) if not is_map else tuple(args))
            result = wrapped(*args, **kwargs)
            current().charge(result)
            return result

        return bounded_format

    def bounded_concat(self, join: Callable[[Iterable[Any]], str], values: tuple[Any, ...]) -> str:
        """``a ~ b ~ …``: refused before it is made when it would be too long."""
        budget = current()
        budget.check_time()
        _check_size(sum(measure(value) for value in values), MAX_OUTPUT_CHARS, "characters")
        result = join(values)
        budget.charge(result)
        return result


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with ``~`` going through the sandbox's bounded_concat."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.bounded_concat({join}, (")
        for argument in node.nodes:
            self.visit(argument, frame)
            self.write(", ")
        self.write("))")


def _check_tag_tokens(environment: SandboxedEnvironment, source: str, name: str | None, filename: str | None) -> None:
    """Refuse a template with more than MAX_TAG_TOKENS tokens in its tags before it is parsed: compiling costs
    about 25 µs and 3 KB a token (100,000 ``{{ a }}`` took 6 s and 1 GB), the text between tags nothing."""
    count = 0
    for line, kind, _ in environment.lex(source, name, filename):
        if kind != "data":
            count += 1
            if count > MAX_TAG_TOKENS:
                raise TemplateSyntaxError(
                    f"more than {MAX_TAG_TOKENS} tokens in the template's tags; a template is compiled on every "
                    "process that uses it, so its tags are bounded",
                    line,
                    name,
                    filename,
                )


def render_bounded(template: Template, context: dict[str, Any]) -> str:
    """Render ``template`` within the message's bounds (its own when no message render is under way)."""
    with render_budget.message_render() as budget:
        pieces: list[str] = []
        room = MAX_OUTPUT_CHARS - budget.output
        for piece in template.generate(context):
            room -= len(piece)
            if room < 0:
                budget.add_output(len(piece) - room)  # raises
            pieces.append(piece)
        budget.add_output(MAX_OUTPUT_CHARS - budget.output - room)
        return "".join(pieces)


def _guarded(expression: nodes.Expr) -> nodes.Expr:
    if isinstance(expression, nodes.Const):  # a literal from the template's own text
        return expression
    return nodes.Filter(expression, OPERAND_GUARD, [], [], None, None, lineno=expression.lineno)


def _guarded_iterable(iterable: Any) -> Iterator[Any]:
    """A loop's iterable: each iteration counts as a step and checks the deadline."""
    budget = current()
    for item in iterable:
        budget.step()
        yield item


def _guarded_operand(value: Any) -> Any:
    """A compared value: comparing what holds more than MAX_NODES values is refused."""
    if type(value) not in _SCALARS:
        current().check_time()
        measure(value, max_chars=2**62)
    return value


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > render_budget.MAX_LOOP_STEPS:
        raise RenderLimit(f"range of {len(numbers)} numbers is over {render_budget.MAX_LOOP_STEPS}")
    return numbers


def _bounded_output(finalize: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """Jinja's finalize for every ``{{ value }}``: measured before it is made a string, then charged."""

    def bounded(value: Any) -> Any:
        budget = active.budget or RenderBudget()
        budget.allocated += len(value) if type(value) is str else measure(value)
        if budget.allocated > MAX_ALLOCATED_BYTES:
            budget.charge_bytes(0)  # raises
        return value if finalize is None else finalize(value)

    return bounded


def _bounded_test(test: Any) -> Callable[..., Any]:
    """A test (``is eq(…)``, ``is in(…)``…): it compares only what holds at most MAX_NODES values."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        for value in args:
            _guarded_operand(value)
        return test(*args, **kwargs)

    if hasattr(test, "jinja_pass_arg"):
        bounded.jinja_pass_arg = test.jinja_pass_arg  # type: ignore[attr-defined]
    return bounded


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` checked against the budget before it runs and its result charged after. It takes
    the context, which also keeps Jinja from running it at compile time, outside any budget."""
    wants = _PassArg.from_obj(function)
    cheap, deep, stringifying = name in _CHEAP_FILTERS, name in _DEEP_FILTERS, name in _STRINGIFYING_FILTERS
    by_character = name in _CHARACTER_FILTERS
    check = _FILTER_CHECKS.get(name)
    first_argument: Callable[[Any], Any] | None = {
        _PassArg.context: lambda context: context,
        _PassArg.eval_context: lambda context: context.eval_ctx,
        _PassArg.environment: lambda context: context.environment,
    }.get(wants)  # type: ignore[arg-type]

    @pass_context
    def bounded(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        budget = active.budget or RenderBudget()
        if monotonic() > budget.deadline:
            budget.check_time()
        if type(value) is str:
            if by_character and len(value) > MAX_ITEMS:
                raise RenderLimit(f"{len(value)} characters taken one by one is over {MAX_ITEMS}")
        elif not cheap:
            _check_items(value)
            if deep:
                measure(value, max_chars=2**62)
            elif stringifying:
                measure(value)
        if check is not None:
            check(value, args, kwargs)
        if first_argument is None:
            result = function(value, *args, **kwargs)
        else:
            result = function(first_argument(context), value, *args, **kwargs)
        if type(result) is str:
            budget.allocated += len(result)
            if budget.allocated > MAX_ALLOCATED_BYTES:
                budget.charge_bytes(0)  # raises
        else:
            budget.charge(result)
        return result

    return bounded


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str, default: Any) -> Any:
    return args[position] if len(args) > position else kwargs.get(name, default)


def _check_center(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check_size(_argument(args, kwargs, 0, "width", 80), MAX_OUTPUT_CHARS, "characters")


def _check_indent(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    width = _argument(args, kwargs, 0, "width", 4)
    prefix = len(width) if isinstance(width, str) else width
    lines = str(value).count("\n") + 1
    _check_size(measure(value) + lines * _as_size(prefix), MAX_OUTPUT_CHARS, "characters")


def _check_wordwrap(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # textwrap works word by word in Python: its input is bounded like a collection's items.
    _check_size(len(str(value)), MAX_ITEMS, "characters to wrap")
    width = max(1, _as_size(_argument(args, kwargs, 0, "width", 79)))
    wrapstring = _argument(args, kwargs, 2, "wrapstring", None) or "\n"
    _check_size(len(str(value)) * (1 + len(str(wrapstring)) // width + 1), MAX_OUTPUT_CHARS, "characters")


def _check_truncate(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    end = _argument(args, kwargs, 2, "end", "...")
    _check_size(measure(value) + measure(end), MAX_OUTPUT_CHARS, "characters")


def _check_replace_filter(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    old, new = _argument(args, kwargs, 0, "old", ""), _argument(args, kwargs, 1, "new", "")
    count = _argument(args, kwargs, 2, "count", None)
    _check_replacement(str(value), str(old), str(new), -1 if count is None else count)


def _check_format_filter(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check_percent(str(value), (*args, *kwargs.values()))


def _check_join(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    # A generator's items are charged as its filters make them.
    items = value if type(value) in (list, tuple) else list(value) if type(value) in _CONTAINERS else ()
    separator = args[0] if args else kwargs.get("d", "")
    total = sum([len(item) if type(item) is str else measure(item) for item in items])
    if total + max(0, len(items) - 1) * measure(separator) > MAX_OUTPUT_CHARS:
        raise RenderLimit(f"joining {len(items)} items makes over {MAX_OUTPUT_CHARS} characters")


def _check_batch(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    count = _as_size(_argument(args, kwargs, 0, "linecount", 1))
    _check_size(count, MAX_ITEMS, "items per batch")


def _check_slice(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    _check_size(_as_size(_argument(args, kwargs, 0, "slices", 1)), MAX_ITEMS, "slices")


def _check_sum(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    start = _argument(args, kwargs, 1, "start", 0)
    if not isinstance(start, int | float):  # adding up lists copies each one: quadratic
        items = list(value) if isinstance(value, list | tuple) else []
        total = _items(start) + sum(_items(item) for item in items)
        _check_size(total * max(1, len(items)), MAX_ITEMS * 10, "items copied")


_FILTER_CHECKS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any]], None]] = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "truncate": _check_truncate,
    "replace": _check_replace_filter,
    "format": _check_format_filter,
    "join": _check_join,
    "batch": _check_batch,
    "slice": _check_slice,
    "sum": _check_sum,
}


def _check_text_method(text: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a str or bytes method whose result would be too large; its arguments, a generator made a list."""
    if name in ("ljust", "rjust", "center", "zfill"):
        _check_size(_argument(args, kwargs, 0, "width", 0), MAX_OUTPUT_CHARS, "characters")
    elif name == "expandtabs":
        tabsize = _as_size(_argument(args, kwargs, 0, "tabsize", 8))
        tabs = text.count("\t" if isinstance(text, str) else b"\t")  # type: ignore[arg-type]
        _check_size(len(text) + tabs * tabsize, MAX_OUTPUT_CHARS, "characters")
    elif name == "replace":
        count = _argument(args, kwargs, 2, "count", -1)
        _check_replacement(text, _argument(args, kwargs, 0, "old", ""), _argument(args, kwargs, 1, "new", ""), count)
    elif name == "join" and args:
        items = args[0] if isinstance(args[0], list | tuple) else list(_guarded_iterable(args[0]))
        _check_items(items)
        total = sum(measure(item) for item in items) + max(0, len(items) - 1) * len(text)
        _check_size(total, MAX_OUTPUT_CHARS, "characters")
        args = (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((measure(replacement) for replacement in args[0].values()), default=1)
        _check_size(len(text) * max(1, longest), MAX_OUTPUT_CHARS, "characters")
    elif name in ("split", "rsplit", "splitlines"):
        separator = _argument(args, kwargs, 0, "sep", None) if name != "splitlines" else None
        parts = text.count(separator) + 1 if separator else len(text) // 2 + 1
        maxsplit = _argument(args, kwargs, 1, "maxsplit", -1) if name != "splitlines" else -1
        if isinstance(maxsplit, int) and maxsplit >= 0:
            parts = min(parts, maxsplit + 1)
        _check_size(parts, MAX_ITEMS, "parts")
    return args


def _check_replacement(text: Any, old: Any, new: Any, count: Any) -> None:
    if not isinstance(text, str | bytes) or not isinstance(old, str | bytes) or not isinstance(new, str | bytes):
        return
    found = text.count(old) if old else len(text) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    _check_size(len(text) + found * max(0, len(new) - len(old)), MAX_OUTPUT_CHARS, "characters")


def _check_format(template: str, values: tuple[Any, ...]) -> None:
    """``template.format(*values)`` would stay under the output bound: each field at most as wide as its
    format asks plus every value together."""
    fields, widths = _format_fields(template)
    _check_size(len(template) + widths + fields * sum(map(measure, values)), MAX_OUTPUT_CHARS, "characters")


def _check_percent(template: str, values: Any) -> None:
    """``template % values`` would stay under the output bound (see _check_format)."""
    fields, widths = _percent_fields(template)
    values = tuple(values.values()) if isinstance(values, dict) else values if isinstance(values, tuple) else (values,)
    given = sum([len(value) if type(value) is str else measure(value) for value in values])
    if len(template) + widths + fields * given > MAX_OUTPUT_CHARS:
        raise RenderLimit(f"this %-format makes over {MAX_OUTPUT_CHARS} characters")


@lru_cache(maxsize=256)
def _format_fields(template: str) -> tuple[int, int]:
    """How many replacement fields ``template`` (a str.format template) has, and their widths added up."""
    fields, widths = 0, 0
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None:
            continue
        if spec and "{" in spec:
            raise RenderLimit("a format width taken from an argument is not allowed in a template")
        fields += 1
        widths += sum(int(number) for number in _NUMBERS.findall(spec or "") if len(number) < 19)
        if any(len(number) >= 19 for number in _NUMBERS.findall(spec or "")):
            raise RenderLimit("a format width over the output bound")
    return fields, widths


@lru_cache(maxsize=256)
def _percent_fields(template: str) -> tuple[int, int]:
    """How many conversions ``template`` (a %-format) has, and their widths and precisions added up."""
    fields = _PERCENT_FIELD.findall(template)
    if any("*" in (width, precision) for width, precision in fields):
        raise RenderLimit("a %-format width taken from an argument is not allowed in a template")
    if any(len(width + precision) >= 19 for width, precision in fields):
        raise RenderLimit("a %-format width over the output bound")
    return len(fields), sum(int(width or 0) + int(precision or 0) for width, precision in fields)


def _check_binop(operator_name: str, left: Any, right: Any) -> None:
    if operator_name == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, str | bytes) and isinstance(times, int):
                _check_size(len(sequence) * times, MAX_OUTPUT_CHARS, "characters")
            elif isinstance(sequence, list | tuple) and isinstance(times, int):
                _check_size(len(sequence) * times, MAX_ITEMS, "items")
        if isinstance(left, int) and isinstance(right, int):
            _check_size(left.bit_length() + right.bit_length(), MAX_INT_BITS, "bits")
    elif operator_name == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            _check_size(max(1, left.bit_length()) * right, MAX_INT_BITS, "bits")
        elif isinstance(right, int | float) and abs(right) > MAX_INT_BITS:
            raise RenderLimit(f"exponent {right} is over {MAX_INT_BITS}")
    elif operator_name == "+":
        if isinstance(left, str | bytes) and isinstance(right, str | bytes):
            _check_size(len(left) + len(right), MAX_OUTPUT_CHARS, "characters")
        elif isinstance(left, list | tuple) and isinstance(right, list | tuple):
            _check_size(len(left) + len(right), MAX_ITEMS, "items")
    elif operator_name == "%" and isinstance(left, str):
        _check_percent(left, right)


def _check_items(value: Any) -> None:
    if type(value) in _CONTAINERS and len(value) > MAX_ITEMS:
        raise RenderLimit(f"{len(value)} items is over {MAX_ITEMS}")


def _check_size(size: Any, limit: int, unit: str) -> None:
    if (size if type(size) is int else _as_size(size)) > limit:
        raise RenderLimit(f"{size} {unit} is over {limit}")


def _as_size(value: Any) -> int:
    """A width or count from a template: an int (a float or bool counts as its int value), else 0."""
    if isinstance(value, int | float) and value == value and abs(value) != float("inf"):
        return int(value)
    return 0


def _items(value: Any) -> int:
    return len(value) if isinstance(value, list | tuple | str) else 1
