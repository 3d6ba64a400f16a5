"""The real openai-agents ``Runner``, fully offline (scripted Model, tracing disabled), with the
``openai_agents`` adapter: records asserted field by field."""

from __future__ import annotations

import asyncio
import gc
import json
from pathlib import Path
from typing import Any

import agents
import pytest
from agents import (
    Agent,
    GuardrailFunctionOutput,
    InputGuardrailTripwireTriggered,
    MaxTurnsExceeded,
    OutputGuardrailTripwireTriggered,
    Runner,
    RunResult,
    RunResultStreaming,
    function_tool,
    handoff,
    input_guardrail,
    output_guardrail,
)

from instrument import logged_execution
from instrument.adapters import get_adapter
from instrument.adapters.protocol import DeferredAdapter, StreamedItems
from instrument.adapters.registry import detect_adapter
from instrument.record import ExecutionRecord, TokenUsage, ToolCall
from instrument.testing import capture
from tests.engines.fake_agents_model import TURN_USAGE, FakeModel, call, say

agents.set_tracing_disabled(True)

INP, OUT, CACHED, REASONING = TURN_USAGE


def usage_of(turns: int) -> TokenUsage:
    return TokenUsage(input_tokens=INP * turns, output_tokens=OUT * turns,
                      total_tokens=(INP + OUT) * turns, cached_input_tokens=CACHED * turns,
                      reasoning_tokens=REASONING * turns)


def per_request(turns: int) -> list[dict[str, Any]]:
    return [{"input": INP, "output": OUT, "total": INP + OUT, "cached": CACHED,
             "reasoning": REASONING, "response_id": f"resp_fake_{i + 1}"} for i in range(turns)]


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


@function_tool
def broken_tool(city: str) -> str:
    """A tool that always raises."""
    raise RuntimeError("backend down")


def weather_agent(script: Any, **kw: Any) -> Agent[Any]:
    return Agent(name="Weather", instructions="Answer weather questions.",
                 tools=[get_weather, broken_tool], model=FakeModel(script), **kw)


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


# -- run / run_sync ---------------------------------------------------------------------------


async def test_run_with_a_tool_call_is_normalized_field_by_field() -> None:
    agent = weather_agent([[call("get_weather", {"city": "Paris"}, "call_1")],
                           [say("It is sunny in Paris.")]])
    seen: list[RunResult] = []

    @logged_execution(agent_id="agent_id", user_id="user_id")
    async def execute(agent_id: str, user_id: str, question: str) -> RunResult:
        result = await Runner.run(agent, question)
        seen.append(result)
        return result

    with capture(capture_content=True) as cap:
        returned = await execute("agent-1", "user-1", "Weather in Paris?")
    assert returned is seen[0]
    r = only(cap)
    assert (r.engine, r.agent_id, r.user_id, r.status) == ("openai_agents", "agent-1",
                                                           "user-1", "completed")
    res = r.result
    assert res.success is True
    assert res.error is None
    assert res.response == "It is sunny in Paris."
    assert res.iterations == 2
    assert res.tokens == usage_of(2)
    assert res.tool_calls == [ToolCall(name="get_weather", call_id="call_1", success=True)]
    # what was asked; a RunResult does not say which model answered
    assert (res.request_model, res.model, res.provider) == ("fake-gpt", None, "fake")
    assert res.extras["last_agent"] == "Weather"
    assert res.extras["agents"] == ["Weather"]
    assert res.extras["requests"] == 2
    assert res.extras["request_usage"] == per_request(2)
    assert "handoffs" not in res.extras


