"""GenAI client metrics, the executions counter, and the pipeline's health as observables."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import instrument
from instrument import logged_execution, runtime
from instrument.config import resolve_settings
from instrument.pipeline import NullPipeline, PipelineStats
from instrument.redact import Redactor
from instrument.tracing.semconv import DURATION_BUCKETS, TOKEN_USAGE_BUCKETS
from instrument.tracing.spans import Tracing
from tests.tracing.conftest import Otel


@logged_execution(engine="mapping", agent_name="agent_name")
def run(agent_name: str, result: dict[str, Any] | None = None, fail: bool = False
        ) -> dict[str, Any]:
    if fail:
        raise TimeoutError("model took too long")
    return result if result is not None else {
        "success": True, "model": "gpt-4o", "provider": "openai",
        "tokens": {"input_tokens": 1000, "output_tokens": 200}}


def test_token_usage_histogram_by_token_type(otel: Otel) -> None:
    with otel.capture():
        run("A")
        run("B", {"success": True, "model": "gpt-4o", "provider": "openai",
                  "tokens": {"input_tokens": 10, "output_tokens": 5}})
    points = otel.histogram("gen_ai.client.token.usage")
    by_type = {dict(p.attributes)["gen_ai.token.type"]: p for p in points}
    assert set(by_type) == {"input", "output"}
    assert by_type["input"].sum == 1010
    assert by_type["input"].count == 2
    assert by_type["output"].sum == 205
    assert tuple(by_type["input"].explicit_bounds) == TOKEN_USAGE_BUCKETS
    assert dict(by_type["input"].attributes) == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o",
        "gen_ai.token.type": "input",
    }


def test_unmeasured_tokens_record_no_token_points(otel: Otel) -> None:
    with otel.capture():
        run("A", {"success": True})
    assert otel.histogram("gen_ai.client.token.usage") == []
    assert len(otel.histogram("gen_ai.client.operation.duration")) == 1


def test_operation_duration_in_seconds_with_error_type_on_failure(otel: Otel) -> None:
    with otel.capture():
        run("A")
        with pytest.raises(TimeoutError):
            run("A", fail=True)
    points = otel.histogram("gen_ai.client.operation.duration")
    assert len(points) == 2
    failed = next(p for p in points if "error.type" in dict(p.attributes))
    ok = next(p for p in points if "error.type" not in dict(p.attributes))
    assert dict(failed.attributes)["error.type"] == "TimeoutError"
    assert tuple(ok.explicit_bounds) == DURATION_BUCKETS
    assert 0 <= ok.sum < 5  # seconds, not milliseconds


def test_executions_counter_by_engine_and_status(otel: Otel) -> None:
    with otel.capture():
        run("A")
        run("A")
        run("A", {"success": False, "error": {"type": "E", "message": "m"}})
        with pytest.raises(TimeoutError):
            run("A", fail=True)
    points = {(dict(p.attributes)["instrument.engine"], dict(p.attributes)["instrument.status"]):
              p.value for p in otel.metric_points("instrument.executions")}
    assert points == {("mapping", "completed"): 2, ("mapping", "failed"): 2}


def test_pipeline_health_is_observed_from_the_live_pipeline(otel: Otel, tmp_path: Path) -> None:
    instrument.configure(database_url=f"sqlite:///{tmp_path / 'health.db'}",
                         spool_dir=str(tmp_path / "spool"))
    run("A")
    assert instrument.flush(10)
    # registers the observables, reading what configure() hands its own Tracing
    Tracing(otel.tracer_provider, otel.meter_provider, pipeline_stats=runtime.pipeline_stats)
    names = {
        "instrument.pipeline.queue.depth", "instrument.pipeline.spool.size",
        "instrument.pipeline.spool.usage", "instrument.pipeline.retries",
        "instrument.pipeline.dropped", "instrument.pipeline.quarantined",
        "instrument.pipeline.write.latency",
    }
    values = {n: [p.value for p in otel.metric_points(n)] for n in names}
    assert values["instrument.pipeline.queue.depth"] == [0]
    assert values["instrument.pipeline.dropped"] == [0]
    assert values["instrument.pipeline.quarantined"] == [0]
    (latency,) = values["instrument.pipeline.write.latency"]
    assert 0 < latency < 10  # seconds: the store wrote one batch
    assert all(values[n] for n in names - {"instrument.pipeline.write.latency"})


def test_pipeline_health_observes_nothing_without_a_live_runtime(otel: Otel) -> None:
    Tracing(otel.tracer_provider, otel.meter_provider, pipeline_stats=runtime.pipeline_stats)
    assert otel.metric_points("instrument.pipeline.queue.depth") == []
    Tracing(otel.tracer_provider, otel.meter_provider)  # no source at all: nothing either
    assert otel.metric_points("instrument.pipeline.queue.depth") == []


class _Pipeline(NullPipeline):
    """A pipeline whose stats report `depth` records queued."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def stats(self) -> PipelineStats:
        return replace(super().stats(), queue_depth=self.depth)


def _install(depth: int) -> None:
    runtime.swap(runtime.Runtime(resolve_settings(environ={}), _Pipeline(depth), None,
                                 Redactor()))


def _depth(otel: Otel) -> list[Any]:
    return [p.value for p in otel.metric_points("instrument.pipeline.queue.depth")]


def test_pipeline_health_follows_the_runtime_that_replaced_it(otel: Otel) -> None:
    previous = runtime.peek()
    try:
        _install(3)
        Tracing(otel.tracer_provider, otel.meter_provider, pipeline_stats=runtime.pipeline_stats)
        assert _depth(otel) == [3]
        _install(7)  # a new runtime, same MeterProvider: the instruments read the live one
        Tracing(otel.tracer_provider, otel.meter_provider, pipeline_stats=runtime.pipeline_stats)
        assert _depth(otel) == [7]  # one instrument, not one per Tracing
    finally:
        runtime.swap(previous)


def test_pipeline_health_reads_the_latest_source_given(otel: Otel) -> None:
    Tracing(otel.tracer_provider, otel.meter_provider)  # registered before any source
    assert _depth(otel) == []
    Tracing(otel.tracer_provider, otel.meter_provider,
            pipeline_stats=lambda: _Pipeline(5).stats())
    assert _depth(otel) == [5]
    Tracing(otel.tracer_provider, otel.meter_provider)  # no source: keeps the one it has
    assert _depth(otel) == [5]


def test_a_failing_stats_source_observes_nothing(otel: Otel) -> None:
    def broken() -> PipelineStats:
        raise RuntimeError("stats unavailable")

    Tracing(otel.tracer_provider, otel.meter_provider, pipeline_stats=broken)
    assert _depth(otel) == []
    assert otel.histogram("gen_ai.client.operation.duration") == []  # collection still works
