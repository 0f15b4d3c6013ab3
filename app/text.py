"""Text from payloads and headers made safe to print: control characters shown as escapes, never obeyed.

An event type such as `checkout.session.completed\\x1b[2J\\x1b]0;PWNED\\x07` would clear an operator's screen and
set the window's title when printed raw; a newline inside a value would forge another line of a listing or a log.
"""

from __future__ import annotations

from typing import Any

# C0 controls, DEL, C1 controls, and the bidirectional overrides that make text read other than it is.
_CONTROLS = [*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_ONE_LINE = {code: _escape(code) for code in _CONTROLS}
# Multi-line output (a traceback, a help text) keeps its own line breaks and tabs; a lone \r is still escaped.
_LINES = {code: text for code, text in _ONE_LINE.items() if code not in (0x0A, 0x09)}


def escape_controls(text: str, *, keep_lines: bool = False) -> str:
    """`text` with every control character written as `\\xNN` (`\\uNNNN` past 0xff); newlines and tabs kept
    when `keep_lines`."""
    return text.translate(_LINES if keep_lines else _ONE_LINE)


def escape_values(value: Any) -> Any:
    """A JSON-like value with every string in it (keys too) escaped to one line."""
    if isinstance(value, str):
        return escape_controls(value)
    if isinstance(value, dict):
        return {escape_values(k): escape_values(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_values(v) for v in value]
    return value


def counted(n: int, word: str) -> str:
    """`n word`, the word in the plural unless n is 1: "1 source", "3 sources"."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
