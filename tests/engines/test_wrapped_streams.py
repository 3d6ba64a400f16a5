"""OpenAI streams returned through the real instrumentations that wrap them: OpenTelemetry's
``opentelemetry-instrumentation-openai-v2`` (a ``ChatStreamWrapper`` holding the stream in
``.stream``) and OpenInference's ``openinference-instrumentation-openai`` (a wrapt proxy whose
``__wrapped__`` is the stream), alone and stacked, with the real ``openai`` client against the
loopback stub. The record has the full tokens and model, the caller keeps the identical object,
and our span ends after the instrumentation's child span."""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
import wrapt
from openai import AsyncOpenAI, OpenAI
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from instrument import logged_execution
from instrument.adapters import detect_adapter, get_adapter
from instrument.adapters._wrapped import unwrap
from instrument.record import ExecutionRecord, TokenUsage
from instrument.redact import Redactor
from instrument.testing import capture
from instrument.tracing.spans import Tracing
from tests.engines.rows import store_rows
from tests.openai_stub import TEXT_USAGE, TOOL_USAGE, Usage

MODEL = "gpt-4o-mini"
OUR_SCOPE = "logged-execution"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"]}}}


def tokens(u: Usage) -> TokenUsage:
    return TokenUsage(input_tokens=u.prompt, output_tokens=u.completion, total_tokens=u.total,
                      cached_input_tokens=u.cached, reasoning_tokens=u.reasoning)


def msgs(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@dataclass
class Instrumented:
    kind: str
    exporter: InMemorySpanExporter
    provider: TracerProvider

    def tracing(self) -> Tracing:
        return Tracing(self.provider, content_to_spans=False, redactor=Redactor())

    def ours(self) -> ReadableSpan:
        found = [s for s in self.exporter.get_finished_spans()
                 if s.instrumentation_scope is not None
                 and s.instrumentation_scope.name == OUR_SCOPE]
        assert len(found) == 1, [s.name for s in self.exporter.get_finished_spans()]
        return found[0]

    def theirs(self) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans()
                if s.instrumentation_scope is None
                or s.instrumentation_scope.name != OUR_SCOPE]

    def assert_ours_ends_last(self, expected_children: int) -> None:
        ours = self.ours()
        children = self.theirs()
        assert len(children) == expected_children, [s.name for s in children]
        parents = {s.context.span_id: s.parent.span_id if s.parent else None
                   for s in self.exporter.get_finished_spans()}
        for child in children:
            ancestor = parents[child.context.span_id]
            while ancestor is not None and ancestor != ours.context.span_id:
                ancestor = parents.get(ancestor)
            assert ancestor == ours.context.span_id, child.name  # made inside our execution
            assert child.end_time is not None
            assert ours.end_time is not None
            assert child.end_time <= ours.end_time, (child.name, child.end_time, ours.end_time)


KINDS = {"otel": 1, "openinference": 1, "both": 2}  # child spans per chat call


@pytest.fixture(autouse=True)
def _restore_the_callers_context() -> Iterator[None]:
    """Undo what the instrumentations leave behind in the caller's context.

    They attach their span when the stream is created (inside our executor, where our span is
    current) and detach it when the stream ends, outside the executor: a ContextVar reset puts
    back the context of the moment they attached, so our (ended) span is current again in the
    caller after the stream is consumed. It happens with any span around the call that creates
    a stream (docs/adapters.md); here it would leak into the next test.
    """
    saved = otel_context.get_current()
    yield
    left = trace.get_current_span()
    if left.get_span_context().is_valid:
        assert not left.is_recording(), "a live span was left current"
        otel_context.attach(saved)  # no token to reset: the instrumentation consumed ours


@pytest.fixture(params=sorted(KINDS))
def instrumented(request: pytest.FixtureRequest) -> Iterator[Instrumented]:
    from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInference
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as OtelOpenAI

    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    kind: str = request.param
    active: list[Any] = []
    if kind in ("otel", "both"):
        active.append(OtelOpenAI())
    if kind in ("openinference", "both"):
        active.append(OpenInference())
    for instrumentor in active:
        instrumentor.instrument(tracer_provider=provider)
    try:
        yield Instrumented(kind, exporter, provider)
    finally:
        for instrumentor in reversed(active):
            instrumentor.uninstrument()
        provider.shutdown()


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


