"""The real Strands ``Agent``, fully offline (a scripted ``strands.models.Model`` streaming
canned Bedrock-style events), with the ``strands`` adapter: records asserted field by field, in
the four tables of a real SQLite store and on the span."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

_VERSION = tuple(int(p) for p in importlib.metadata.version("strands-agents").split(".")[:2])
if _VERSION < (1, 0):
    message = (f"strands-agents {_VERSION} is installed; the adapter is built for >= 1.0 "
               "(pyproject's `strands` extra): .venv/bin/pip install -e '.[dev]'")
    if IN_CI:
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)
from strands import Agent, ToolContext, tool  # noqa: E402
from strands.agent.agent_result import AgentResult  # noqa: E402
from strands.models import Model  # noqa: E402
from strands.types.exceptions import MaxTokensReachedException  # noqa: E402

from instrument import logged_execution  # noqa: E402
from instrument.adapters import StreamedItems, detect_adapter, get_adapter  # noqa: E402
from instrument.adapters.conformance import Sample, check_adapter  # noqa: E402
from instrument.adapters.strands import conformance_samples  # noqa: E402
from instrument.record import ErrorInfo, ExecutionRecord, TokenUsage  # noqa: E402
from instrument.redact import Redactor  # noqa: E402
from instrument.testing import capture  # noqa: E402
from instrument.tracing.spans import Tracing  # noqa: E402
from tests.engines.rows import store_rows  # noqa: E402

#: Bedrock's convention: cache reads and writes are outside `inputTokens`, inside the total.
BEDROCK = {"inputTokens": 100, "outputTokens": 20, "totalTokens": 150,
           "cacheReadInputTokens": 20, "cacheWriteInputTokens": 10}
#: OpenAI's convention (through Strands' OpenAI provider): cached reads are inside the input.
OPENAI = {"inputTokens": 100, "outputTokens": 20, "totalTokens": 120,
          "cacheReadInputTokens": 40}


def tokens(per_request: dict[str, int], n: int = 1) -> TokenUsage:
    """The record's tokens for `n` requests reporting `per_request` (input includes cache)."""
    cache = per_request.get("cacheReadInputTokens", 0) + per_request.get(
        "cacheWriteInputTokens", 0)
    inside = per_request["inputTokens"] + per_request["outputTokens"] == \
        per_request["totalTokens"]
    write = per_request.get("cacheWriteInputTokens")
    return TokenUsage(
        input_tokens=n * (per_request["inputTokens"] + (0 if inside else cache)),
        output_tokens=n * per_request["outputTokens"],
        total_tokens=n * per_request["totalTokens"],
        cached_input_tokens=n * per_request["cacheReadInputTokens"],
        cache_write_input_tokens=None if write is None else n * write)


class ScriptedModel(Model):
    """A Strands model provider that streams one scripted turn per request."""

    def __init__(self, turns: list[dict[str, Any]]) -> None:
        self.turns = list(turns)
        self.config: dict[str, Any] = {"model_id": "scripted-1"}

    def update_config(self, **model_config: Any) -> None:
        self.config.update(model_config)

    def get_config(self) -> Any:
        return self.config

    async def structured_output(self, output_model: Any, prompt: Any,
                                system_prompt: str | None = None, **kwargs: Any
                                ) -> AsyncIterator[Any]:
        raise NotImplementedError("not scripted")
        yield {}  # pragma: no cover

    async def stream(self, messages: Any, tool_specs: Any = None,
                     system_prompt: str | None = None, **kwargs: Any) -> AsyncIterator[Any]:
        turn = self.turns.pop(0)
        yield {"messageStart": {"role": "assistant"}}
        for block in turn["content"]:
            if "text" in block:
                yield {"contentBlockStart": {"start": {}}}
                yield {"contentBlockDelta": {"delta": {"text": block["text"]}}}
            else:
                use = block["toolUse"]
                yield {"contentBlockStart": {"start": {"toolUse": {
                    "name": use["name"], "toolUseId": use["toolUseId"]}}}}
                yield {"contentBlockDelta": {"delta": {"toolUse": {
                    "input": json.dumps(use["input"])}}}}
            yield {"contentBlockStop": {}}
        yield {"messageStop": {"stopReason": turn["stop"]}}
        yield {"metadata": {"usage": turn["usage"], "metrics": {"latencyMs": 12}}}


def say(text: str, usage: dict[str, int] = BEDROCK, stop: str = "end_turn") -> dict[str, Any]:
    return {"content": [{"text": text}], "stop": stop, "usage": usage}


