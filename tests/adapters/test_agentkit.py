"""The agentkit adapter, field by field, including the sanitizer's items_returned rule."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from instrument import logged_execution
from instrument.adapters import detect_adapter, get_adapter
from instrument.adapters.agentkit import items_returned
from instrument.record import ErrorInfo, ExecutionResult, MemoryUsage, TokenUsage, ToolCall
from instrument.testing import capture
from tests.adapters.samples import (
    AgentKitResult,
    agentkit_no_plugins,
    agentkit_success,
    mapping_result,
    workflow_success,
)

ADAPTER = get_adapter("agentkit")


def test_success_field_by_field() -> None:
    r = ADAPTER.normalize(agentkit_success())
    assert r.success is True
    assert r.error is None
    assert r.response == "You have 2 unread emails from Ana."
    assert r.tokens == TokenUsage(input_tokens=1800, output_tokens=220, total_tokens=2020)
    assert r.iterations == 3
    assert r.model == "gpt-4o"
    assert r.provider == "openai"
    assert r.memory == MemoryUsage(tokens=350, entry_count=6, types=["summaries", "patterns"])
    assert r.tool_calls == [
        ToolCall(name="google-mail.search_emails", plugin="google-mail", action="search_emails",
                 success=True, duration_ms=312.5, items_returned=2),
        ToolCall(name="google-calendar.list_events", plugin="google-calendar",
                 action="list_events", success=True, items_returned=0),
        ToolCall(name="slack.post_message", plugin="slack", action="post_message",
                 success=False, error="channel_not_found", items_returned=0),
    ]
    assert r.plugins == frozenset({"google-mail", "google-calendar", "slack"})
    assert r.extras == {"engine_execution_time_ms": 4200.0}
    assert r.steps is None
    assert r.retries is None
    assert r.orchestration_ms is None


def test_payloads_are_dropped() -> None:
    dumped = ADAPTER.normalize(agentkit_success()).model_dump_json()
    for secret in ("from:ana is:unread", "Quarterly numbers", "confidential launch plan",
                   "tomorrow"):
        assert secret not in dumped


def test_failure_with_error_code() -> None:
    r = ADAPTER.normalize(agentkit_no_plugins())
    assert r.success is False
    assert r.error == ErrorInfo(type="NO_PLUGINS_CONNECTED", message="NO_PLUGINS_CONNECTED")
    assert r.tokens == TokenUsage(input_tokens=0, output_tokens=0, total_tokens=0)
    assert r.tool_calls == []
    assert r.iterations == 0
    assert r.model is None
    assert r.provider is None
    assert r.memory is None


def test_free_text_error() -> None:
    r = ADAPTER.normalize({"success": False, "toolCalls": [],
                           "error": "Iteration used 61000 tokens, over the 50000 limit"})
    assert r.error == ErrorInfo(type="AgentKitError",
                                message="Iteration used 61000 tokens, over the 50000 limit")


def test_snake_case_object() -> None:
    obj = AgentKitResult(
        success=True, response="ok",
        tool_calls=[{"plugin": "notion", "action": "create_page", "result": {"id": "p1"},
                     "success": True}],
        tokens_used={"prompt": 5, "completion": 2, "total": 7}, execution_time=10.0,
        iterations=1, model="gpt-4o-mini",
    )
    assert detect_adapter(obj) is ADAPTER
    r = ADAPTER.normalize(obj)
    assert r.tool_calls == [ToolCall(name="notion.create_page", plugin="notion",
                                     action="create_page", success=True, items_returned=1)]
    assert r.tokens == TokenUsage(input_tokens=5, output_tokens=2, total_tokens=7)
    assert r.model == "gpt-4o-mini"
    assert r.provider is None
    assert r.extras == {"engine_execution_time_ms": 10.0}


def test_tool_call_objects_and_defaults_not_invented() -> None:
    call = SimpleNamespace(plugin="gmail", action="send")  # no success, no result, no time
    r = ADAPTER.normalize({"toolCalls": [call], "success": True})
    assert r.tool_calls == [ToolCall(name="gmail.send", plugin="gmail", action="send")]
    (tc,) = r.tool_calls
    assert tc.success is None
    assert tc.items_returned is None
    assert tc.duration_ms is None


def test_total_derived_only_from_measured_parts() -> None:
    r = ADAPTER.normalize({"tokensUsed": {"prompt": 3, "completion": 4}, "success": True})
    assert r.tokens == TokenUsage(input_tokens=3, output_tokens=4, total_tokens=7)
    r = ADAPTER.normalize({"tokensUsed": {"prompt": 3}, "success": True})
    assert r.tokens == TokenUsage(input_tokens=3)
    r = ADAPTER.normalize({"tokensUsed": 99, "success": True})
    assert r.tokens == TokenUsage(total_tokens=99)


@pytest.mark.parametrize(("call", "expected"), [
    ({"result": {"emails": [1, 2, 3]}}, 3),
    ({"result": {"emails": [], "contacts": [1, 2]}}, 2),
    ({"result": {"events": [1]}}, 1),
    ({"result": {"items": [1, 2, 3, 4]}}, 4),
    ({"result": [1, 2]}, 2),
    ({"result": []}, 0),  # deviation from the origin's JS truthiness (1): an empty list is 0
    ({"result": {"emails": []}}, 1),  # any result object: 1, like the origin
    ({"result": {"ok": True}}, 1),
    ({"result": "some text"}, 1),
    ({"result": ""}, 0),
    ({"result": None}, 0),
    ({"result": 0}, 0),
    ({"result": 5}, 1),
    ({"plugin": "x"}, None),  # no result field at all: not measured
    (SimpleNamespace(result=SimpleNamespace(items=[1, 2])), 2),
])
def test_items_returned(call: object, expected: int | None) -> None:
    assert items_returned(call) == expected


def test_wrong_types_noted_and_dropped() -> None:
    r = ADAPTER.normalize({"success": "no", "toolCalls": "oops", "tokensUsed": ["x"],
                           "memoryData": "lots", "iterations": 2.5, "model": ["m"]})
    assert r.success is False
    assert r.tool_calls is None
    assert r.tokens is None
    assert r.memory is None
    assert r.iterations is None
    assert r.model is None
    notes = r.extras["normalization_notes"]
    assert isinstance(notes, list)
    assert len(notes) == 3


def test_bad_tool_call_entries_dropped_with_note() -> None:
    r = ADAPTER.normalize({"success": True, "toolCalls": [None, "x", {"plugin": "p"}]})
    assert r.tool_calls == [ToolCall(name="p", plugin="p")]
    assert len(r.extras["normalization_notes"]) == 2  # type: ignore[arg-type]


def test_tool_calls_are_bounded() -> None:
    r = ADAPTER.normalize({"success": True, "toolCalls": [{"plugin": "p"}] * 1500})
    assert r.tool_calls is not None
    assert len(r.tool_calls) == 1000
    assert r.extras["tool_calls_total"] == 1500


@pytest.mark.parametrize("value", [
    workflow_success(), mapping_result(), {"success": True, "iterations": 2},
    {"success": True, "tool_calls": []}, ExecutionResult(success=True, iterations=1), None, [],
])
def test_does_not_match_other_shapes(value: object) -> None:
    assert ADAPTER.matches(value) is False


def test_matches_agentkit_shapes() -> None:
    assert ADAPTER.matches(agentkit_success())
    assert ADAPTER.matches({"toolCalls": []})
    assert ADAPTER.matches({"tokensUsed": {"total": 1}})
    assert ADAPTER.matches(SimpleNamespace(iterations=1, tool_calls=[]))


def test_decorated_agentkit_record() -> None:
    payload: dict[str, Any] = agentkit_success()

    @logged_execution(agent_id="agent_id", user_id="user_id")
    async def run_agentkit(agent_id: str, user_id: str) -> dict[str, Any]:
        return payload

    import asyncio

    with capture() as cap:
        out = asyncio.run(run_agentkit("a1", "u1"))
    assert out is payload
    (record,) = cap.records
    assert record.engine == "agentkit"
    assert record.agent_id == "a1"
    assert record.user_id == "u1"
    assert record.result.response is None  # content capture is off by default
    assert record.result.tokens == TokenUsage(input_tokens=1800, output_tokens=220,
                                              total_tokens=2020)
    assert record.result.tool_calls is not None
    assert len(record.result.tool_calls) == 3
