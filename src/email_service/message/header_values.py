"""Header-value safety: no control character may reach a message header.

Python 3.11.7's email package lets a trailing or encoded newline inject headers
(CVE-2024-6923), so the service refuses them itself, whatever the interpreter.
"""

from __future__ import annotations

import re

# C0 controls (tab included: a folded header is ours to make), DEL, C1 controls,
# and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def find_control_character(value: str) -> int | None:
    """Index of the first character not allowed in a header value, or None."""
    match = _CONTROL.search(value)
    return match.start() if match else None


def describe_control_character(value: str) -> str | None:
    """A reason naming the first forbidden character, or None when the value is safe."""
    index = find_control_character(value)
    if index is None:
        return None
    return f"control character U+{ord(value[index]):04X} at position {index} is not allowed in a header"
