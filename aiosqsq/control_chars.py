"""Control characters made visible, so that text from a queue or a user cannot shape output.

A message body, an attribute or an exception's text may hold a newline followed by
something shaped like a log line, an ANSI escape sequence that recolours or clears a
terminal, or a carriage return that hides what came before it. :func:`escape_controls`
turns every such character into its escaped spelling (``\\n``, ``\\x1b``, ``\\u2028``), so
that one piece of text stays on one line and shows what it holds.
"""

from __future__ import annotations

import re
from typing import Final

# C0, DEL and C1, and the two Unicode separators that str.splitlines() (and some log
# viewers) also break lines on.
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """``text`` with each control character written as its escape (``\\n``, ``\\x1b``)."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
