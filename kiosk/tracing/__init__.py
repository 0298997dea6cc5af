"""OpenTelemetry tracing: off unless the standard OTEL_* variables turn it on.

On when `OTEL_TRACES_EXPORTER` is set to anything but `none`, or, with that variable unset,
when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set;
`OTEL_SDK_DISABLED=true` turns it off whatever else is set. Decided once per process, from its
environment, at import.

Off, this module is all that is imported: no opentelemetry module is loaded by kiosk, and the
code paths check `ENABLED`, one attribute read. On, it needs the `otel` extra
(`pip install 'kiosk[otel]'`) and `setup` builds the tracer provider (kiosk/tracing/sdk.py).
docs/observability.md, "Tracing".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from kiosk.tracing.errors import TracingUnavailable

__all__ = ["ENABLED", "TracingUnavailable", "enabled_by", "setup"]


def enabled_by(env: Mapping[str, str]) -> bool:
    """Whether these environment variables turn tracing on (the rules above)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


ENABLED = enabled_by(os.environ)


def setup(service_name: str) -> Any:
    """Build and install this process's tracer provider (once); return it.

    `service_name` is the default `service.name` (OTEL_SERVICE_NAME wins). Raises
    TracingUnavailable, with the fix in its message, when the `otel` extra is missing or the
    variables name an exporter or protocol kiosk does not ship.
    """
    try:
        from kiosk.tracing import sdk
    except ImportError as exc:
        raise TracingUnavailable(
            f"OTEL_* variables turn tracing on but the otel extra is not installed ({exc}): "
            "pip install 'kiosk[otel]', or unset OTEL_TRACES_EXPORTER and "
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        ) from None
    return sdk.setup(service_name)
