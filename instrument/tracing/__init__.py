"""OpenTelemetry: spans and metrics for executions, tracer/meter providers, the OTEL_* env,
the content policy for spans, and the semantic-convention names."""

from __future__ import annotations

from instrument.tracing.spans import Tracing

__all__ = ["Tracing"]
