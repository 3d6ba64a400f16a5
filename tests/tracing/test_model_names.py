"""Model asked vs model answered (issue 16): ``gen_ai.request.model`` is what was asked,
``gen_ai.response.model`` what answered, each only when known.

The real ``openai`` client (and the real Agents SDK with its real ``OpenAIResponsesModel``)
talks to the loopback stub, which answers a plain ``gpt-4o-mini`` request with the dated
snapshot ``gpt-4o-mini-2025-01-01``, as the API does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import agents
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner

from instrument import logged_execution
from instrument.record import ExecutionResult
from instrument.tracing import semconv as sc
from tests.openai_stub import StubServer
from tests.tracing.conftest import Otel
from tests.tracing.semconv_check import check, from_sdk

agents.set_tracing_disabled(True)

ASKED = "gpt-4o-mini"
ANSWERED = "gpt-4o-mini-2025-01-01"


@pytest.fixture(scope="module")
def dated() -> Iterator[StubServer]:
    with StubServer(answer_models={ASKED: ANSWERED}) as server:
        yield server


def _attrs(otel: Otel, prefix: str | tuple[str, ...] = ("invoke_", "handle_")) -> dict[str, Any]:
    return dict(otel.span(prefix).attributes or {})


def _conformant(otel: Otel) -> None:
    assert check(*from_sdk(otel.spans(), otel.reader.get_metrics_data())) == []


@logged_execution(agent_name="agent_name")
def chat(agent_name: str, client: openai.OpenAI) -> Any:
    return client.chat.completions.create(
        model=ASKED, messages=[{"role": "user", "content": "hello"}])


@logged_execution(agent_name="agent_name")
def chat_stream(agent_name: str, client: openai.OpenAI) -> Iterator[Any]:
    yield from client.chat.completions.create(
        model=ASKED, messages=[{"role": "user", "content": "hello"}], stream=True,
        stream_options={"include_usage": True})


@logged_execution(agent_name="agent_name")
def respond(agent_name: str, client: openai.OpenAI) -> Any:
    return client.responses.create(model=ASKED, input="hello")


@pytest.mark.parametrize("executor", [chat, chat_stream, respond],
                         ids=["chat", "chat-streamed", "responses"])
def test_raw_clients_report_what_answered_and_never_pass_it_off_as_asked(
        executor: Any, otel: Otel, dated: StubServer) -> None:
    client = openai.OpenAI(base_url=dated.base_url, api_key="k", max_retries=0)
    with otel.capture() as cap:
        out = executor("Raw", client)
        if not hasattr(out, "model"):
            list(out)
    assert dated.requests[-1][1]["model"] == ASKED  # what the client asked for on the wire
    result = cap.records[0].result
    assert (result.model, result.request_model) == (ANSWERED, None)
    attrs = _attrs(otel)
    assert attrs[sc.RESPONSE_MODEL] == ANSWERED
    # the completion does not say what was asked: absent, not the answered name
    assert sc.REQUEST_MODEL not in attrs
    (point,) = otel.histogram(sc.METRIC_INVOCATION_DURATION)
    assert sc.REQUEST_MODEL not in point.attributes
    _conformant(otel)


def test_the_previous_names_keep_the_answered_model_in_request_model(
        otel: Otel, dated: StubServer) -> None:
    """gen_ai/previous reproduces what dashboards built on v1.41 saw, documented as such."""
    client = openai.OpenAI(base_url=dated.base_url, api_key="k", max_retries=0)
    with otel.capture(conventions=sc.PREVIOUS):
        chat("Raw", client)
    attrs = _attrs(otel)
    assert (attrs[sc.REQUEST_MODEL], attrs[sc.RESPONSE_MODEL]) == (ANSWERED, ANSWERED)


def _agent(stub: StubServer, name: str = "Weather") -> Agent[Any]:
    model = OpenAIResponsesModel(model=ASKED, openai_client=openai.AsyncOpenAI(
        base_url=stub.base_url, api_key="k", max_retries=0))
    return Agent(name=name, instructions="Answer briefly.", model=model)


@logged_execution(agent_name="agent.name")
async def streamed_events(agent: Agent[Any], question: str) -> AsyncIterator[Any]:
    """Yielded events carry the raw ``response.completed``: what answered is known."""
    result = Runner.run_streamed(agent, question)
    async for event in result.stream_events():
        yield event


@logged_execution(agent_name="agent.name")
async def run_once(agent: Agent[Any], question: str) -> Any:
    return await Runner.run(agent, question)


@logged_execution(engine="orchestrator", name="desk")
async def desk(agent: Agent[Any], question: str, *, streamed: bool) -> dict[str, Any]:
    if streamed:
        async for _ in streamed_events(agent, question):
            pass
    else:
        await run_once(agent, question)
    return {"success": True}


async def test_agents_sdk_asked_for_its_configured_model_and_the_api_answered_dated(
        otel: Otel, dated: StubServer) -> None:
    agent = _agent(dated)
    with otel.capture() as cap:
        await desk(agent, "Weather in Oslo?", streamed=True)
    inner = next(r for r in cap.records if r.engine == "openai_agents")
    assert (inner.result.request_model, inner.result.model) == (ASKED, ANSWERED)
    # inside the workflow the run is an agent invocation: both names, each in its place
    attrs = _attrs(otel, "invoke_agent")
    assert (attrs[sc.REQUEST_MODEL], attrs[sc.RESPONSE_MODEL]) == (ASKED, ANSWERED)
    points = {p.attributes[sc.OPERATION_NAME]: p
              for p in otel.histogram(sc.METRIC_INVOCATION_DURATION)}
    assert points["invoke_agent"].attributes[sc.REQUEST_MODEL] == ASKED
    assert sc.REQUEST_MODEL not in points["invoke_workflow"].attributes
    _conformant(otel)


async def test_a_top_level_agents_turn_carries_no_request_model(
        otel: Otel, dated: StubServer) -> None:
    """``handle_conversation_turn`` may hand off between agents with different models: the
    conventions keep gen_ai.request.model off it (spans and the duration metric)."""
    with otel.capture() as cap:
        async for _ in streamed_events(_agent(dated), "hi"):
            pass
    assert cap.records[0].result.request_model == ASKED
    attrs = _attrs(otel, "handle_conversation_turn")
    assert attrs[sc.RESPONSE_MODEL] == ANSWERED
    assert sc.REQUEST_MODEL not in attrs
    (point,) = otel.histogram(sc.METRIC_INVOCATION_DURATION)
    assert sc.REQUEST_MODEL not in point.attributes
    _conformant(otel)


async def test_a_run_result_knows_only_the_configured_model(
        otel: Otel, dated: StubServer) -> None:
    """A ``RunResult``'s model responses do not say which model answered (agents 0.24): the
    configured name is what was asked, the answered model is unmeasured, and the span says
    exactly that (no response model rather than the asked one in its place)."""
    with otel.capture() as cap:
        await desk(_agent(dated), "hi", streamed=False)
    inner = next(r for r in cap.records if r.engine == "openai_agents")
    assert (inner.result.request_model, inner.result.model) == (ASKED, None)
    attrs = _attrs(otel, "invoke_agent")
    assert attrs[sc.REQUEST_MODEL] == ASKED
    assert sc.RESPONSE_MODEL not in attrs


def test_a_result_that_names_both_gets_both(otel: Otel) -> None:
    @logged_execution(agent_name="agent_name")
    def run(agent_name: str) -> ExecutionResult:
        return ExecutionResult(success=True, model=ANSWERED, request_model=ASKED,
                               provider="openai")

    with otel.capture():
        run("Both")
    attrs = _attrs(otel)
    assert (attrs[sc.REQUEST_MODEL], attrs[sc.RESPONSE_MODEL]) == (ASKED, ANSWERED)
    _conformant(otel)
