"""Log lines a caller cannot forge.

Callers control much of what the processes log: the dialled string (where Asterisk unescapes
``%0D%0A`` into a real line break), caller IDs, request paths. Written as it came, a CR or LF
there starts a log line of the caller's making. :class:`SafeFormatter` escapes, in the message
only, every character that can end or rewrite a line on a terminal or for a log reader: C0 and
C1 controls (CR, LF, ESC, ...), Unicode's line and paragraph separators, bidirectional
overrides, and lone surrogates (which would make the handler fail on the line). Tracebacks keep
their lines: they come from the code, and the record they follow is a line of its own.
"""

from __future__ import annotations

import copy
import logging
import re

# Everything str.splitlines() breaks at is in here.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match[str]) -> str:
    char = match[0]
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape(text: str) -> str:
    """``text`` on one line: unsafe characters as ``\\n``, ``\\r``, ``\\t``, ``\\xNN``,
    ``\\uNNNN``."""
    return _UNSAFE.sub(_escaped, text)


class SafeFormatter(logging.Formatter):
    """Formats as ``inner`` does, with the message escaped (:func:`escape`)."""

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        safe = copy.copy(record)  # other handlers may format the record as it is
        safe.msg, safe.args = escape(record.getMessage()), None
        return self.inner.format(safe)


def install(logger: logging.Logger | None = None) -> None:
    """Wrap the formatter of each of ``logger``'s handlers (the root logger's by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not isinstance(handler.formatter, SafeFormatter):
            handler.setFormatter(SafeFormatter(handler.formatter))
