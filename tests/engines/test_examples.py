"""The engine examples, run against the loopback stub (in-process for records, and as scripts)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import runpy
import sqlite3
import sys
from contextlib import closing
from pathlib import Path
from types import ModuleType
from typing import Any

import agents
import pytest
from agents import OpenAIResponsesModel
from openai import AsyncOpenAI, OpenAI

from instrument.record import ExecutionRecord, StepCounts, TokenUsage, ToolCall
from instrument.testing import capture
from tests.engines.fake_agents_model import TURN_USAGE, FakeModel, call, say
from tests.openai_stub import TEXT_USAGE, TOOL_USAGE, StubServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
agents.set_tracing_disabled(True)


def load(name: str) -> ModuleType:
    module_name = f"examples_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def only(cap: Any) -> ExecutionRecord:
    assert len(cap.records) == 1, cap.records
    record: ExecutionRecord = cap.records[0]
    return record


# -- AgentKit ---------------------------------------------------------------------------------


def test_agentkit_example_function_calling_loop(client: OpenAI) -> None:
    ak = load("agentkit_executor")
    agent = ak.Agent(id="agent-7", name="Weather helper")
    with capture(capture_content=True) as cap:
        result = ak.run_agentkit("user-7", agent, "Weather in Paris?", "sess-7", client=client)
    assert result["success"] is True
    r = only(cap)
    assert (r.engine, r.agent_id, r.user_id, r.session_id, r.agent_name) == (
        "agentkit", "agent-7", "user-7", "sess-7", "Weather helper")
    res = r.result
    assert res.success is True
    assert res.iterations == 2
    assert res.tokens is not None
    assert (res.tokens.input_tokens, res.tokens.output_tokens, res.tokens.total_tokens) == (
        TOOL_USAGE.prompt + TEXT_USAGE.prompt, TOOL_USAGE.completion + TEXT_USAGE.completion,
        TOOL_USAGE.total + TEXT_USAGE.total)
    assert (res.model, res.provider) == ("gpt-4o-mini", "openai")
    assert res.response == result["response"]
    assert res.tool_calls is not None
    assert len(res.tool_calls) == 1
    tc = res.tool_calls[0]
    assert (tc.plugin, tc.action, tc.success, tc.items_returned) == (
        "weather", "get_forecast", True, 2)


def test_agentkit_example_max_iterations(client: OpenAI) -> None:
    ak = load("agentkit_executor")
    limits = ak.Limits(max_iterations=3, max_same_tool_repeats=99)
    with capture() as cap:
        result = ak.run_agentkit("u", ak.Agent(id="a", name="n"), "ALWAYS_TOOLS", client=client,
                                 limits=limits)
    assert result["error"] == "MAX_ITERATIONS_REACHED"
    res = only(cap).result
    assert res.success is False
    assert res.error is not None
    assert res.error.type == "MAX_ITERATIONS_REACHED"
    assert res.iterations == 3
    assert res.tokens is not None
    assert res.tokens.total_tokens == 3 * TOOL_USAGE.total  # spent tokens are kept
    assert res.tool_calls is not None
    assert len(res.tool_calls) == 3


def test_agentkit_example_token_limit_and_loop_detection(client: OpenAI) -> None:
    ak = load("agentkit_executor")
    agent = ak.Agent(id="a", name="n")
    with capture() as cap:
        over = ak.run_agentkit("u", agent, "hi", client=client,
                               limits=ak.Limits(max_tokens_per_iteration=10))
        looped = ak.run_agentkit("u", agent, "ALWAYS_TOOLS", client=client)
    assert over["success"] is False
    assert "per-iteration limit" in over["error"]
    assert looped["success"] is False
    assert looped["error"].startswith("Loop detected")
    first, second = cap.records
    assert first.result.success is False
    assert first.result.tokens is not None
    assert first.result.tokens.total_tokens == TOOL_USAGE.total
    assert second.result.iterations == 3


def test_agentkit_example_api_failure_keeps_spent_tokens(stub: StubServer) -> None:
    ak = load("agentkit_executor")
    dead = OpenAI(base_url="http://127.0.0.1:9/v1", api_key="x", max_retries=0, timeout=2)
    with capture() as cap:
        result = ak.run_agentkit("u", ak.Agent(id="a", name="n"), "hi", client=dead)
    assert result["success"] is False
    res = only(cap).result
    assert res.success is False
    assert res.error is not None
    assert "APIConnectionError" in res.error.message


# -- orchestrator -----------------------------------------------------------------------------


def test_orchestrator_example_with_a_failing_step(client: OpenAI) -> None:
    orch = load("orchestrator_executor")
    with capture(capture_content=True) as cap:
        result = orch.run_workflow("user-9", orch.default_workflow("agent-9"),
                                   {"language": "en"}, "sess-9", client=client)
    r = only(cap)
    assert (r.engine, r.agent_id, r.user_id, r.agent_name) == (
        "orchestrator", "agent-9", "user-9", "Daily digest")
    assert result["executionId"] == str(r.execution_id)  # current_execution() inside the run
    res = r.result
    assert res.success is False
    assert res.error is not None
    assert res.error.message == "StepFailed: no publishing credentials configured"
    assert res.steps == StepCounts(completed=5, failed=1, skipped=2)
    assert res.tokens == TokenUsage(total_tokens=2 * TEXT_USAGE.total)
    assert res.extras["failed_step"] == "publish"
    assert res.extras["skipped_step_ids"] == ["translate_draft", "notify"]


def test_orchestrator_example_all_steps_complete(client: OpenAI) -> None:
    orch = load("orchestrator_executor")
    with capture() as cap:
        orch.run_workflow("u", orch.default_workflow(), {"language": "fr",
                                                         "publish_token": "t"}, client=client)
    res = only(cap).result
    assert res.success is True
    assert res.error is None
    assert res.steps == StepCounts(completed=8, failed=0, skipped=0)
    assert res.tokens == TokenUsage(total_tokens=3 * TEXT_USAGE.total)


# -- Agents SDK app -------------------------------------------------------------------------


async def test_agents_app_offline_with_a_fake_model() -> None:
    app = load("openai_agents_app")
    # One scripted model serves both agents, turn by turn: triage hands off, the specialist
    # calls its tool, then answers.
    triage = app.build_agents(FakeModel([[call("transfer_to_weather_specialist", {}, "c_h")],
                                         [call("get_weather", {"city": "Paris"}, "c_w")],
                                         [say("Sunny in Paris.")]]))
    with capture(capture_content=True) as cap:
        result = await app.answer("user-1", "Weather in Paris?", triage, session_id="s-1")
    assert result.final_output == "Sunny in Paris."
    r = only(cap)
    assert (r.engine, r.agent_id, r.user_id, r.session_id, r.agent_name) == (
        "openai_agents", "agents-weather-app", "user-1", "s-1", "Triage")
    res = r.result
    inp, out, cached, reasoning = TURN_USAGE
    assert res.tokens == TokenUsage(input_tokens=3 * inp, output_tokens=3 * out,
                                    total_tokens=3 * (inp + out), cached_input_tokens=3 * cached,
                                    reasoning_tokens=3 * reasoning)
    assert res.iterations == 3
    assert res.tool_calls == [ToolCall(name="get_weather", call_id="c_w", success=True)]
    assert res.extras["handoffs"] == [{"from": "Triage", "to": "Weather specialist"}]
    assert res.extras["last_agent"] == "Weather specialist"
    assert res.response == "Sunny in Paris."


async def test_agents_app_streamed_against_the_stub_with_the_real_responses_model(
        stub: StubServer) -> None:
    app = load("openai_agents_app")
    model = OpenAIResponsesModel(model="gpt-4o-mini", openai_client=AsyncOpenAI(
        base_url=stub.base_url, api_key="x", max_retries=0))
    agent = app.build_agents(model)
    with capture() as cap:
        streamed = app.answer_streamed("user-2", "Weather in Oslo?", agent)
        names = [e.name async for e in streamed.stream_events()
                 if e.type == "run_item_stream_event"]
        for _ in range(100):
            if cap.records:
                break
            await asyncio.sleep(0.01)
    assert "handoff_occured" in names
    res = only(cap).result
    # what was asked; a RunResult does not say which model answered
    assert (res.request_model, res.model, res.provider) == ("gpt-4o-mini", None, "openai")
    assert res.iterations == 2
    assert res.tokens == TokenUsage(
        input_tokens=TOOL_USAGE.prompt + TEXT_USAGE.prompt,
        output_tokens=TOOL_USAGE.completion + TEXT_USAGE.completion,
        total_tokens=TOOL_USAGE.total + TEXT_USAGE.total,
        cached_input_tokens=TOOL_USAGE.cached + TEXT_USAGE.cached,
        reasoning_tokens=TOOL_USAGE.reasoning + TEXT_USAGE.reasoning)
    assert res.extras["handoffs"] == [{"from": "Triage", "to": "Weather specialist"}]


# -- the scripts themselves ---------------------------------------------------------------


@pytest.mark.parametrize("script", ["agentkit_executor", "orchestrator_executor",
                                    "openai_agents_app"])
def test_example_script_runs_offline(script: str, stub: StubServer, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Each file runs as ``__main__`` (in-process: importing the SDKs again per script in a
    subprocess would cost seconds), configured from the environment like a user's script."""
    for key in [k for k in os.environ if k.startswith("OPENAI_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("OPENAI_BASE_URL", stub.base_url)
    monkeypatch.setenv("INSTRUMENT_DATABASE_URL", f"sqlite:///{tmp_path / 'examples.db'}")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(EXAMPLES / f"{script}.py"), run_name="__main__")
    assert exited.value.code == 0
    with closing(sqlite3.connect(tmp_path / "examples.db")) as db:
        (written,) = db.execute("SELECT count(*) FROM agent_executions").fetchone()
    assert written == (2 if script == "openai_agents_app" else 1)


# -- online (only with a real key) ----------------------------------------------------------

online = pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"),
                            reason="online check: set OPENAI_API_KEY to run it")


@online
def test_agentkit_and_orchestrator_examples_online() -> None:
    ak, orch = load("agentkit_executor"), load("orchestrator_executor")
    real = OpenAI(max_retries=1, timeout=60)
    with capture() as cap:
        ak.run_agentkit("u", ak.Agent(id="a", name="n"),
                        "Use the weather tool for Paris, then answer in one sentence.",
                        client=real)
        orch.run_workflow("u", orch.default_workflow(), {"language": "en"}, client=real)
    agentkit, workflow = cap.records
    assert agentkit.result.tokens is not None
    assert (agentkit.result.tokens.total_tokens or 0) > 0
    assert (agentkit.result.model or "").startswith("gpt-4o-mini")
    assert workflow.result.steps == StepCounts(completed=5, failed=1, skipped=2)
