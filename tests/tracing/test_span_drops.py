"""No span dropped under a burst with our own provider; drops counted when another provider
drops them (issue 19).

The collector is the in-suite OTLP receiver, made slow (each export answered after
``delay_s``), so a batch span processor drains at most one 512-span batch per delay: a burst
outruns it the way a busy process outruns a remote collector. With the SDK's default queue
(2,048 spans) a burst of 6,000 loses spans (with a 0.3 s delay, about a third); with ours,
none.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import instrument
from instrument import logged_execution, runtime
from instrument.testing import capture
from instrument.tracing import dropped_spans
from instrument.tracing import semconv as sc
from instrument.tracing.providers import SPAN_QUEUE_SIZE, span_queue_size
from instrument.tracing.spans import Tracing
from tests.tracing.otlp_receiver import OtlpReceiver

BURST = 6_000
SDK_DEFAULT_QUEUE = 2_048
#: one 512-span batch per second: a burst of 6,000 outruns it unless a call took over 1 ms
DELAY_S = 1.0


@logged_execution(agent_name="agent_name")
def agent(agent_name: str) -> dict[str, Any]:
    return {"success": True, "model": "gpt-4o-mini", "provider": "openai", "iterations": 1,
            "tokens": {"input_tokens": 300, "output_tokens": 40}}


@pytest.fixture
def slow_collector() -> Iterator[OtlpReceiver]:
    with OtlpReceiver(delay_s=DELAY_S) as rx:
        yield rx


def _ours(rx: OtlpReceiver) -> int:
    """Spans of ours that arrived (called after the provider's shutdown exported the rest)."""
    return sum(1 for s in rx.spans() if s.scope == "logged-execution")


def test_our_queue_is_larger_than_the_sdks_and_honours_a_larger_setting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert span_queue_size() == SPAN_QUEUE_SIZE > BURST > SDK_DEFAULT_QUEUE
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", str(4 * SPAN_QUEUE_SIZE))
    assert span_queue_size() == 4 * SPAN_QUEUE_SIZE
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "100")  # smaller: ours still applies
    assert span_queue_size() == SPAN_QUEUE_SIZE


def test_a_burst_loses_no_span_with_our_own_provider(
        slow_collector: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", slow_collector.http_url)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    before = dropped_spans()
    instrument.configure(database_url=f"sqlite:///{tmp_path / 'burst.db'}",
                         writers=["executions"])
    live = runtime.peek()
    assert live is not None
    assert live.tracing is not None
    assert live.tracing.telemetry is not None
    assert live.tracing.telemetry.owned_tracer_provider is not None
    for _ in range(BURST):
        agent("Burst")
    # the burst outran the collector by more than the SDK's default queue could have held
    assert BURST - _ours(slow_collector) > SDK_DEFAULT_QUEUE
    assert instrument.shutdown(60.0)
    assert _ours(slow_collector) == BURST
    assert dropped_spans() == before


def test_spans_the_applications_provider_drops_are_counted(
        slow_collector: OtlpReceiver) -> None:
    """The application's provider, with the SDK's defaults, drops; we count what it drops
    (without adding anything to it) and report it as instrument.spans.dropped."""
    app_tp = TracerProvider(shutdown_on_exit=False)
    app_tp.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=f"{slow_collector.http_url}/v1/traces"),
        max_queue_size=SDK_DEFAULT_QUEUE))
    reader = InMemoryMetricReader()
    before = dropped_spans()
    with capture(tracing=Tracing(app_tp, MeterProvider(metric_readers=[reader]))):
        for _ in range(BURST):
            agent("Burst")
    app_tp.shutdown()
    arrived = _ours(slow_collector)
    dropped = dropped_spans() - before
    assert arrived < BURST, "the burst did not outrun the collector: the test proves nothing"
    # the SDK counts a drop when it sees its queue full; its worker may pop in between
    assert BURST - arrived <= dropped <= BURST - arrived + 5
    data = reader.get_metrics_data()
    (metric,) = [m for rm in data.resource_metrics for sm in rm.scope_metrics
                 for m in sm.metrics if m.name == sc.METRIC_SPANS_DROPPED]
    (point,) = metric.data.data_points
    assert metric.data.is_monotonic
    assert point.value == dropped_spans()
