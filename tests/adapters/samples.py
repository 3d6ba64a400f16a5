"""Results as each built-in engine really returns them, for unit and conformance tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from instrument.adapters.conformance import Sample


def workflow_success() -> dict[str, Any]:
    return {
        "success": True,
        "executionId": "exec-7f3a",
        "output": {"message": "Sent 3 summaries", "data": {"to": "someone@example.com"}},
        "stepsCompleted": 4,
        "stepsFailed": 1,
        "stepsSkipped": 0,
        "totalExecutionTime": 5120,
        "totalTokensUsed": 2300,
        "completedStepIds": ["s1", "s2", "s3", "s4"],
        "failedStepIds": ["s5"],
        "skippedStepIds": [],
        "debugRunId": "dbg-1",
        "orchestrationMetrics": {
            "totalTokensUsed": 2300, "totalTokensSaved": 400, "savingsPercent": "14.8%",
            "totalCost": 0.012, "budgetUtilization": "23%",
        },
        "collectedIssues": [{"kind": "warn"}],
    }


def workflow_failure() -> dict[str, Any]:
    return {
        "success": False,
        "executionId": "exec-9",
        "output": None,
        "stepsCompleted": 1,
        "stepsFailed": 1,
        "stepsSkipped": 2,
        "totalExecutionTime": 800,
        "totalTokensUsed": 120,
        "error": "Step s2 failed: connect to postgresql://svc:hunter2@db:5432/app refused",
        "errorStack": "Error: Step s2 failed\n    at Pilot.run (pilot.ts:10)",
        "failedStep": "s2",
    }


@dataclass
class WorkflowExecutionResult:
    """An attribute-object flavour of the orchestrator result, in snake_case."""

    success: bool
    execution_id: str
    output: Any
    steps_completed: int
    steps_failed: int
    steps_skipped: int
    total_execution_time: float
    total_tokens_used: int | None = None
    error: str | None = None
    failed_step: str | None = None
    completed_step_ids: list[str] = field(default_factory=list)


def agentkit_success() -> dict[str, Any]:
    return {
        "success": True,
        "response": "You have 2 unread emails from Ana.",
        "toolCalls": [
            {"plugin": "google-mail", "action": "search_emails",
             "parameters": {"query": "from:ana is:unread"},
             "result": {"emails": [{"subject": "Quarterly numbers attached"},
                                   {"subject": "Lunch tomorrow?"}]},
             "success": True, "executionTime": 312.5},
            {"plugin": "google-calendar", "action": "list_events",
             "parameters": {"day": "tomorrow"}, "result": [], "success": True},
            {"plugin": "slack", "action": "post_message",
             "parameters": {"text": "confidential launch plan"}, "result": None,
             "success": False, "error": "channel_not_found"},
        ],
        "tokensUsed": {"prompt": 1800, "completion": 220, "total": 2020},
        "executionTime": 4200,
        "iterations": 3,
        "model": "gpt-4o",
        "provider": "openai",
        "memoryData": {"tokens": 350, "entryCount": 6, "types": ["summaries", "patterns"]},
    }


def agentkit_no_plugins() -> dict[str, Any]:
    return {
        "success": False,
        "response": "",
        "toolCalls": [],
        "tokensUsed": {"prompt": 0, "completion": 0, "total": 0},
        "executionTime": 12,
        "iterations": 0,
        "error": "NO_PLUGINS_CONNECTED",
    }


@dataclass
class AgentKitResult:
    success: bool
    response: str
    tool_calls: list[dict[str, Any]]
    tokens_used: dict[str, int]
    execution_time: float
    iterations: int
    model: str | None = None
    provider: str | None = None
    error: str | None = None


def mapping_result() -> dict[str, Any]:
    return {
        "success": True,
        "tokens": {"input_tokens": 40, "output_tokens": 9, "total_tokens": 49},
        "iterations": 2,
        "tool_calls": [{"name": "search", "call_id": "c1", "success": True,
                        "duration_ms": 4.5, "items_returned": 3,
                        "arguments": {"q": "private query text"}}],
        "model": "local-llm",
        "provider": "ollama",
        "response": "hello",
        "steps": {"completed": 2, "failed": 1, "skipped": 0},
        "extras": {"run_kind": "nightly"},
        "team": "search",
    }


BUILTIN_SAMPLES: dict[str, list[object]] = {
    "orchestrator": [
        Sample(workflow_success(), unmeasured={"iterations", "tool_calls", "tokens.input_tokens",
                                               "tokens.output_tokens", "model", "provider",
                                               "orchestration_ms", "memory"}),
        Sample(workflow_failure(), unmeasured={"iterations", "tokens.input_tokens"}),
        Sample(WorkflowExecutionResult(True, "e1", {"message": "ok"}, 2, 0, 0, 90.0, 15),
               unmeasured={"iterations", "tool_calls"}),
    ],
    "agentkit": [
        Sample(agentkit_success(), unmeasured={"retries", "orchestration_ms", "steps"}),
        Sample(agentkit_no_plugins(), unmeasured={"memory", "model", "provider"}),
        Sample(AgentKitResult(True, "ok", [{"plugin": "p", "action": "a", "result": {"x": 1}}],
                              {"prompt": 5, "completion": 2, "total": 7}, 10.0, 1),
               unmeasured={"memory", "model"}),
    ],
    "mapping": [
        Sample(mapping_result(), unmeasured={"retries", "memory", "workflow"}),
        Sample({"success": False, "error": {"type": "Timeout", "message": "took too long"}},
               unmeasured={"tokens", "iterations", "tool_calls"}),
    ],
}


def openai_chat_completion() -> object:
    from openai.types.chat import ChatCompletion

    return ChatCompletion.model_validate({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "get_weather",
                             "arguments": "{\"city\": \"Lisbon, Portugal\"}"},
            }]},
        }],
        "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62,
                  "prompt_tokens_details": {"cached_tokens": 0},
                  "completion_tokens_details": {"reasoning_tokens": 0}},
    })


def openai_response() -> object:
    from openai.types.responses import Response

    return Response.model_validate({
        "id": "resp_1", "object": "response", "created_at": 1_700_000_000,
        "model": "gpt-4.1-mini", "status": "completed", "parallel_tool_calls": True,
        "tool_choice": "auto", "tools": [],
        "output": [
            {"type": "function_call", "id": "fc_1", "call_id": "call_9", "name": "lookup",
             "arguments": "{\"customer\": \"ACME Corporation\"}", "status": "completed"},
            {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
             "content": [{"type": "output_text", "text": "Done.", "annotations": []}]},
        ],
        "usage": {"input_tokens": 30, "output_tokens": 8, "total_tokens": 38,
                  "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 2}},
    })


def openai_agents_run_result() -> object:
    """A real ``RunResult``: the real Runner, offline, one tool call then an answer."""
    import agents
    from agents import Agent, Runner, function_tool

    from tests.engines.fake_agents_model import FakeModel, call, say

    agents.set_tracing_disabled(True)

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return f"order {order_id}: shipped to 221B Baker Street"

    model = FakeModel([[call("lookup_order", {"order_id": "A-1001"}, "call_1")],
                       [say("Your order has shipped.")]])
    agent = Agent(name="Support", tools=[lookup_order], model=model)
    return Runner.run_sync(agent, "Where is order A-1001?")


#: Samples for adapters written elsewhere, when their modules exist.
OPENAI_SAMPLES: dict[str, Callable[[], list[object]]] = {
    "openai_agents": lambda: [Sample(openai_agents_run_result(), unmeasured={"retries",
                                                                          "steps"})],
    "openai_chat": lambda: [Sample(openai_chat_completion(), unmeasured={"retries", "steps"})],
    "openai_responses": lambda: [Sample(openai_response(), unmeasured={"retries", "steps"})],
}


def text_stream_collected() -> object:
    """Chunks collected the way the decorator collects a generator's items (timed appends)."""
    from instrument.adapters.protocol import StreamedItems

    items = StreamedItems()
    for chunk in ("Once ", "upon ", "a time"):
        items.append(chunk)
    return items


