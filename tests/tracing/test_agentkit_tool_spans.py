"""AgentKit results that say when their tools ran get `execute_tool` child spans (issue 16:
they were only counted). AgentKit is JavaScript: start times come as ISO strings or as
`Date.now()` epoch milliseconds."""

from __future__ import annotations

import datetime as dt

from instrument import logged_execution
from tests.tracing.conftest import Otel, children_of

T0 = dt.datetime(2026, 12, 5, 10, 0, 0, tzinfo=dt.UTC)


@logged_execution(engine="agentkit", agent_id="agent")
def _agentkit(agent: str, result: dict[str, object]) -> dict[str, object]:
    return result


def test_timed_agentkit_tool_calls_become_child_spans(otel: Otel) -> None:
    result = {
        "success": True, "response": "done", "iterations": 2,
        "toolCalls": [
            {"plugin": "stripe", "action": "refund", "success": True, "executionTime": 40,
             "startedAt": "2026-12-05T10:00:00.000Z"},
            {"plugin": "mail", "action": "send", "success": False, "executionTime": 15,
             "startedAt": int(T0.timestamp() * 1000) + 100, "error": "smtp down"},
            {"plugin": "crm", "action": "note", "success": True},  # untimed: counted only
        ],
    }
    with otel.capture():
        _agentkit("support-bot", result)
    parent = otel.span()
    tools = {s.name: s for s in children_of(otel.spans(), parent)}
    assert set(tools) == {"execute_tool stripe.refund", "execute_tool mail.send"}
    refund = tools["execute_tool stripe.refund"]
    assert refund.start_time == int(T0.timestamp() * 1e9)
    assert refund.end_time is not None
    assert (refund.end_time - refund.start_time) / 1e6 == 40
    send = tools["execute_tool mail.send"]
    assert send.start_time == int(T0.timestamp() * 1e9) + 100_000_000
    assert dict(send.attributes or {}).get("error.type") is not None
    assert dict(parent.attributes or {})["instrument.tool_call_count"] == 3