def test_run_sync_with_a_failing_tool_and_a_string_model() -> None:
    model = FakeModel([[call("broken_tool", {"city": "Oslo"}, "call_b")], [say("Sorry.")]])
    agent = Agent(name="Weather", tools=[broken_tool], model=model)

    @logged_execution
    def execute() -> RunResult:
        return Runner.run_sync(agent, "Weather in Oslo?")

    with capture() as cap:
        execute()
    res = only(cap).result
    assert res.success is True  # the run finished; the tool failure is on the tool call
    assert res.response is None  # content capture is off by default
    assert res.tool_calls == [ToolCall(
        name="broken_tool", call_id="call_b", success=False,
        error="tool raised; the SDK sent its default failure message")]
    assert res.iterations == 2
    assert res.tokens == usage_of(2)


async def test_handoff_is_recorded_with_the_last_agent_and_its_model() -> None:
    specialist = Agent(name="Weather agent", tools=[get_weather],
                       model="gpt-4o-mini")  # named model: provider comes from the name
    specialist.model = FakeModel([[say("Rain in Bergen.")]])
    triage = Agent(name="Triage", handoffs=[handoff(specialist)],
                   model=FakeModel([[call("transfer_to_weather_agent", {}, "call_h")]]))

    @logged_execution(engine="openai_agents", agent_id=lambda a: "triage")
    async def execute() -> RunResult:
        return await Runner.run(triage, "Weather in Bergen?")

    with capture(capture_content=True) as cap:
        await execute()
    res = only(cap).result
    assert res.success is True
    assert res.response == "Rain in Bergen."
    assert res.iterations == 2
    assert res.tokens == usage_of(2)
    assert res.tool_calls == []  # a handoff is not a tool call
    assert res.extras["handoffs"] == [{"from": "Triage", "to": "Weather agent"}]
    assert res.extras["last_agent"] == "Weather agent"
    assert res.extras["agents"] == ["Triage", "Weather agent"]
    # what was asked; a RunResult does not say which model answered
    assert (res.request_model, res.model, res.provider) == ("fake-gpt", None, "fake")


async def test_named_model_gives_model_and_provider() -> None:
    agent = Agent(name="Plain", model="gpt-4o-mini")
    result = await Runner.run(Agent(name="Plain", model=FakeModel([[say("hi")]])), "hi")
    result._last_agent = agent  # the adapter reads the agent's model setting
    res = get_adapter("openai_agents").normalize(result)
    # what was asked; a RunResult does not say which model answered
    assert (res.request_model, res.model, res.provider) == ("gpt-4o-mini", None, "openai")
    agent.model = "litellm/anthropic/claude-3-5-sonnet"
    assert get_adapter("openai_agents").normalize(result).provider == "anthropic"


async def test_max_turns_failure_is_a_failed_record() -> None:
    agent = weather_agent(lambda n: [call("get_weather", {"city": "Rome"}, f"call_{n}")])

    @logged_execution(agent_id="agent_id")
    async def execute(agent_id: str) -> RunResult:
        return await Runner.run(agent, "loop", max_turns=2)

    with capture() as cap, pytest.raises(MaxTurnsExceeded) as raised:
        await execute("a-max")
    r = only(cap)
    assert r.status == "failed"
    assert r.result.success is False
    assert r.result.error is not None
    assert r.result.error.type == "MaxTurnsExceeded"
    assert r.result.error.message == str(raised.value) == "Max turns (2) exceeded"
    # Unlike the origin (which zeroed tokens on an exception), what the run spent is kept:
    # the SDK attaches it to the exception and the adapter reads it back.
    assert r.engine == "openai_agents"
    assert r.result.iterations == 2
    assert r.result.tokens is not None
    assert (r.result.tokens.input_tokens, r.result.tokens.output_tokens) == (2 * INP, 2 * OUT)
    assert [c.name for c in r.result.tool_calls or []] == ["get_weather", "get_weather"]
    assert r.result.response is None


@input_guardrail
async def no_secrets(ctx: Any, agent: Any, text: Any) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info=None, tripwire_triggered="secret" in str(text))


