"""One span per execution: names, kinds, attributes, parentage, status and events."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import Attributes

from instrument import current_execution, logged_execution
from instrument.adapters import StreamedItems, register_adapter
from instrument.adapters.registry import unregister_adapter
from instrument.config import resolve_settings
from instrument.record import ExecutionResult, TokenUsage
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.tracing.conftest import Otel, children_of, tracing_for

SECRET = "sk-live0123456789abcdef"


def _result(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "success": True, "model": "gpt-4o-2024-08-06", "provider": "openai",
        "tokens": {"input_tokens": 120, "output_tokens": 30, "cached_input_tokens": 20,
                   "reasoning_tokens": 7},
        "iterations": 2,
        "steps": {"completed": 3, "failed": 1, "skipped": 0},
        "tool_calls": [{"name": "search"}, {"name": "fetch"}],
        "extras": {"ais_score": 6.5},
    }
    base.update(over)
    return base


@logged_execution(engine="mapping", agent_id="agent_id", user_id="user_id",
                  agent_name="agent_name", session_id="session_id", execution_type="scheduled")
def run_agent(agent_id: str, user_id: str, agent_name: str, session_id: str,
              result: dict[str, Any] | None = None, fail: BaseException | None = None
              ) -> dict[str, Any]:
    if fail is not None:
        raise fail
    return result if result is not None else _result()


def test_success_span_carries_genai_and_instrument_attributes(otel: Otel) -> None:
    with otel.capture() as cap:
        returned = run_agent("ag-1", "u-1", "Planner", "sess-9")
    assert returned["model"] == "gpt-4o-2024-08-06"
    span = otel.span()
    record = cap.records[0]
    assert span.name == "invoke_agent Planner"
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
    assert dict(span.attributes or {}) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.invocation.is_nested": False,
        "gen_ai.provider.name": "openai",
        # the result's model is the one that answered; what was asked is unknown here
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.agent.name": "Planner",
        "gen_ai.conversation.id": "sess-9",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 30,
        "user.id": "u-1",
        # our agent id (gen_ai.agent.id means a hosted agent resource now)
        "instrument.agent_id": "ag-1",
        "instrument.name": "Planner",
        # the usage breakdown belongs on inference spans: ours, namespaced
        "instrument.usage.cache_read.input_tokens": 20,
        "instrument.usage.reasoning.output_tokens": 7,
        "instrument.execution_id": str(record.execution_id),
        "instrument.engine": "mapping",
        "instrument.execution_type": "scheduled",
        "instrument.status": "completed",
        "instrument.iterations": 2,
        "instrument.steps.completed": 3,
        "instrument.steps.failed": 1,
        "instrument.steps.skipped": 0,
        "instrument.tool_call_count": 2,
        "instrument.intensity_score": 6.5,
    }
    # One can jump from a database row to the trace: the ids on the record are the span's.
    assert record.trace_id == format(span.context.trace_id, "032x")
    assert record.span_id == format(span.context.span_id, "016x")


def test_unmeasured_fields_are_absent_not_zero(otel: Otel) -> None:
    with otel.capture():
        run_agent("ag-1", "u-1", "Planner", "s", result={"success": True})
    attrs = dict(otel.span().attributes or {})
    for key in ("gen_ai.usage.input_tokens", "gen_ai.provider.name", "gen_ai.request.model",
                "instrument.iterations", "instrument.tool_call_count", "error.type",
                "instrument.intensity_score", "gen_ai.output.messages"):
        assert key not in attrs


def test_exception_sets_error_status_event_and_is_reraised_unchanged(otel: Otel) -> None:
    boom = ValueError(f"upstream refused key {SECRET}")
    with otel.capture() as cap, pytest.raises(ValueError) as caught:
        run_agent("ag-1", "u-1", "Planner", "s", fail=boom)
    assert caught.value is boom
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert span.status.description.startswith("ValueError: upstream refused key")
    assert SECRET not in span.status.description
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == "ValueError"
    assert attrs["instrument.status"] == "failed"
    assert [e.name for e in span.events] == ["gen_ai.client.operation.exception"]
    event = dict(span.events[0].attributes or {})
    assert set(event) == {"exception.type", "exception.message", "exception.stacktrace"}
    assert event["exception.type"] == "ValueError"
    assert event["exception.message"] == "upstream refused key [REDACTED]"
    assert SECRET not in str(event["exception.stacktrace"])
    assert "run_agent" in str(event["exception.stacktrace"])
    assert cap.records[0].result.error is not None
    assert cap.records[0].status == "failed"


def test_failed_result_without_exception_is_an_error_without_event(otel: Otel) -> None:
    with otel.capture():
        run_agent("ag-1", "u-1", "Planner", "s", result={
            "success": False, "error": {"type": "MAX_ITERATIONS_REACHED", "message": "gave up"}})
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "MAX_ITERATIONS_REACHED: gave up"
    assert dict(span.attributes or {})["error.type"] == "MAX_ITERATIONS_REACHED"
    assert span.events == ()


def test_spans_created_inside_the_executor_are_children_of_ours(otel: Otel) -> None:
    # An instrumentation inside the executor may use a different provider (the app's):
    # what matters is the active context, which the decorator sets while the executor runs.
    other_exporter = InMemorySpanExporter()
    other = TracerProvider(shutdown_on_exit=False)
    other.add_span_processor(SimpleSpanProcessor(other_exporter))
    seen: dict[str, Any] = {}

    @logged_execution(agent_name="agent_name")
    def run(agent_name: str) -> dict[str, Any]:
        with otel.tracer_provider.get_tracer("openai-ish").start_as_current_span("chat gpt-4o"):
            pass
        with other.get_tracer("http").start_as_current_span("POST"):
            pass
        ctx = current_execution()
        assert ctx is not None
        seen["ctx"] = ctx
        return {"success": True}

    with otel.capture():
        run("Child")
    ours = otel.span()
    inner = [s for s in otel.spans() if s.name == "chat gpt-4o"]
    assert children_of(otel.spans(), ours) == inner
    (http,) = other_exporter.get_finished_spans()
    assert http.parent is not None
    assert http.parent.span_id == ours.context.span_id
    assert http.context.trace_id == ours.context.trace_id
    # current_execution() exposes the same trace ids as the span.
    assert seen["ctx"].trace_id == format(ours.context.trace_id, "032x")
    # And outside the call, nothing of ours stays attached.
    assert not trace.get_current_span().get_span_context().is_valid


def test_ours_is_a_child_of_the_callers_span(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("web")
    with otel.capture(), tracer.start_as_current_span("GET /run") as outer:
        run_agent("ag", "u", "Nested", "s")
    span = otel.span()
    assert span.parent is not None
    assert span.parent.span_id == outer.get_span_context().span_id


def test_auto_detected_orchestrator_becomes_invoke_workflow(otel: Otel) -> None:
    @logged_execution(agent_id="agent_id", name="nightly-digest")
    def workflow(agent_id: str) -> dict[str, Any]:
        return {"success": True, "stepsCompleted": 4, "stepsFailed": 0, "stepsSkipped": 1,
                "totalExecutionTime": 900, "totalTokensUsed": 1500}

    with otel.capture() as cap:
        workflow("wf-1")
    assert cap.records[0].engine == "orchestrator"
    span = otel.span()
    assert span.name == "invoke_workflow nightly-digest"
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "invoke_workflow"
    assert attrs["gen_ai.workflow.name"] == "nightly-digest"
    assert attrs["instrument.engine"] == "orchestrator"
    assert attrs["instrument.steps.completed"] == 4
    assert attrs["instrument.steps.skipped"] == 1


def test_tool_calls_with_timings_become_child_spans_at_their_real_times(otel: Otel) -> None:
    t0 = dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    calls = [
        {"name": "search", "plugin": "google", "action": "query", "call_id": "c1",
         "success": True, "started_at": t0.isoformat(), "duration_ms": 250.5,
         "items_returned": 3},
        {"name": "send", "call_id": "c2", "success": False, "error": f"bad token {SECRET}",
         "started_at": (t0 + dt.timedelta(seconds=1)).isoformat(), "duration_ms": 10},
        {"name": "untimed", "call_id": "c3", "success": True},
    ]
    with otel.capture():
        run_agent("ag", "u", "Tooler", "s", result=_result(tool_calls=calls))
    parent = otel.span()
    tools = sorted(children_of(otel.spans(), parent), key=lambda s: s.start_time or 0)
    assert [s.name for s in tools] == ["execute_tool search", "execute_tool send"]
    search, send = tools
    base_ns = 1767323045123456000  # t0 in ns since the epoch (exact, no float rounding)
    assert search.start_time == base_ns
    assert search.end_time == base_ns + 250_500_000
    assert send.start_time == base_ns + 1_000_000_000
    assert send.end_time == base_ns + 1_010_000_000
    assert search.kind is SpanKind.INTERNAL
    assert search.context.trace_id == parent.context.trace_id
    assert dict(search.attributes or {}) == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "search",
        "gen_ai.tool.call.id": "c1",
        "gen_ai.agent.name": "Tooler",
        "gen_ai.conversation.id": "s",
        "instrument.execution_id": dict(parent.attributes or {})["instrument.execution_id"],
        "instrument.tool.plugin": "google",
        "instrument.tool.action": "query",
        "instrument.tool.items_returned": 3,
    }
    assert search.status.status_code is StatusCode.UNSET
    assert send.status.status_code is StatusCode.ERROR
    assert send.status.description == "bad token [REDACTED]"
    assert dict(send.attributes or {})["error.type"] == "_OTHER"
    assert dict(parent.attributes or {})["instrument.tool_call_count"] == 3


class _RecordingSampler(Sampler):
    """A real SDK sampler that remembers what it was asked to decide on."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None, trace_state: Any = None
                      ) -> SamplingResult:
        self.seen.append((name, dict(attributes or {})))
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        return "recording"


