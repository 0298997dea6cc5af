"""The OpenTelemetry SDK set up from OTEL_* variables: imported only when tracing is on.

- Exporter: `OTEL_TRACES_EXPORTER` `otlp` (the default; OTLP over HTTP/protobuf, configured by
  the standard OTEL_EXPORTER_OTLP_* variables: endpoint, headers, timeout) or `console`.
- Spans are batched (`OTEL_BSP_*`) and flushed when the process exits.
- Sampling: a span with a parent follows it; a root span is kept with the ratio of
  `OTEL_TRACES_SAMPLER_ARG` when `OTEL_TRACES_SAMPLER` is `traceidratio` or
  `parentbased_traceidratio` (else always), except a root span of a database statement or an
  outbound HTTP call: those belong to no request or job (a worker polling for jobs, its
  heartbeat) and would be one trace each.
- Instrumented: httpx (every outbound call: Mercado Pago, receipts' hook, schedules; the query
  string is dropped from the recorded URL, it may hold a schedule's secrets) and psycopg (every
  SQL statement, its text without parameters). HTTP server spans come from FastAPI's own
  telemetry (kiosk/app.py), job spans from kiosk/tracing/jobs.py.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.util.types import Attributes

from kiosk.tracing.errors import TracingUnavailable

_provider: TracerProvider | None = None


class NoOrphanClients(Sampler):
    """Root sampler: drops a CLIENT span (SQL, outbound HTTP) that has no parent, else delegates."""

    def __init__(self, delegate: Sampler):
        self._delegate = delegate

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if kind == SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self._delegate.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"NoOrphanClients{{{self._delegate.get_description()}}}"


def _root_sampler() -> Sampler:
    name = os.environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if name in ("traceidratio", "parentbased_traceidratio"):
        try:
            ratio = float(os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0"))
        except ValueError:
            raise TracingUnavailable(
                "OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1"
            ) from None
        return NoOrphanClients(TraceIdRatioBased(ratio))
    return NoOrphanClients(ALWAYS_ON)


def _processor() -> SpanProcessor:
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter == "console":
        return BatchSpanProcessor(ConsoleSpanExporter())
    if exporter != "otlp":
        raise TracingUnavailable(
            f"OTEL_TRACES_EXPORTER={exporter!r}: kiosk ships the otlp and console exporters"
        )
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol != "http/protobuf":
        raise TracingUnavailable(
            f"OTLP protocol {protocol!r}: kiosk's otel extra exports over http/protobuf "
            "(a collector's port 4318)"
        )
    return BatchSpanProcessor(OTLPSpanExporter())


async def _drop_query(span: Any, request: Any) -> None:
    """httpx request hook: the recorded URL without its query string (a schedule's secrets)."""
    url = getattr(request, "url", None)
    if url is None or not hasattr(url, "copy_with") or not url.query:
        return
    bare = str(url.copy_with(query=None, fragment=None))
    for key in ("http.url", "url.full"):
        if key in (getattr(span, "attributes", None) or {}):
            span.set_attribute(key, bare)


def setup(service_name: str) -> TracerProvider:
    global _provider
    if _provider is not None:
        return _provider
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", "").strip() or service_name}
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(root=_root_sampler()))
    provider.add_span_processor(_processor())
    trace.set_tracer_provider(provider)
    HTTPXClientInstrumentor().instrument(tracer_provider=provider, async_request_hook=_drop_query)
    PsycopgInstrumentor().instrument(tracer_provider=provider, enable_commenter=False)
    _provider = provider
    return provider