_TEXT_UNMEASURED = {"tokens", "iterations", "retries", "tool_calls", "model", "provider",
                    "memory", "steps", "workflow", "orchestration_ms"}


def _crewai_samples() -> list[object]:
    from tests.engines.test_crewai import rebuild

    unmeasured = {"model", "provider", "retries", "steps", "memory"}
    return [Sample(rebuild("crew_with_a_failed_tool"), unmeasured=unmeasured),
            Sample(rebuild("agent_kickoff"), unmeasured=unmeasured),
            Sample(rebuild("paused_flow"), unmeasured=unmeasured | {"tokens", "tool_calls"})]


#: Samples for the engines added in issue 15 (their own modules add more).
ENGINE_SAMPLES: dict[str, Callable[[], list[object]]] = {
    "text_stream": lambda: [Sample(text_stream_collected(), unmeasured=_TEXT_UNMEASURED)],
    # real runs of the framework (fake models, offline): the modules' conformance_samples()
    "langgraph": lambda: [],
    "pydantic_ai": lambda: [],
    # the real SDK types (stub answers) and recorded ADK runs: tests/engines/provider_samples.py
    "anthropic": lambda: _provider_samples("anthropic"),
    "google_genai": lambda: _provider_samples("google_genai"),
    "google_adk": lambda: _provider_samples("google_adk"),
    # LlamaIndex's and Strands' own types (modules' conformance_samples()); CrewAI's results
    # recorded with its own types in a side environment (tests/engines/test_crewai.py)
    "llama_index": lambda: [],
    "strands": lambda: [],
    "crewai": _crewai_samples,
}


def _provider_samples(name: str) -> list[object]:
    from tests.engines.provider_samples import provider_samples

    return provider_samples(name)
