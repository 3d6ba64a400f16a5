"""GenAI client metrics, the executions counter, and the pipeline's health as observables."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

import instrument
from instrument import logged_execution, runtime
from instrument.config import resolve_settings
from instrument.context import ExecutionContext
from instrument.pipeline import NullPipeline, PipelineStats
from instrument.record import ExecutionRecord, ExecutionResult, ToolCall
from instrument.redact import Redactor
from instrument.tracing.semconv import (
    CALL_COUNT_BUCKETS,
    DUP,
    DURATION_BUCKETS,
    INVOCATION_DURATION_BUCKETS,
    PREVIOUS,
    TOKEN_USAGE_BUCKETS,
    Conventions,
)
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


def test_invocation_duration_with_operation_nesting_and_error_type(otel: Otel) -> None:
    with otel.capture():
        run("A")
        with pytest.raises(TimeoutError):
            run("A", fail=True)
        run("B", {"success": False, "error": {"type": "MAX_ITERATIONS_REACHED", "message": "m"},
                  "extras": {"request_model": "gpt-4o"}})
    points = {dict(p.attributes).get("error.type"): p
              for p in otel.histogram("gen_ai.invocation.duration")}
    assert set(points) == {None, "TimeoutError", "MAX_ITERATIONS_REACHED"}
    assert dict(points[None].attributes) == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.invocation.is_nested": False,
        "gen_ai.agent.name": "A"}
    # gen_ai.request.model only when the adapter reported what was asked
    assert dict(points["MAX_ITERATIONS_REACHED"].attributes)["gen_ai.request.model"] == "gpt-4o"
    ok = points[None]
    assert ok.count == 1
    assert tuple(ok.explicit_bounds) == INVOCATION_DURATION_BUCKETS
    assert 0 <= ok.sum < 5  # seconds, not milliseconds


def test_nested_executions_are_marked_nested(otel: Otel) -> None:
    @logged_execution(engine="orchestrator", name="etl")
    def outer() -> dict[str, Any]:
        run("Inner")
        run("Inner")
        return {"success": True, "stepsCompleted": 2}

    with otel.capture():
        outer()
        run("Inner")  # top-level again
    by = {(dict(p.attributes)["gen_ai.operation.name"],
           dict(p.attributes)["gen_ai.invocation.is_nested"]): p.count
          for p in otel.histogram("gen_ai.invocation.duration")}
    assert by == {("invoke_workflow", False): 1, ("invoke_agent", True): 2,
                  ("invoke_agent", False): 1}
    workflow = next(p for p in otel.histogram("gen_ai.invocation.duration")
                    if dict(p.attributes)["gen_ai.operation.name"] == "invoke_workflow")
    assert dict(workflow.attributes)["gen_ai.workflow.name"] == "etl"
    spans = {(s.name, dict(s.attributes or {})["gen_ai.invocation.is_nested"])
             for s in otel.spans()}
    assert spans == {("invoke_workflow etl", False), ("invoke_agent Inner", True),
                     ("invoke_agent Inner", False)}


def test_inference_and_tool_call_counts_per_agent_invocation(otel: Otel) -> None:
    with otel.capture():
        run("A", {"success": True, "iterations": 3,
                  "tool_calls": [{"name": "a"}, {"name": "b"}]})
        run("A", {"success": True, "iterations": 1, "tool_calls": []})
        run("A", {"success": True})  # measured neither: no point
    (inference,) = otel.histogram("gen_ai.invoke_agent.inference_calls")
    (tools,) = otel.histogram("gen_ai.invoke_agent.tool_calls")
    assert (inference.count, inference.sum) == (2, 4)
    assert (tools.count, tools.sum) == (2, 2)
    assert dict(inference.attributes) == dict(tools.attributes) == {"gen_ai.agent.name": "A"}
    assert tuple(tools.explicit_bounds) == CALL_COUNT_BUCKETS


def test_workflows_record_no_agent_call_counts(otel: Otel) -> None:
    # No built-in workflow engine reports iterations or tool calls: a record that does.
    now = dt.datetime.now(dt.UTC)
    record = ExecutionRecord(
        execution_id=uuid4(), engine="orchestrator", name="flow", started_at=now,
        completed_at=now, duration_ms=3.0, agent_name="Planner",
        result=ExecutionResult(success=True, iterations=2, tool_calls=[ToolCall(name="a")]))
    tracing = otel.tracing()
    tracing.finish(tracing.start(ExecutionContext(record.execution_id, "flow", "orchestrator")),
                   record, None)
    assert otel.histogram("gen_ai.invoke_agent.tool_calls") == []
    assert otel.histogram("gen_ai.invoke_agent.inference_calls") == []
    (point,) = otel.histogram("gen_ai.invocation.duration")
    assert dict(point.attributes) == {"gen_ai.operation.name": "invoke_workflow",
                                      "gen_ai.invocation.is_nested": False,
                                      "gen_ai.workflow.name": "flow"}


def test_execute_tool_duration_for_every_tool_call_with_a_duration(otel: Otel) -> None:
    with otel.capture():
        run("A", {"success": True, "tool_calls": [
            {"name": "search", "duration_ms": 250},
            {"name": "search", "duration_ms": 750},
            {"name": "send", "duration_ms": 5, "success": False, "error": "denied"},
            {"name": "untimed"}]})
    points = {(dict(p.attributes)["gen_ai.tool.name"], dict(p.attributes).get("error.type")): p
              for p in otel.histogram("gen_ai.execute_tool.duration")}
    assert set(points) == {("search", None), ("send", "_OTHER")}
    search = points[("search", None)]
    assert (search.count, search.sum) == (2, 1.0)
    assert dict(search.attributes) == {"gen_ai.tool.name": "search", "gen_ai.agent.name": "A"}
    assert tuple(search.explicit_bounds) == DURATION_BUCKETS


def test_the_removed_metrics_are_not_emitted_by_default(otel: Otel) -> None:
    with otel.capture():
        run("A")
    assert otel.histogram("gen_ai.client.token.usage") == []
    assert otel.histogram("gen_ai.client.operation.duration") == []


@pytest.mark.parametrize("conventions", [PREVIOUS, DUP], ids=["previous", "dup"])
def test_previous_metrics_behind_the_setting(otel: Otel, conventions: Conventions) -> None:
    with otel.capture(conventions=conventions):
        run("A")
        run("B", {"success": True, "model": "gpt-4o", "provider": "openai",
                  "tokens": {"input_tokens": 10, "output_tokens": 5}})
        with pytest.raises(TimeoutError):
            run("A", fail=True)
    points = otel.histogram("gen_ai.client.token.usage")
    by_type = {dict(p.attributes)["gen_ai.token.type"]: p for p in points}
    assert set(by_type) == {"input", "output"}
    assert (by_type["input"].sum, by_type["input"].count) == (1010, 2)
    assert by_type["output"].sum == 205
    assert tuple(by_type["input"].explicit_bounds) == TOKEN_USAGE_BUCKETS
    assert dict(by_type["input"].attributes) == {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o",
        "gen_ai.token.type": "input",
    }
    durations = otel.histogram("gen_ai.client.operation.duration")
    assert sum(p.count for p in durations) == 3
    failed = next(p for p in durations if "error.type" in dict(p.attributes))
    assert dict(failed.attributes)["error.type"] == "TimeoutError"
    assert tuple(failed.explicit_bounds) == DURATION_BUCKETS
    current = otel.histogram("gen_ai.invocation.duration")
    assert sum(p.count for p in current) == (3 if conventions is DUP else 0)


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
    assert otel.histogram("gen_ai.invocation.duration") == []  # collection still works