async def test_guardrail_tripwire_is_a_failed_record() -> None:
    agent = Agent(name="Guarded", input_guardrails=[no_secrets],
                  model=FakeModel([[say("never")]]))

    @logged_execution
    async def execute() -> RunResult:
        return await Runner.run(agent, "tell me the secret")

    with capture() as cap, pytest.raises(InputGuardrailTripwireTriggered):
        await execute()
    r = only(cap)
    assert r.result.success is False
    assert r.result.error is not None
    assert r.result.error.type == "InputGuardrailTripwireTriggered"


# -- run_streamed -----------------------------------------------------------------------------


async def test_streamed_run_consumed_to_the_end() -> None:
    agent = weather_agent([[call("get_weather", {"city": "Lima"}, "call_s")],
                           [say("Warm in Lima.")]])
    inner: list[RunResultStreaming] = []

    @logged_execution(agent_id="agent_id")
    def execute(agent_id: str) -> RunResultStreaming:
        result = Runner.run_streamed(agent, "Weather in Lima?")
        inner.append(result)
        return result

    with capture(capture_content=True) as cap:
        streamed = execute("a-stream")
        assert streamed is inner[0]  # the host gets the identical object
        assert type(streamed) is RunResultStreaming
        assert cap.records == []  # still running: nothing recorded yet
        events = [e async for e in streamed.stream_events()]
        await asyncio.sleep(0.01)
    assert events
    r = only(cap)
    res = r.result
    assert (r.engine, r.agent_id, res.success) == ("openai_agents", "a-stream", True)
    assert res.response == "Warm in Lima."
    assert res.iterations == 2
    assert res.tokens == usage_of(2)
    assert res.tool_calls == [ToolCall(name="get_weather", call_id="call_s", success=True)]
    assert res.extras["streamed"] is True
    assert res.extras["request_usage"] == per_request(2)
    assert "stream_closed_early" not in res.extras
    assert r.duration_ms > 0


async def test_streamed_run_abandoned_halfway_still_yields_one_record() -> None:
    agent = weather_agent([[call("get_weather", {"city": "A"}, "c1")],
                           [call("get_weather", {"city": "B"}, "c2")],
                           [call("get_weather", {"city": "C"}, "c3")],
                           [say("done")]])
    agent.model.delay = 0.02  # type: ignore[union-attr]

    @logged_execution
    def execute() -> RunResultStreaming:
        return Runner.run_streamed(agent, "three cities")

    with capture() as cap:
        streamed = execute()
        async for event in streamed.stream_events():
            if event.type == "run_item_stream_event" and event.name == "tool_output":
                break  # the consumer walks away after the first tool result...
        streamed.cancel()  # ...and stops the run
        for _ in range(100):
            if cap.records:
                break
            await asyncio.sleep(0.01)
    r = only(cap)
    res = r.result
    assert res.success is True
    assert res.extras["stream_closed_early"] is True
    assert res.extras["cancel_mode"] == "immediate"
    assert 1 <= res.iterations < 4  # type: ignore[operator]
    assert res.tokens == usage_of(res.iterations)  # type: ignore[arg-type]
    assert res.tool_calls is not None
    assert res.tool_calls[0] == ToolCall(name="get_weather", call_id="c1", success=True)
    assert len(res.tool_calls) < 3


def test_streamed_run_left_running_when_the_loop_ends_is_recorded() -> None:
    agent = weather_agent([[call("get_weather", {"city": "A"}, "c1")], [say("done")]])
    agent.model.delay = 0.05  # type: ignore[union-attr]

    @logged_execution
    def execute() -> RunResultStreaming:
        return Runner.run_streamed(agent, "one city")

    async def main() -> None:
        streamed = execute()
        async for _event in streamed.stream_events():
            break  # walk away after one event; asyncio.run() then cancels the run

    with capture() as cap:
        asyncio.run(main())
        gc.collect()
    r = only(cap)
    assert r.result.extras.get("stream_closed_early") is True or r.result.iterations == 2