@pytest.mark.parametrize("engine", [None, "openai_chat"])
def test_returned_wrapped_stream_has_tokens_model_and_ends_after_the_child(
        instrumented: Instrumented, client: OpenAI, engine: str | None) -> None:
    made: list[Any] = []

    @logged_execution(engine=engine, agent_id="agent_id")
    def execute(agent_id: str) -> Any:
        stream = client.chat.completions.create(
            model=MODEL, messages=msgs("hi"), stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True})
        made.append(stream)
        return stream

    with capture(tracing=instrumented.tracing()) as cap:
        stream = execute("wrapped-agent")
        assert stream is made[0]  # the caller keeps the identical object
        assert type(stream) is not openai.Stream  # really wrapped by the instrumentation
        name = type(stream).__name__
        assert cap.records == []  # not consumed yet
        chunks = list(stream)
        assert type(stream).__name__ == name
    r = only(cap)
    assert (r.engine, r.status, r.agent_id) == ("openai_chat", "completed", "wrapped-agent")
    assert r.result.tokens == tokens(TEXT_USAGE)
    assert (r.result.model, r.result.provider) == (MODEL, "openai")
    assert r.result.extras["stream_chunks"] == len(chunks)
    assert "stream_closed_early" not in r.result.extras
    instrumented.assert_ours_ends_last(KINDS[instrumented.kind])


async def test_returned_wrapped_async_stream_closed_early(
        instrumented: Instrumented, aclient: AsyncOpenAI) -> None:
    @logged_execution
    async def execute() -> Any:
        return await aclient.chat.completions.create(
            model=MODEL, messages=msgs("SLOW_STREAM please"), stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True})

    with capture(tracing=instrumented.tracing()) as cap:
        stream = await execute()
        seen = 0
        # `async with`, not `await stream.close()`: OpenTelemetry's wrapper (2.4b0) calls the
        # async stream's close() without awaiting it, so `await wrapper.close()` fails.
        async with stream:
            async for _chunk in stream:
                seen += 1
                if seen == 3:
                    break
    r = only(cap)
    assert r.engine == "openai_chat"
    assert r.result.extras["stream_closed_early"] is True
    assert r.result.extras["stream_chunks"] == 3
    assert r.result.tokens is None  # the usage chunk never arrived
    assert r.result.model == MODEL
    # Stacked, OpenTelemetry's __aexit__ ends its span without closing what it wraps, so
    # OpenInference's span (inside it) stays open: only the outer child span has ended.
    instrumented.assert_ours_ends_last(1)


def test_wrapped_stream_failing_midway_is_a_failed_record(
        instrumented: Instrumented, client: OpenAI) -> None:
    @logged_execution
    def execute() -> Any:
        return client.chat.completions.create(model=MODEL, messages=msgs("STREAM_ERROR"),  # type: ignore[arg-type]
                                              stream=True)

    with capture(tracing=instrumented.tracing()) as cap:
        stream = execute()
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass
    r = only(cap)
    assert (r.engine, r.status) == ("openai_chat", "failed")
    assert r.result.error is not None
    assert r.result.error.type == "APIError"
    instrumented.assert_ours_ends_last(KINDS[instrumented.kind])


def test_wrapped_tool_call_stream_in_the_four_tables(
        instrumented: Instrumented, client: OpenAI, tmp_path: Path) -> None:
    @logged_execution(agent_id="agent_id")
    def execute(agent_id: str) -> Any:
        return client.chat.completions.create(
            model=MODEL, messages=msgs("weather?"), tools=[WEATHER_TOOL],  # type: ignore[arg-type,list-item]
            stream=True, stream_options={"include_usage": True})

    with capture(tracing=instrumented.tracing()) as cap:
        with execute("tool-agent") as stream:
            chunks = list(stream)
    call_id = next(c.choices[0].delta.tool_calls[0].id for c in chunks
                   if c.choices and c.choices[0].delta.tool_calls)
    r = only(cap)
    assert r.result.tokens == tokens(TOOL_USAGE)
    assert r.result.tool_calls is not None
    assert [(c.name, c.call_id) for c in r.result.tool_calls] == [("get_weather", call_id)]
    instrumented.assert_ours_ends_last(KINDS[instrumented.kind])

    rows = store_rows(cap.records, tmp_path / "wrapped.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["model"], ex["provider"]) == (
        "openai_chat", "completed", MODEL, "openai")
    assert (ex["input_tokens"], ex["output_tokens"], ex["total_tokens"]) == (
        TOOL_USAGE.prompt, TOOL_USAGE.completion, TOOL_USAGE.total)
    assert ex["trace_id"] == format(instrumented.ours().context.trace_id, "032x")
    assert json.loads(ex["logs"])["extras"]["finish_reasons"] == ["tool_calls"]
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", TOOL_USAGE.total)
    assert (rows.stats["run_count"], rows.stats["total_tokens"],
            rows.stats["token_run_count"]) == (1, TOOL_USAGE.total, 1)
    assert (rows.intensity["total_executions"], rows.intensity["total_tokens_used"],
            rows.intensity["total_input_tokens"], rows.intensity["total_output_tokens"],
            rows.intensity["total_tool_calls"]) == (
        1, TOOL_USAGE.total, TOOL_USAGE.prompt, TOOL_USAGE.completion, 1)