def use(*calls: tuple[str, str, dict[str, Any]], usage: dict[str, int] = BEDROCK
        ) -> dict[str, Any]:
    return {"content": [{"toolUse": {"name": n, "toolUseId": i, "input": a}}
                        for n, i, a in calls], "stop": "tool_use", "usage": usage}


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@tool
def broken_tool(city: str) -> str:
    """A tool whose backend is down."""
    raise RuntimeError("backend down at 10.0.0.7")


@tool(context=True)
def approve_refund(amount: int, tool_context: ToolContext) -> str:
    """Refunds `amount` once a human approved it."""
    answer = tool_context.interrupt("refund-approval", reason={"amount": amount})
    return f"refund {answer}"


def agent(*turns: dict[str, Any]) -> Agent:
    return Agent(model=ScriptedModel(list(turns)), callback_handler=None,
                 tools=[get_weather, broken_tool, approve_refund])


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


@pytest.fixture
def spans() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider, content_to_spans=False, redactor=Redactor()), exporter
    provider.shutdown()


def our_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans()
            if s.instrumentation_scope is not None
            and s.instrumentation_scope.name == "logged-execution"]


def our_span(exporter: InMemorySpanExporter) -> ReadableSpan:
    found = [s for s in our_spans(exporter) if s.name.startswith("invoke_")]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


# -- a finished run -----------------------------------------------------------------------------


def test_run_with_tools_in_the_record_the_span_and_the_four_tables(
        spans: tuple[Tracing, InMemorySpanExporter], tmp_path: Path) -> None:
    bot = agent(use(("get_weather", "t1", {"city": "Paris"}),
                    ("broken_tool", "t2", {"city": "Oslo"})),
                say("Sunny in Paris."))

    @logged_execution(agent_id="agent_id", user_id="user_id")
    def execute(agent_id: str, user_id: str, question: str) -> AgentResult:
        return bot(question)

    tracing, exporter = spans
    with capture(tracing=tracing, capture_content=True) as cap:
        returned = execute("weather-bot", "u-1", "Weather in Paris and Oslo?")
    assert isinstance(returned, AgentResult)
    r = only(cap)
    assert (r.engine, r.status, r.agent_id) == ("strands", "completed", "weather-bot")
    res = r.result
    assert (res.success, res.error, res.paused) == (True, None, False)
    assert res.response == "Sunny in Paris."
    assert res.iterations == 2
    # Bedrock leaves cache out of inputTokens: 2 x (100 + 20 read + 10 written)
    assert res.tokens == tokens(BEDROCK, 2) == TokenUsage(
        input_tokens=260, output_tokens=40, total_tokens=300, cached_input_tokens=40,
        cache_write_input_tokens=20)
    assert (res.model, res.request_model, res.provider) == (None, None, None)
    assert res.tool_calls is not None
    assert [(c.name, c.call_id, c.success, c.error) for c in res.tool_calls] == [
        ("get_weather", "t1", True, None), ("broken_tool", "t2", False, "RuntimeError")]
    for call in res.tool_calls:
        assert call.started_at is not None
        assert call.duration_ms is not None
        assert r.started_at <= call.started_at <= r.completed_at
        assert 0 <= call.duration_ms <= r.duration_ms
    assert res.extras == {"stop_reason": "end_turn", "cycles": 2, "model_latency_ms": 24.0}

    attrs = dict(our_span(exporter).attributes or {})
    assert attrs["instrument.status"] == "completed"
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (260, 40)
    assert "gen_ai.request.model" not in attrs
    assert "gen_ai.response.model" not in attrs
    # tool calls with a start time get their own execute_tool spans
    assert sorted(s.name for s in our_spans(exporter) if s.name.startswith("execute_tool")) == [
        "execute_tool broken_tool", "execute_tool get_weather"]

    rows = store_rows(cap.records, tmp_path / "strands.db")[0]
    ex = rows.execution
    assert (ex["engine"], ex["status"], ex["agent_id"], ex["user_id"], ex["model"]) == (
        "strands", "completed", "weather-bot", "u-1", None)
    assert (ex["input_tokens"], ex["output_tokens"], ex["total_tokens"]) == (260, 40, 300)
    logs = json.loads(ex["logs"])
    assert logs["response"] == "Sunny in Paris."
    assert [c["name"] for c in logs["tool_calls"]] == ["get_weather", "broken_tool"]
    assert (rows.log["status"], rows.log["run_tokens"]) == ("completed", 300)
    assert (rows.stats["run_count"], rows.stats["success_count"], rows.stats["total_tokens"]) == (
        1, 1, 300)
    assert (rows.intensity["total_executions"], rows.intensity["total_input_tokens"],
            rows.intensity["total_output_tokens"], rows.intensity["total_tool_calls"]) == (
        1, 260, 40, 2)