def test_sampling_relevant_attributes_are_set_at_start() -> None:
    sampler = _RecordingSampler()
    tp = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    with capture(tracing=Tracing(tp)) as cap:
        run_agent("ag-7", "u-7", "Sampled", "s-7")
    name, attrs = next((n, a) for n, a in sampler.seen if n.startswith("invoke_agent"))
    assert name == "invoke_agent Sampled"
    assert attrs == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.invocation.is_nested": False,
        "gen_ai.agent.name": "Sampled",
        "gen_ai.conversation.id": "s-7",
        "user.id": "u-7",
        "instrument.agent_id": "ag-7",
        "instrument.name": "Sampled",
        "instrument.engine": "mapping",
        "instrument.execution_type": "scheduled",
        "instrument.execution_id": str(cap.records[0].execution_id),
    }


def test_an_unsampled_execution_still_records_and_counts(otel: Otel) -> None:
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    with capture(tracing=Tracing(tp, otel.meter_provider)) as cap:
        run_agent("ag", "u", "Dropped", "s")
    assert exporter.get_finished_spans() == ()
    assert len(cap.records) == 1
    (point,) = otel.metric_points("instrument.executions")
    assert point.value == 1


# -- streamed executions --------------------------------------------------------------------


class _TokenStreamAdapter:
    """A third-party engine whose executors yield text tokens and finally a usage dict."""

    name = "token_stream_test"

    def matches(self, result: object) -> bool:
        return isinstance(result, StreamedItems) and any(
            isinstance(i, dict) and "usage" in i for i in result)

    def normalize(self, result: object) -> ExecutionResult:
        assert isinstance(result, StreamedItems)
        usage = next(i["usage"] for i in result if isinstance(i, dict) and "usage" in i)
        text = "".join(i for i in result if isinstance(i, str))
        return ExecutionResult(success=True, response=text, model="m-stream",
                               provider="openai", tokens=TokenUsage(**usage))


