"""Tracing of the webhook fast path's group commit (kiosk/webhooks/batcher.py).

Requests of one batch share a transaction written by the batcher's own task, not by any request,
so each request's span context is kept (`accepted`) while it waits; the batch is written in a
`webhook batch` span, a child of its first request's span that links to the others; and each
processing job continues the trace of the request that caused it (`carriers`), not the batch's.
The request span, which FastAPI names after its route, is named here too: the fast path skips
routing. Imported only when tracing is on.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace

from kiosk.tracing.jobs import carrier

Item = TypeVar("Item")
Result = TypeVar("Result")

tracer = trace.get_tracer("kiosk.webhooks")
_waiting: dict[int, otel_context.Context] = {}  # id(item) -> its request's context


async def accepted(route: str, item: Item, submit: Callable[[Item], Awaitable[Result]]) -> Result:
    """`submit(item)` while the request's context is kept for the batch that writes it."""
    span = trace.get_current_span()
    span.update_name(f"POST {route}")
    span.set_attribute("http.route", route)
    _waiting[id(item)] = otel_context.get_current()
    try:
        return await submit(item)
    finally:
        _waiting.pop(id(item), None)


@contextlib.asynccontextmanager
async def batch(items: Sequence[Any]) -> AsyncIterator[None]:
    """The `webhook batch` span around writing `items`."""
    contexts = [_waiting.get(id(item)) for item in items]
    first = next((c for c in contexts if c is not None), None)
    links = [
        trace.Link(trace.get_current_span(c).get_span_context())
        for c in contexts
        if c is not None and c is not first
    ]
    with tracer.start_as_current_span(
        "webhook batch",
        context=first,
        links=links,
        attributes={"kiosk.webhook.batch_size": len(items)},
    ):
        yield


def carriers(items: Sequence[Any]) -> list[dict[str, str] | None]:
    """The W3C headers of each item's request, for the jobs the items cause."""
    return [
        carrier(context) if (context := _waiting.get(id(item))) is not None else None
        for item in items
    ]