def test_wrapped_stream_dropped_unread_is_recorded(instrumented: Instrumented,
                                                   client: OpenAI) -> None:
    @logged_execution
    def execute() -> Any:
        return client.chat.completions.create(model=MODEL, messages=msgs("hi"), stream=True)  # type: ignore[arg-type]

    with capture(tracing=instrumented.tracing()) as cap:
        stream = execute()
        inner = unwrap(stream, lambda s: type(s) is openai.Stream)
        assert inner is not None
        inner.response.close()
        del stream, inner
        gc.collect()
    r = only(cap)
    assert r.result.extras["stream_closed_early"] is True
    assert r.result.extras["stream_chunks"] == 0


def test_wrapped_responses_stream(instrumented: Instrumented, client: OpenAI) -> None:
    """OpenInference wraps Responses streams too (OpenTelemetry's 2.4b0 does not)."""

    @logged_execution
    def execute() -> Any:
        return client.responses.create(model=MODEL, input="hi", stream=True)

    with capture(tracing=instrumented.tracing()) as cap:
        stream = execute()
        wrapped = type(stream) is not openai.Stream
        assert wrapped == (instrumented.kind != "otel")
        events = list(stream)
    r = only(cap)
    assert r.engine == "openai_responses"
    assert r.result.tokens == tokens(TEXT_USAGE)
    assert r.result.model == MODEL
    assert r.result.extras["stream_events"] == len(events)
    instrumented.assert_ours_ends_last(1 if wrapped else 0)


# -- recognized by behaviour, not by name ---------------------------------------------------


class Relabelled(wrapt.ObjectProxy):  # type: ignore[misc]
    """A proxy that behaves like OpenInference's under a name no adapter knows."""

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return self.__wrapped__.__next__()


class Holder:
    """A plain wrapper like OpenTelemetry's: the stream in ``.stream``, no ``__wrapped__``."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        return next(self.stream)

    def close(self) -> None:
        self.stream.close()


class Final(Holder):
    """A wrapper that refuses subclasses: followed through the real stream only."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("final")


@pytest.mark.parametrize("wrap", [Relabelled, Holder, Final,
                                  lambda s: Holder(Relabelled(s))])
def test_any_wrapper_that_behaves_like_one_is_followed(client: OpenAI, wrap: Any) -> None:
    @logged_execution
    def execute() -> Any:
        return wrap(client.chat.completions.create(
            model=MODEL, messages=msgs("hi"), stream=True,  # type: ignore[arg-type]
            stream_options={"include_usage": True}))

    with capture() as cap:
        stream = execute()
        assert detect_adapter(stream).name == "openai_chat"
        assert get_adapter("openai_responses").matches(stream) is False
        chunks = list(stream)
    r = only(cap)
    assert r.engine == "openai_chat"
    assert r.result.tokens == tokens(TEXT_USAGE)
    assert r.result.extras["stream_chunks"] == len(chunks)


def test_unwrap_stops_at_foreign_objects() -> None:
    class Loop:
        def __next__(self) -> Any:
            raise StopIteration

        @property
        def __wrapped__(self) -> Any:
            return self

    class Deep:
        def __init__(self, n: int) -> None:
            self.stream = Deep(n - 1) if n else iter(())

        def __next__(self) -> Any:
            raise StopIteration

    def is_iter(obj: object) -> bool:
        return type(obj).__name__ == "list_iterator"

    assert unwrap(Loop(), is_iter) is None
    assert unwrap(Deep(3), lambda o: type(o).__name__ == "tuple_iterator") is not None
    assert unwrap(Deep(20), lambda o: type(o).__name__ == "tuple_iterator") is None  # too deep
    assert unwrap(iter([1]), is_iter) is not None
    assert unwrap({"stream": iter([1])}, is_iter) is None  # a dict does not iterate itself