async def test_openai_style_usage_keeps_cached_input_inside_input() -> None:
    bot = agent(say("Hello.", usage=OPENAI))

    @logged_execution
    async def execute() -> AgentResult:
        return await bot.invoke_async("hi")

    with capture() as cap:
        await execute()
    res = only(cap).result
    # input + output == total: the cache is already inside inputTokens, nothing is added
    assert res.tokens == TokenUsage(input_tokens=100, output_tokens=20, total_tokens=120,
                                    cached_input_tokens=40)
    assert (res.iterations, res.tool_calls, res.response) == (1, [], None)  # content off


def test_one_agent_called_twice_gives_each_record_its_own_run() -> None:
    """The agent's metrics object is shared and keeps growing; each record is its own run."""
    bot = agent(say("First."), use(("get_weather", "t9", {"city": "Rome"}), usage=OPENAI),
                say("Second.", usage=OPENAI))

    @logged_execution
    def execute(question: str) -> AgentResult:
        return bot(question)

    with capture() as cap:
        first = execute("one")
        second = execute("two")
    assert first.metrics is second.metrics  # Strands' own sharing, which the adapter reads past
    one, two = (r.result for r in cap.records)
    assert (one.tokens, one.iterations, one.tool_calls) == (tokens(BEDROCK), 1, [])
    assert (two.tokens, two.iterations) == (tokens(OPENAI, 2), 2)
    assert [c.call_id for c in two.tool_calls or []] == ["t9"]
    assert two.extras["cycles"] == 2


# -- runs that stop without an exception ------------------------------------------------------


def test_an_interrupt_is_a_paused_run_and_the_resumed_run_completes(tmp_path: Path) -> None:
    bot = agent(use(("approve_refund", "r1", {"amount": 40})), say("Refund done."))

    @logged_execution(agent_id="agent_id")
    def execute(agent_id: str, prompt: Any) -> AgentResult:
        return bot(prompt)

    with capture(capture_content=True) as cap:
        paused = execute("refunds", "Refund my order")
        assert paused.stop_reason == "interrupt"
        answer = [{"interruptResponse": {"interruptId": paused.interrupts[0].id,
                                         "response": "approved"}}]
        resumed = execute("refunds", answer)
        assert resumed.stop_reason == "end_turn"
    first, second = cap.records
    assert (first.status, first.result.success, first.result.paused) == ("paused", True, True)
    assert first.result.error is None
    assert first.result.response is None  # an interrupt has no answer yet
    assert first.result.extras["interrupts"] == [{"id": paused.interrupts[0].id,
                                                  "name": "refund-approval"}]
    assert first.result.tokens == tokens(BEDROCK)
    assert [(c.name, c.call_id, c.success) for c in first.result.tool_calls or []] == [
        ("approve_refund", "r1", None)]  # waiting for the human, neither success nor failure
    assert second.status == "completed"
    assert second.result.response == "Refund done."
    assert [(c.name, c.success) for c in second.result.tool_calls or []] == [
        ("approve_refund", True)]
    assert (second.result.tokens, second.result.iterations) == (tokens(BEDROCK), 1)

    rows = store_rows([first], tmp_path / "paused.db")[0]
    assert (rows.execution["status"], rows.execution["total_tokens"]) == ("paused", 150)
    assert rows.log["status"] == "paused"


@pytest.mark.parametrize(("stop", "kwargs"), [
    ("limit_turns", {"limits": {"turns": 1}}),
    ("guardrail_intervened", {}),
    ("content_filtered", {}),
])
def test_stops_that_are_not_successes_are_failed_records(stop: str, kwargs: dict[str, Any],
                                                         tmp_path: Path) -> None:
    first = (use(("get_weather", "t1", {"city": "Lima"})) if stop == "limit_turns"
             else say("I can't help with that.", stop=stop))
    bot = agent(first, say("never reached"))

    @logged_execution(agent_id="agent_id")
    def execute(agent_id: str) -> AgentResult:
        return bot("question", **kwargs)

    with capture() as cap:
        assert execute("guarded").stop_reason == stop  # returned, no exception
    r = only(cap)
    assert (r.status, r.result.success, r.result.error.type if r.result.error else None) == (
        "failed", False, stop)
    assert r.result.tokens == tokens(BEDROCK)
    assert r.result.extras["stop_reason"] == stop
    ex = store_rows(cap.records, tmp_path / "stop.db")[0].execution
    assert (ex["status"], ex["total_tokens"]) == ("failed", 150)
    assert (ex["error_type"], json.loads(ex["logs"])["extras"]["stop_reason"]) == (stop, stop)


