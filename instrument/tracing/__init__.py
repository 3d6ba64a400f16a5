"""OpenTelemetry: spans and metrics for executions, tracer/meter providers, the OTEL_* env,
the content policy for spans, and the semantic-convention names."""

from __future__ import annotations

from instrument.tracing.drops import dropped_spans
from instrument.tracing.providers import use_app_meter_provider
from instrument.tracing.spans import Tracing

__all__ = ["Tracing", "dropped_spans", "use_app_meter_provider"]
