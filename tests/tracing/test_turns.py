"""``handle_conversation_turn``: one framework runner call that steers the control flow.

spans.yaml (semantic-conventions-genai at the data file's commit) names the operation for "one
OpenAI Agents ``Runner.run(starting_agent=...)`` call" and ADK ``Runner.run``, and asks that a
turn never sit inside another turn. Our rule: an execution of a runner engine
(``TURN_ENGINES``) is a turn unless it runs inside another decorated execution, where it is an
``invoke_agent`` (nested). Driven with the real Agents ``Runner`` on a scripted model.
"""

from __future__ import annotations

from typing import Any

import agents
import pytest
from agents import Agent, Runner
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Span, SpanProcessor

from instrument import logged_execution
from instrument.tracing import semconv as sc
from instrument.tracing.spans import TURN_ENGINES, WORKFLOW_ENGINES, operation
from tests.engines.fake_agents_model import FakeModel, say
from tests.tracing.conftest import Otel
from tests.tracing.semconv_check import check, from_sdk

agents.set_tracing_disabled(True)


class AtStart(SpanProcessor):
    """What a sampler-side processor sees when the span starts."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.seen.append((span.name, dict(span.attributes or {})))


def _agent(name: str = "Triage") -> Agent[Any]:
    return Agent(name=name, model=FakeModel([[say("Done.")]]))


@logged_execution(agent_name="agent.name")
async def turn(agent: Agent[Any]) -> Any:
    return await Runner.run(agent, "hello")


@logged_execution(agent_name="agent.name", engine="openai_agents")
async def declared_turn(agent: Agent[Any]) -> Any:
    return await Runner.run(agent, "hello")


def test_the_rule() -> None:
    assert {"openai_agents", "google_adk"} == TURN_ENGINES
    assert operation("openai_agents") == sc.OP_HANDLE_CONVERSATION_TURN
    assert operation("google_adk") == sc.OP_HANDLE_CONVERSATION_TURN
    assert operation("openai_agents", nested=True) == sc.OP_INVOKE_AGENT
    assert operation("openai_agents", conventions=sc.PREVIOUS) == sc.OP_INVOKE_AGENT
    assert operation(next(iter(WORKFLOW_ENGINES)), nested=True) == sc.OP_INVOKE_WORKFLOW
    for engine in (None, "mapping", "openai_chat", "agentkit", "langgraph"):
        assert operation(engine) == sc.OP_INVOKE_AGENT


async def test_a_top_level_runner_call_is_one_turn(otel: Otel) -> None:
    with otel.capture():
        await turn(_agent())
    span = otel.span()
    attrs = dict(span.attributes or {})
    assert span.name == "handle_conversation_turn Triage"  # the entry-point agent
    assert attrs[sc.OPERATION_NAME] == sc.OP_HANDLE_CONVERSATION_TURN
    assert attrs[sc.INVOCATION_IS_NESTED] is False
    assert attrs[sc.AGENT_NAME] == "Triage"
    (point,) = otel.histogram(sc.METRIC_INVOCATION_DURATION)
    assert dict(point.attributes) == {sc.OPERATION_NAME: sc.OP_HANDLE_CONVERSATION_TURN,
                                      sc.INVOCATION_IS_NESTED: False, sc.AGENT_NAME: "Triage"}
    # per-agent counts are for invoke_agent: a turn may span several agents (handoffs)
    assert otel.histogram(sc.METRIC_INFERENCE_CALLS) == []
    assert otel.histogram(sc.METRIC_TOOL_CALLS) == []
    assert check(*from_sdk(otel.spans(), otel.reader.get_metrics_data())) == []


async def test_a_declared_engine_names_the_turn_before_the_executor_runs(otel: Otel) -> None:
    at_start = AtStart()
    otel.tracer_provider.add_span_processor(at_start)
    with otel.capture():
        await declared_turn(_agent("Desk"))
    ((name, attrs),) = at_start.seen
    assert name == "handle_conversation_turn Desk"
    assert attrs[sc.OPERATION_NAME] == sc.OP_HANDLE_CONVERSATION_TURN
    assert otel.span().name == name


async def test_an_auto_detected_turn_is_renamed_when_it_ends(otel: Otel) -> None:
    at_start = AtStart()
    otel.tracer_provider.add_span_processor(at_start)
    with otel.capture():
        await turn(_agent("Late"))
    assert at_start.seen[0][0] == "invoke_agent Late"  # the result was not known yet
    assert otel.span().name == "handle_conversation_turn Late"


async def test_no_turn_inside_a_turn(otel: Otel) -> None:
    """An agent whose tool runs another decorated Runner call (``Agent.as_tool`` style): the
    inner one is an invoke_agent, nested; the outer stays the only turn."""
    inner_agent = _agent("Specialist")

    @agents.function_tool
    async def ask_specialist(question: str) -> str:
        """Ask the specialist."""
        result = await turn(inner_agent)
        return str(result.final_output)

    from tests.engines.fake_agents_model import call

    outer = Agent(name="Lead", tools=[ask_specialist],
                  model=FakeModel([[call("ask_specialist", {"question": "q"}, "c1")],
                                   [say("All done.")]]))
    with otel.capture():
        await turn(outer)
    spans = {s.name: s for s in otel.spans()}
    assert set(spans) == {"handle_conversation_turn Lead", "invoke_agent Specialist"}
    inner = spans["invoke_agent Specialist"]
    assert dict(inner.attributes or {})[sc.INVOCATION_IS_NESTED] is True
    assert inner.parent is not None
    assert inner.parent.span_id == spans["handle_conversation_turn Lead"].context.span_id
    nested = {p.attributes[sc.OPERATION_NAME]: p.attributes[sc.INVOCATION_IS_NESTED]
              for p in otel.histogram(sc.METRIC_INVOCATION_DURATION)}
    assert nested == {sc.OP_HANDLE_CONVERSATION_TURN: False, sc.OP_INVOKE_AGENT: True}
    assert check(*from_sdk(otel.spans(), otel.reader.get_metrics_data())) == []


async def test_a_runner_call_inside_a_workflow_is_an_agent_invocation(otel: Otel) -> None:
    @logged_execution(engine="orchestrator", name="nightly")
    async def nightly() -> dict[str, Any]:
        await turn(_agent("Writer"))
        return {"success": True}

    with otel.capture():
        await nightly()
    assert sorted(s.name for s in otel.spans()) == ["invoke_agent Writer",
                                                   "invoke_workflow nightly"]


@pytest.mark.parametrize("conventions", [sc.PREVIOUS, sc.DUP])
async def test_previous_names_know_no_turns(otel: Otel, conventions: sc.Conventions) -> None:
    with otel.capture(conventions=conventions):
        await turn(_agent("Old"))
    expected = "invoke_agent Old" if conventions is sc.PREVIOUS else (
        "handle_conversation_turn Old")
    assert otel.span().name == expected
