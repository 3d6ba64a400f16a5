"""Fixtures: the SDK's in-memory span exporter and metric reader behind a real Tracing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrument.config import Settings
from instrument.redact import Redactor
from instrument.testing import Captured, capture
from instrument.tracing.otel_env import resolve_otel
from instrument.tracing.semconv import CURRENT, Conventions
from instrument.tracing.spans import Tracing


@dataclass
class Otel:
    """One test's providers, and helpers to read what they saw."""

    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    captured: list[Captured] = field(default_factory=list)

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def span(self, name_prefix: str | tuple[str, ...] = ("invoke_", "handle_conversation_turn")
             ) -> ReadableSpan:
        found = [s for s in self.spans() if s.name.startswith(name_prefix)]
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        points: list[Any] = []
        for rm in data.resource_metrics if data is not None else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        points.extend(m.data.data_points)
        return points

    def histogram(self, name: str) -> list[HistogramDataPoint]:
        return [p for p in self.metric_points(name) if isinstance(p, HistogramDataPoint)]

    def tracing(self, *, content: bool = False, limit: int | None = None,
                conventions: Conventions = CURRENT) -> Tracing:
        return Tracing(self.tracer_provider, self.meter_provider, content_to_spans=content,
                       redactor=Redactor(), attribute_value_limit=limit,
                       conventions=conventions)

    def capture(self, *, content: bool = False, limit: int | None = None,
                capture_content: bool | str | None = None, conventions: Conventions = CURRENT,
                ) -> AbstractContextManager[Captured]:
        """`instrument.testing.capture` with our Tracing: records and spans together."""
        return capture(tracing=self.tracing(content=content, limit=limit,
                                            conventions=conventions),
                       capture_content=capture_content if capture_content is not None
                       else content)


@pytest.fixture
def otel() -> Iterator[Otel]:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    yield Otel(exporter, reader, tp, mp)
    tp.shutdown()
    mp.shutdown()


def tracing_for(settings: Settings) -> Tracing | None:
    """The Tracing configure() builds for `settings` (runtime.build's tracing step)."""
    return Tracing.from_config(
        resolve_otel(settings.environ, traces=settings.traces, service_name=settings.service_name),
        content_to_spans=settings.content_to_spans, redactor=Redactor(settings.redact_patterns),
        pipeline_stats=None)


def children_of(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    pid = parent.context.span_id
    return [s for s in spans if s.parent is not None and s.parent.span_id == pid]