@pytest.fixture
def token_stream() -> Iterator[None]:
    register_adapter(_TokenStreamAdapter(), replace=True)
    yield
    unregister_adapter("token_stream_test")


@logged_execution(agent_name="agent_name")
def stream_agent(agent_name: str, fail_after: int | None = None) -> Iterator[Any]:
    for i, tok in enumerate(["Hel", "lo ", "world"]):
        if fail_after is not None and i == fail_after:
            raise RuntimeError("stream broke")
        yield tok
    yield {"usage": {"input_tokens": 9, "output_tokens": 3}}


@logged_execution(agent_name="agent_name")
async def astream_agent(agent_name: str) -> AsyncIterator[Any]:
    for tok in ["a", "b"]:
        await asyncio.sleep(0)
        yield tok
    yield {"usage": {"input_tokens": 1, "output_tokens": 2}}


@pytest.mark.usefixtures("token_stream")
def test_streamed_generator_gets_one_span_after_exhaustion(otel: Otel) -> None:
    with otel.capture(content=True) as cap:
        gen = stream_agent("Streamer")
        first = next(gen)
        assert first == "Hel"
        assert otel.spans() == []  # still running: the span ends when the stream ends
        rest = list(gen)
    assert len(rest) == 3
    span = otel.span()
    assert span.name == "invoke_agent Streamer"
    attrs = dict(span.attributes or {})
    assert attrs["instrument.engine"] == "token_stream_test"
    assert attrs["gen_ai.usage.input_tokens"] == 9
    assert attrs["gen_ai.output.messages"] == (
        '[{"role":"assistant","parts":[{"type":"text","content":"Hello world"}]}]')
    assert cap.records[0].span_id == format(span.context.span_id, "016x")
    assert span.status.status_code is StatusCode.UNSET


@pytest.mark.usefixtures("token_stream")
def test_streamed_generator_failure_is_an_error_span(otel: Otel) -> None:
    with otel.capture(), pytest.raises(RuntimeError, match="stream broke"):
        list(stream_agent("Streamer", fail_after=1))
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "RuntimeError"
    assert [e.name for e in span.events] == ["gen_ai.client.operation.exception"]