def test_max_tokens_raises_and_is_a_failed_record() -> None:
    bot = agent(say("The answer is", stop="max_tokens"))

    @logged_execution
    def execute() -> AgentResult:
        return bot("a long question")

    with capture() as cap, pytest.raises(MaxTokensReachedException):
        execute()
    r = only(cap)
    assert r.status == "failed"
    assert r.result.error is not None
    assert r.result.error.type == "MaxTokensReachedException"


def test_a_stop_reason_in_an_agent_result_maps_to_the_error_type() -> None:
    result = AgentResult(stop_reason="max_tokens", state={}, metrics=agent().event_loop_metrics,
                         message={"role": "assistant", "content": [{"text": "cut"}]})
    res = get_adapter("strands").normalize(result)
    assert (res.success, res.error) == (False, ErrorInfo(
        type="max_tokens", message="the model stopped at its output token cap"))


# -- streams ------------------------------------------------------------------------------------


async def test_yielded_stream_events_give_the_same_record_as_the_result() -> None:
    bot = agent(use(("get_weather", "t1", {"city": "Paris"})), say("Sunny."))

    @logged_execution
    async def execute() -> AsyncIterator[Any]:
        async for event in bot.stream_async("Weather?"):
            yield event

    with capture(capture_content=True) as cap:
        events = [e async for e in execute()]
    assert isinstance(events[-1]["result"], AgentResult)
    r = only(cap)
    assert (r.engine, r.status) == ("strands", "completed")
    res = r.result
    assert (res.tokens, res.iterations, res.response) == (tokens(BEDROCK, 2), 2, "Sunny.")
    assert [(c.name, c.call_id, c.success) for c in res.tool_calls or []] == [
        ("get_weather", "t1", True)]
    assert res.extras["streamed"] is True
    assert res.extras["stop_reason"] == "end_turn"


async def test_stream_closed_before_the_result_keeps_what_the_events_showed() -> None:
    bot = agent(use(("get_weather", "t1", {"city": "Paris"})), say("Sunny."))

    @logged_execution
    async def execute() -> AsyncIterator[Any]:
        async for event in bot.stream_async("Weather?"):
            yield event

    with capture() as cap:
        stream = execute()
        async for event in stream:
            message = event.get("message") if isinstance(event, dict) else None
            if message and message["role"] == "user":  # the tool's result: stop there
                break
        await stream.aclose()  # type: ignore[attr-defined]
    r = only(cap)
    res = r.result
    assert (r.status, res.success) == ("completed", True)
    assert res.tokens == tokens(BEDROCK)  # one request, its usage counted once
    assert res.iterations == 1
    assert [(c.name, c.call_id, c.success) for c in res.tool_calls or []] == [
        ("get_weather", "t1", True)]
    assert res.extras["complete"] is False
    assert res.extras["stream_closed_early"] is True


# -- detection and conformance ------------------------------------------------------------------


def test_detection_picks_strands_only_for_its_own_objects() -> None:
    result = agent(say("ok"))("hi")
    assert detect_adapter(result).name == "strands"
    assert detect_adapter(StreamedItems([{"init_event_loop": True}])).name == "strands"
    assert detect_adapter({"result": "not an AgentResult"}).name != "strands"
    assert detect_adapter(StreamedItems([{"data": "text"}])).name != "strands"


def test_conformance_on_real_results() -> None:
    """Real runs without tool calls: in a real run the model's toolUse block (its name and id)
    sits under `content`, which the checker's no-tool-payloads rule reads as a payload (a false
    positive on the tool's name); tool calls are asserted field by field above."""
    answered = agent(say("Hello."))("hi")
    blocked = agent(say("Blocked.", stop="guardrail_intervened"))("hi")
    unmeasured = {"retries", "steps", "model", "provider", "memory"}
    check_adapter(get_adapter("strands"), [
        *conformance_samples(),
        Sample(answered, unmeasured=unmeasured, label="real run"),
        Sample(blocked, unmeasured=unmeasured, label="real run, guardrail"),
    ])


def test_foreign_results_do_not_import_strands() -> None:
    from tests.conftest import run_python

    done = run_python(
        "import sys\n"
        "import instrument\n"
        "from instrument.adapters import get_adapter\n"
        "from instrument.adapters.registry import detect_adapter\n"
        "from instrument.adapters.protocol import StreamedItems\n"
        "a = get_adapter('strands')\n"
        "for r in ({'success': True}, StreamedItems([{'event': 1}]), 'text', 3):\n"
        "    a.matches(r); detect_adapter(r)\n"
        "print('strands' in sys.modules)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"