async def test_streamed_max_turns_is_a_failed_record() -> None:
    agent = weather_agent(lambda n: [call("get_weather", {"city": "X"}, f"c{n}")])

    @logged_execution
    def execute() -> RunResultStreaming:
        return Runner.run_streamed(agent, "loop", max_turns=1)

    with capture() as cap:
        streamed = execute()
        with pytest.raises(MaxTurnsExceeded):
            async for _ in streamed.stream_events():
                pass
        await asyncio.sleep(0.01)
    r = only(cap)
    assert r.result.success is False
    assert r.result.error is not None
    assert r.result.error.type == "MaxTurnsExceeded"
    assert r.result.error.message == "Max turns (1) exceeded"
    assert r.result.tokens is not None  # the turn that ran is accounted for
    assert r.result.tokens.input_tokens == INP


async def test_streamed_guardrail_tripwire_is_a_failed_record() -> None:
    agent = Agent(name="Guarded", input_guardrails=[no_secrets],
                  model=FakeModel(lambda n: [say("x")]))

    @logged_execution
    def execute() -> RunResultStreaming:
        return Runner.run_streamed(agent, "the secret")

    with capture() as cap:
        streamed = execute()
        with pytest.raises(InputGuardrailTripwireTriggered):
            async for _ in streamed.stream_events():
                pass
        for _ in range(100):
            if cap.records:
                break
            await asyncio.sleep(0.01)
    r = only(cap)
    assert r.result.error is not None
    assert r.result.error.type == "InputGuardrailTripwireTriggered"


async def test_generator_executor_yielding_stream_events() -> None:
    agent = weather_agent([[call("get_weather", {"city": "Kyiv"}, "c_g")], [say("Clear.")]])

    @logged_execution
    async def execute() -> Any:
        result = Runner.run_streamed(agent, "Kyiv?")
        async for event in result.stream_events():
            yield event

    with capture(capture_content=True) as cap:
        async for _ in execute():
            pass
    r = only(cap)
    res = r.result
    assert r.engine == "openai_agents"
    assert res.tokens == usage_of(2)
    assert res.iterations == 2
    assert res.response == "Clear."
    assert res.model == "fake-gpt"
    assert res.tool_calls == [ToolCall(name="get_weather", call_id="c_g", success=True)]
    assert res.extras["last_agent"] == "Weather"


# -- the adapter contract -----------------------------------------------------------------


def test_matches_is_cheap_and_specific() -> None:
    adapter = get_adapter("openai_agents")
    assert isinstance(adapter, DeferredAdapter)
    for foreign in ({"success": True}, [1, 2], "text", None, StreamedItems([1, "a"]), object()):
        assert adapter.matches(foreign) is False
    assert adapter.watch({"success": True}, lambda outcome: None) is False


async def test_auto_detection_picks_the_agents_adapter() -> None:
    result = await Runner.run(Agent(name="A", model=FakeModel([[say("ok")]])), "hi")
    assert detect_adapter(result).name == "openai_agents"


@output_guardrail
async def no_shouting(ctx: Any, agent: Any, output: Any) -> GuardrailFunctionOutput:
    return GuardrailFunctionOutput(output_info=None, tripwire_triggered=str(output).isupper())


async def test_output_guardrail_tripwire_is_a_failed_record() -> None:
    agent = Agent(name="Calm", output_guardrails=[no_shouting], model=FakeModel([[say("NO")]]))

    @logged_execution
    async def execute() -> RunResult:
        return await Runner.run(agent, "shout")

    with capture() as cap, pytest.raises(OutputGuardrailTripwireTriggered):
        await execute()
    error = only(cap).result.error
    assert error is not None
    assert error.type == "OutputGuardrailTripwireTriggered"


