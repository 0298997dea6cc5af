"""Values from a request, fit for a log line: short, on one line.

Anything a client sends (a header, a query parameter, a database error quoting its input) may be
megabytes long or hold line breaks that forge log entries. `clip` cuts a value to `LIMIT`
characters, says how much was cut, and escapes control characters; every log call that includes
a request-derived value passes it through `clip`. `ClipArgs` does the same to every argument of a
logger's records: it guards uvicorn's access log, which logs the request target as sent.
"""

from __future__ import annotations

import logging

LIMIT = 200
# Control characters (line breaks above all) and DEL, shown as escapes instead.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}
_ESCAPES.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def clip(value: object, limit: int = LIMIT) -> str:
    """`value` as text of at most `limit` characters (plus a note of what was cut), one line."""
    text = value if isinstance(value, str) else str(value)
    # Cut before escaping: escaping a 2 MB value only to drop most of it would be work for nothing.
    head = text[:limit].translate(_ESCAPES)
    if len(text) > limit:
        return f"{head}...[{len(text) - limit} more characters]"
    return head


class ClipArgs(logging.Filter):
    """Clips every string argument of a record (the message template is the code's own)."""

    def __init__(self, limit: int = LIMIT):
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                clip(arg, self.limit) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def clip_end(text: str, limit: int) -> str:
    """The last `limit` characters of a multi-line text (a traceback: its end names the error),
    with a note of what was cut. Line breaks stay: only for JSON output, which escapes them."""
    if len(text) <= limit:
        return text
    return f"[{len(text) - limit} characters cut]...{text[-limit:]}"
