"""Spans for every built-in engine: success, failure and streamed runs, through real adapters.

Result shapes follow the origin application (``WorkflowExecutionResult``,
``AgentKitExecutionResult``); the OpenAI engines run the real ``openai`` client against the
loopback stub and the real ``agents.Runner`` on a scripted model.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import agents
import openai
import pytest
from agents import Agent, Runner, function_tool
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from instrument import logged_execution
from tests.engines.fake_agents_model import TURN_USAGE, FakeModel, call, say
from tests.openai_stub import TEXT_USAGE, StubServer
from tests.tracing.conftest import Otel

agents.set_tracing_disabled(True)


def attrs_of(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def assert_ok(span: ReadableSpan, name: str, engine: str) -> dict[str, Any]:
    assert span.name == name
    assert span.kind is SpanKind.INTERNAL
    assert span.status.status_code is StatusCode.UNSET
    assert span.events == ()
    attrs = attrs_of(span)
    assert attrs["instrument.engine"] == engine
    assert attrs["instrument.status"] == "completed"
    assert "error.type" not in attrs
    return attrs


def assert_failed(span: ReadableSpan, error_type: str, *, event: bool) -> dict[str, Any]:
    assert span.status.status_code is StatusCode.ERROR
    attrs = attrs_of(span)
    assert attrs["error.type"] == error_type
    assert attrs["instrument.status"] == "failed"
    assert [e.name for e in span.events] == (
        ["gen_ai.client.operation.exception"] if event else [])
    return attrs


# -- orchestrator (WorkflowExecutionResult) -----------------------------------------------------


@logged_execution(agent_id="agent.id", user_id="user_id", name="lead-pipeline")
def pilot(agent: dict[str, str], user_id: str, fail_with: str | None = None) -> dict[str, Any]:
    if fail_with == "raise":
        raise ConnectionError("step runner lost")
    if fail_with:
        return {"success": False, "executionId": "x", "error": fail_with, "failedStep": "s3",
                "stepsCompleted": 2, "stepsFailed": 1, "stepsSkipped": 2,
                "totalExecutionTime": 800, "totalTokensUsed": 300}
    return {"success": True, "executionId": "x", "output": {"rows": 3},
            "stepsCompleted": 5, "stepsFailed": 0, "stepsSkipped": 1,
            "totalExecutionTime": 1200, "totalTokensUsed": 900}


def test_orchestrator_success(otel: Otel) -> None:
    with otel.capture() as cap:
        pilot({"id": "wf-1"}, "u1")
    assert cap.records[0].engine == "orchestrator"
    attrs = assert_ok(otel.span(), "invoke_workflow lead-pipeline", "orchestrator")
    assert attrs["gen_ai.operation.name"] == "invoke_workflow"
    assert attrs["gen_ai.workflow.name"] == "lead-pipeline"
    assert attrs["instrument.agent_id"] == "wf-1"  # gen_ai.agent.id is for hosted agents
    assert "gen_ai.agent.id" not in attrs
    assert (attrs["instrument.steps.completed"], attrs["instrument.steps.failed"],
            attrs["instrument.steps.skipped"]) == (5, 0, 1)
    # a single token total is not split into input/output (nothing is invented)
    assert "gen_ai.usage.input_tokens" not in attrs


def test_orchestrator_failed_result(otel: Otel) -> None:
    with otel.capture() as cap:
        pilot({"id": "wf-1"}, "u1", fail_with="Step s3 failed: timeout")
    error = cap.records[0].result.error
    assert error is not None
    attrs = assert_failed(otel.span(), error.type, event=False)
    assert attrs["instrument.steps.failed"] == 1


def test_orchestrator_exception_known_at_start(otel: Otel) -> None:
    @logged_execution(engine="orchestrator", name="nightly")
    def run() -> dict[str, Any]:
        raise ConnectionError("step runner lost")

    with otel.capture(), pytest.raises(ConnectionError):
        run()
    span = otel.span()
    assert span.name == "invoke_workflow nightly"
    assert_failed(span, "ConnectionError", event=True)


# -- agentkit (AgentKitExecutionResult) ---------------------------------------------------------


@logged_execution(agent_id="agent.id", agent_name="agent.name", user_id="user_id",
                  session_id="session_id")
def agentkit(agent: dict[str, str], user_id: str, session_id: str, outcome: str = "ok"
             ) -> dict[str, Any]:
    if outcome == "raise":
        raise RuntimeError("LLM gateway 502")
    base: dict[str, Any] = {
        "tokensUsed": {"prompt": 500, "completion": 120, "total": 620},
        "executionTime": 3000, "model": "gpt-4o", "provider": "openai",
        "toolCalls": [{"plugin": "gmail", "action": "send_email", "parameters": {"to": "x"},
                       "result": {"id": 1}, "success": True, "executionTime": 40}],
    }
    if outcome == "max_iterations":
        return {**base, "success": False, "error": "MAX_ITERATIONS_REACHED", "iterations": 10}
    return {**base, "success": True, "response": "Sent.", "iterations": 3,
            "memoryData": {"tokens": 50, "entryCount": 2, "types": ["summaries"]}}


def test_agentkit_success(otel: Otel) -> None:
    with otel.capture():
        agentkit({"id": "ak-1", "name": "Mailer"}, "u1", "sess-1")
    attrs = assert_ok(otel.span(), "invoke_agent Mailer", "agentkit")
    assert attrs["gen_ai.provider.name"] == "openai"
    # the result says which model ran, not which was asked: request.model stays unset
    assert attrs["gen_ai.response.model"] == "gpt-4o"
    assert "gen_ai.request.model" not in attrs
    assert attrs["gen_ai.usage.input_tokens"] == 500
    assert attrs["gen_ai.usage.output_tokens"] == 120
    assert attrs["gen_ai.conversation.id"] == "sess-1"
    assert attrs["instrument.iterations"] == 3
    assert attrs["instrument.tool_call_count"] == 1
    # a duration without a start time is no span (its real start is unknown)
    assert [s.name for s in otel.spans()] == ["invoke_agent Mailer"]


def test_agentkit_failed_result_and_exception(otel: Otel) -> None:
    with otel.capture():
        agentkit({"id": "ak-1", "name": "Mailer"}, "u1", "s", outcome="max_iterations")
        with pytest.raises(RuntimeError):
            agentkit({"id": "ak-1", "name": "Looper"}, "u1", "s", outcome="raise")
    raised, failed = sorted(otel.spans(), key=lambda s: s.name)
    assert failed.name == "invoke_agent Mailer"
    assert assert_failed(failed, "MAX_ITERATIONS_REACHED", event=False)[
        "instrument.iterations"] == 10
    assert_failed(raised, "RuntimeError", event=True)


# -- mapping (the fallback) ---------------------------------------------------------------------


def test_mapping_success_and_failure(otel: Otel) -> None:
    @logged_execution(agent_name="agent_name")
    def run(agent_name: str, ok: bool) -> dict[str, Any]:
        if not ok:
            raise KeyError("missing")
        return {"success": True, "tokens": {"input_tokens": 3, "output_tokens": 4}}

    with otel.capture():
        run("Plain", True)
        with pytest.raises(KeyError):
            run("Broken", False)
    spans = {s.name: s for s in otel.spans()}
    attrs = assert_ok(spans["invoke_agent Plain"], "invoke_agent Plain", "mapping")
    assert attrs["gen_ai.usage.output_tokens"] == 4
    assert_failed(spans["invoke_agent Broken"], "KeyError", event=True)


# -- openai_chat / openai_responses (the real client against the loopback stub) ---------------


@pytest.fixture(scope="module")
def stub() -> Iterator[StubServer]:
    with StubServer() as server:
        yield server


@pytest.fixture
def client(stub: StubServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=stub.base_url, api_key="test-key", max_retries=0)


def _dead_client() -> openai.OpenAI:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k", max_retries=0,
                         timeout=2)


def _usage_attrs(attrs: dict[str, Any]) -> tuple[Any, ...]:
    return (attrs.get("gen_ai.usage.input_tokens"), attrs.get("gen_ai.usage.output_tokens"),
            attrs.get("instrument.usage.cache_read.input_tokens"),
            attrs.get("instrument.usage.reasoning.output_tokens"))


TEXT = (TEXT_USAGE.prompt, TEXT_USAGE.completion, TEXT_USAGE.cached, TEXT_USAGE.reasoning)


@logged_execution(agent_name="agent_name")
def chat(agent_name: str, client: openai.OpenAI) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}])


@logged_execution(agent_name="agent_name")
def chat_stream(agent_name: str, client: openai.OpenAI) -> Iterator[Any]:
    yield from client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True,
        stream_options={"include_usage": True})


def test_openai_chat_success(otel: Otel, client: openai.OpenAI) -> None:
    with otel.capture():
        completion = chat("Chatty", client)
    attrs = assert_ok(otel.span(), "invoke_agent Chatty", "openai_chat")
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.response.model"] == completion.model
    assert "gen_ai.request.model" not in attrs  # the response says what answered only
    assert _usage_attrs(attrs) == TEXT


def test_openai_chat_streamed(otel: Otel, client: openai.OpenAI) -> None:
    with otel.capture(content=True):
        chunks = list(chat_stream("Streamy", client))
    assert chunks
    attrs = assert_ok(otel.span(), "invoke_agent Streamy", "openai_chat")
    assert _usage_attrs(attrs) == TEXT
    assert "gen_ai.output.messages" in attrs


def test_openai_chat_connection_failure(otel: Otel) -> None:
    with otel.capture(), pytest.raises(openai.APIConnectionError):
        chat("Offline", _dead_client())
    assert_failed(otel.span(), "APIConnectionError", event=True)


@logged_execution(agent_name="agent_name")
def respond(agent_name: str, client: openai.OpenAI) -> Any:
    return client.responses.create(model="gpt-4.1-mini", input="hello")


@logged_execution(agent_name="agent_name")
def respond_stream(agent_name: str, client: openai.OpenAI) -> Iterator[Any]:
    yield from client.responses.create(model="gpt-4.1-mini", input="hello", stream=True)


def test_openai_responses_success_and_streamed(otel: Otel, client: openai.OpenAI) -> None:
    with otel.capture():
        respond("Resp", client)
        events = list(respond_stream("RespStream", client))
    assert events
    spans = {s.name: s for s in otel.spans()}
    for name in ("invoke_agent Resp", "invoke_agent RespStream"):
        attrs = assert_ok(spans[name], name, "openai_responses")
        assert _usage_attrs(attrs) == TEXT
        assert attrs["gen_ai.response.model"].startswith("gpt-4.1-mini")
        assert "gen_ai.request.model" not in attrs


def test_openai_responses_connection_failure(otel: Otel) -> None:
    with otel.capture(), pytest.raises(openai.APIConnectionError):
        respond("Offline", _dead_client())
    assert_failed(otel.span(), "APIConnectionError", event=True)


# -- openai_agents (the real Runner on a scripted model) ----------------------------------------


@function_tool
def lookup(city: str) -> str:
    """Weather lookup."""
    return f"Sunny in {city}"


def _agent(script: Any) -> Agent[Any]:
    return Agent(name="Weather", tools=[lookup], model=FakeModel(script))


@logged_execution(agent_name=lambda a: "Weather")
async def run_agent(agent: Agent[Any], question: str) -> Any:
    return await Runner.run(agent, question)


async def test_openai_agents_run(otel: Otel) -> None:
    agent = _agent([[call("lookup", {"city": "Oslo"}, "call_1")], [say("Sunny.")]])
    with otel.capture():
        await run_agent(agent, "Weather in Oslo?")
    attrs = assert_ok(otel.span(), "handle_conversation_turn Weather", "openai_agents")
    inp, out, cached, reasoning = TURN_USAGE
    assert _usage_attrs(attrs) == (2 * inp, 2 * out, 2 * cached, 2 * reasoning)
    assert attrs["instrument.tool_call_count"] == 1


async def test_openai_agents_failure(otel: Otel) -> None:
    agent = _agent(lambda n: [call("lookup", {"city": "X"}, f"c{n}")])  # never answers
    limited = agent.clone(model=FakeModel(lambda n: [call("lookup", {"city": "X"}, f"c{n}")]))

    @logged_execution(agent_name=lambda a: "Loop")
    async def loop() -> Any:
        return await Runner.run(limited, "loop", max_turns=2)

    with otel.capture(), pytest.raises(agents.MaxTurnsExceeded):
        await loop()
    assert_failed(otel.span(), "MaxTurnsExceeded", event=True)


async def test_openai_agents_streamed_span_ends_with_the_stream(otel: Otel) -> None:
    agent = _agent([[say("Streaming hello.")]])

    @logged_execution(agent_name=lambda a: "Streamer")
    def start() -> Any:
        return Runner.run_streamed(agent, "hi")

    with otel.capture():
        streamed = start()
        assert otel.spans() == []  # returned, but still running: no span yet
        events = [e async for e in streamed.stream_events()]
    assert events
    attrs = assert_ok(otel.span(), "handle_conversation_turn Streamer", "openai_agents")
    assert attrs["gen_ai.usage.input_tokens"] == TURN_USAGE[0]


async def test_async_generator_of_agent_events(otel: Otel) -> None:
    agent = _agent([[say("Hi there.")]])

    @logged_execution(agent_name=lambda a: "EventGen")
    async def events() -> AsyncIterator[Any]:
        result = Runner.run_streamed(agent, "hi")
        async for event in result.stream_events():
            yield event

    with otel.capture():
        seen = [e async for e in events()]
    assert seen
    attrs = assert_ok(otel.span(), "handle_conversation_turn EventGen",
                      "openai_agents")
    assert attrs["instrument.engine"] == "openai_agents"