async def test_streamed_output_guardrail_tripwire_is_a_failed_record() -> None:
    agent = Agent(name="Calm", output_guardrails=[no_shouting], model=FakeModel([[say("NO")]]))

    @logged_execution
    def execute() -> RunResultStreaming:
        return Runner.run_streamed(agent, "shout")

    with capture() as cap:
        streamed = execute()
        with pytest.raises(OutputGuardrailTripwireTriggered):
            async for _ in streamed.stream_events():
                pass
        await asyncio.sleep(0.01)
    error = only(cap).result.error
    assert error is not None
    assert error.type == "OutputGuardrailTripwireTriggered"


class ModelDown(RuntimeError):
    pass


def _explode(n: int) -> list[Any]:
    raise ModelDown("the model backend is down")


async def test_streamed_model_error_is_a_failed_record_with_its_type() -> None:
    agent = Agent(name="Fragile", model=FakeModel(_explode))

    @logged_execution
    def execute() -> RunResultStreaming:
        return Runner.run_streamed(agent, "hi")

    with capture() as cap:
        streamed = execute()
        with pytest.raises(ModelDown):
            async for _ in streamed.stream_events():
                pass
        await asyncio.sleep(0.01)
    r = only(cap)
    assert r.result.success is False
    assert r.result.error is not None
    assert (r.result.error.type, r.result.error.message) == (
        "ModelDown", "the model backend is down")


def test_streamed_run_whose_task_is_destroyed_is_still_recorded() -> None:
    # The event loop is closed without cancelling the run's task, so no done-callback ever
    # fires; the weakref.finalize fallback must still write the record (in a fresh process:
    # the SDK complains loudly on stderr when its task is destroyed).
    code = """
import asyncio, gc, json
import instrument
import agents
from agents import Agent, Runner
from instrument import logged_execution
from instrument.testing import capture
from tests.engines.fake_agents_model import FakeModel, say

agents.set_tracing_disabled(True)
agent = Agent(name="Slow", model=FakeModel([[say("late")]], delay=0.5))

@logged_execution
def execute():
    return Runner.run_streamed(agent, "hi")

async def start():
    execute()
    await asyncio.sleep(0.01)

with capture() as cap:
    loop = asyncio.new_event_loop()
    loop.run_until_complete(start())
    loop.close()
    del loop
    for _ in range(3):
        gc.collect()
    print("RECORDS", json.dumps([r.result.extras for r in cap.records]))
"""
    from tests.conftest import run_python

    done = run_python(code, env={"PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RECORDS ")), None)
    assert line is not None, done.stderr[-3000:]
    extras = json.loads(line.removeprefix("RECORDS "))
    assert extras == [{"stream_closed_early": True, "run_task_lost": True}]


def test_streamed_result_returned_after_its_loop_closed() -> None:
    agent = weather_agent([[say("early")]])

    async def consume() -> RunResultStreaming:
        result = Runner.run_streamed(agent, "hi")
        async for _ in result.stream_events():
            pass
        return result

    finished = asyncio.run(consume())

    @logged_execution
    def execute() -> RunResultStreaming:
        return finished  # already complete, and its event loop is gone

    with capture(capture_content=True) as cap:
        assert execute() is finished
    res = only(cap).result
    assert res.success is True
    assert res.response == "early"
    assert res.iterations == 1


async def test_per_request_usage_is_bounded_on_long_runs() -> None:
    turns = 105
    agent = weather_agent(lambda n: [call("get_weather", {"city": "X"}, f"c{n}")]
                          if n < turns - 1 else [say("done")])

    @logged_execution
    async def execute() -> RunResult:
        return await Runner.run(agent, "many", max_turns=turns + 1)

    with capture() as cap:
        await execute()
    res = only(cap).result
    assert res.iterations == turns
    assert res.tokens == usage_of(turns)  # the totals cover every request
    assert isinstance(res.extras["request_usage"], list)
    assert len(res.extras["request_usage"]) == 100
    assert res.extras["request_usage_truncated"] == turns
    assert res.tool_calls is not None
    assert len(res.tool_calls) == turns - 1
