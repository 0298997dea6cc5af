"""The one error of kiosk/tracing, in a leaf module that its SDK half imports too."""


class TracingUnavailable(RuntimeError):
    """OTEL_* variables ask for tracing that this install or configuration cannot give."""