@pytest.mark.usefixtures("token_stream")
def test_streamed_generator_closed_early_still_ends_its_span(otel: Otel) -> None:
    with otel.capture() as cap:
        gen = stream_agent("Streamer")
        next(gen)
        gen.close()
    span = otel.span()
    assert cap.records[0].result.extras.get("stream_closed_early") is True
    assert span.end_time is not None


@pytest.mark.usefixtures("token_stream")
async def test_async_generator_stream(otel: Otel) -> None:
    with otel.capture():
        items = [i async for i in astream_agent("AsyncStreamer")]
    assert items[:2] == ["a", "b"]
    span = otel.span()
    assert span.name == "invoke_agent AsyncStreamer"
    assert dict(span.attributes or {})["gen_ai.usage.output_tokens"] == 2


async def test_async_executor_and_its_inner_spans(otel: Otel) -> None:
    @logged_execution(agent_name="agent_name")
    async def run(agent_name: str) -> dict[str, Any]:
        await asyncio.sleep(0)
        with otel.tracer_provider.get_tracer("x").start_as_current_span("inner"):
            await asyncio.sleep(0)
        return {"success": True, "model": "m"}

    with otel.capture():
        await asyncio.gather(run("A"), run("B"))
    agents = {s.name: s for s in otel.spans() if s.name.startswith("invoke_agent")}
    assert set(agents) == {"invoke_agent A", "invoke_agent B"}
    inner = [s for s in otel.spans() if s.name == "inner"]
    assert sorted(s.parent.span_id for s in inner if s.parent) == sorted(
        a.context.span_id for a in agents.values())


def test_otel_sdk_disabled_means_no_tracing() -> None:
    settings = resolve_settings(environ={"OTEL_SDK_DISABLED": "true"})
    assert tracing_for(settings) is None


def test_without_any_exporter_spans_are_unrecorded_but_ids_still_flow(otel: Otel) -> None:
    tracing = tracing_for(resolve_settings(environ={}))
    assert tracing is not None
    assert tracing.record_spans is False  # our own provider, nothing exports: skip the work
    inner_parent: list[int] = []

    @logged_execution(agent_name="agent_name")
    def run(agent_name: str) -> dict[str, Any]:
        with otel.tracer_provider.get_tracer("lib").start_as_current_span("inner") as inner:
            assert inner.parent is not None
            inner_parent.append(inner.parent.span_id)
        return {"success": True}

    outer_tracer = otel.tracer_provider.get_tracer("web")
    with capture(tracing=tracing) as cap:
        run("Quiet")
        with outer_tracer.start_as_current_span("GET /x") as outer:
            run("Nested")
    first, nested = cap.records
    assert first.trace_id is not None
    assert len(first.trace_id) == 32
    assert first.span_id is not None
    assert inner_parent[0] == int(first.span_id, 16)
    assert nested.trace_id == format(outer.get_span_context().trace_id, "032x")
    assert {s.name for s in otel.spans()} == {"inner", "GET /x"}


def test_workflow_span_is_named_after_the_operation_not_the_agent(otel: Otel) -> None:
    @logged_execution(engine="orchestrator", agent_name="agent_name", name="etl")
    def wf(agent_name: str) -> dict[str, Any]:
        return {"success": True, "stepsCompleted": 1}

    sampler = _RecordingSampler()
    tp = TracerProvider(sampler=sampler, shutdown_on_exit=False)
    tp.add_span_processor(SimpleSpanProcessor(otel.exporter))
    with capture(tracing=Tracing(tp)):
        wf("Loader")
    assert [n for n, _ in sampler.seen] == ["invoke_workflow etl"]
    span = otel.span()
    assert span.name == "invoke_workflow etl"
    assert dict(span.attributes or {})["gen_ai.agent.name"] == "Loader"


@pytest.mark.usefixtures("token_stream")
def test_spans_inside_each_generator_step_are_children_of_ours(otel: Otel) -> None:
    tracer = otel.tracer_provider.get_tracer("lib")

    @logged_execution(agent_name="agent_name")
    def gen(agent_name: str) -> Iterator[Any]:
        for tok in ("a", "b"):
            with tracer.start_as_current_span(f"step {tok}"):
                pass
            yield tok
        yield {"usage": {"input_tokens": 1, "output_tokens": 1}}

    with otel.capture():
        for _ in gen("Stepper"):
            # between steps the caller's context is its own, not ours
            assert not trace.get_current_span().get_span_context().is_valid
    ours = otel.span()
    steps = [s for s in otel.spans() if s.name.startswith("step ")]
    assert len(steps) == 2
    assert all(s.parent is not None and s.parent.span_id == ours.context.span_id for s in steps)

