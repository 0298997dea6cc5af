"""Log records as one JSON object per line, with the context known where they were written.

`KIOSK_LOG_FORMAT=json` (the container image's default; `text` elsewhere) makes the API and the
workers write every record, kiosk's, procrastinate's and uvicorn's access and error logs alike, as
one JSON object per line on stderr: time (ISO 8601, UTC), level, logger, message, then the fields
of the current context (`bind`/`scope`: request_id, job_id, task, queue, attempt, order_id,
provider_order_id, schedule_id, ...), then the record's own `extra` fields (procrastinate's
`action`, `job`, `worker`, ...), and `exc_info` as clipped text. The context lives in a
contextvar, so it follows a request or a job through its awaits and into the threads asyncio hands
work to, and never leaks into another request's lines. docs/observability.md, "Logs".
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from kiosk.logclip import clip_end

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
FORMATS = ("json", "text")
EXC_LIMIT = 8_000  # characters of a traceback kept (its end: that is where the error is)

# The default is an immutable empty mapping: contexts are replaced, never changed in place.
_context: ContextVar[Mapping[str, object]] = ContextVar(
    "kiosk_log_context", default=MappingProxyType({})
)

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    [*logging.LogRecord("", 0, "", 0, "", (), None).__dict__, "message", "asctime", "taskName"]
)
# uvicorn's copy of the message with terminal colours: the same text again.
_DROPPED_EXTRAS = frozenset({"color_message"})


def current() -> Mapping[str, object]:
    """The fields of the current context."""
    return _context.get()


def bind(**fields: object) -> None:
    """Add fields (None values are skipped) to the context until the request or job ends."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


def start(**fields: object) -> Token[Mapping[str, object]]:
    """A fresh context holding only `fields` (a new request or job); `reset` puts the old back."""
    return _context.set({k: v for k, v in fields.items() if v is not None})


def start_request(request_id: str) -> None:
    """A fresh context for a new request (the hot path's short form of `start`)."""
    _context.set({"request_id": request_id})


def reset(token: Token[Mapping[str, object]]) -> None:
    _context.reset(token)


@contextlib.contextmanager
def scope(**fields: object) -> Iterator[None]:
    """`fields` added to the context inside the block only."""
    token = _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (json escapes line breaks: no forged entries)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context.get())
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in _DROPPED_EXTRAS:
                entry.setdefault(key, value)
        job = entry.get("job")
        if isinstance(job, dict):  # procrastinate's records: its job's fields, as kiosk names them
            entry.setdefault("job_id", job.get("id"))
            entry.setdefault("task", job.get("task_name"))
            entry.setdefault("queue", job.get("queue"))
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            client, method, path, _, status = args
            entry.update(client=client, method=method, path=path, status=status)
        if record.exc_info:
            entry["exc_info"] = clip_end(self.formatException(record.exc_info), EXC_LIMIT)
        elif record.exc_text:
            entry["exc_info"] = clip_end(record.exc_text, EXC_LIMIT)
        if record.stack_info:
            entry["stack_info"] = clip_end(self.formatStack(record.stack_info), EXC_LIMIT)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _utc(created: float) -> str:
    """2026-12-02T18:40:49.123Z"""
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def configure(log_format: str, level: str | int | None = None) -> None:
    """Set up this process's logging: `text` as before, or `json` through `JsonFormatter`.

    `level` applies as `logging.basicConfig` would (only when the root logger had no handler yet:
    a test runner's capture or the procrastinate CLI's own level stays). In JSON mode the root's
    plain stream handlers (basicConfig's, procrastinate's) get the JSON formatter, and uvicorn's
    loggers, which write through their own handlers, pass their records on to the root instead.
    """
    if level is None:
        logging.basicConfig(format=TEXT_FORMAT)
    else:
        logging.basicConfig(level=level, format=TEXT_FORMAT)
    if log_format != "json":
        return
    formatter = JsonFormatter()
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # not a test runner's capturing subclass
            handler.setFormatter(formatter)
    for name in ("uvicorn", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        # A logger uvicorn silenced (--no-access-log: no handler, no propagation) stays silent.
        if uvicorn_logger.handlers:
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True
