"""The pure record -> row/delta functions of the built-in writers."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from instrument.record import ExecutionResult, StepCounts, TokenUsage
from instrument.stores.reference.executions import execution_row, round_ms, total_tokens
from instrument.stores.reference.logs import credits_used, log_row, run_output, status_message
from instrument.stores.reference.stats import merge_deltas, stats_delta
from tests.stores.records import agentkit, mapping, orchestrator


@pytest.mark.parametrize(("total", "credits"), [
    (None, None), (0, 0), (1, 1), (999, 1), (1000, 1), (1001, 2), (3200, 4),
    (10**12 + 1, 10**9 + 1),
])
def test_credits_are_ceil_of_thousands_and_unknown_stays_unknown(
        total: int | None, credits: int | None) -> None:
    assert credits_used(total) == credits


def test_total_tokens_is_reported_or_input_plus_output_never_invented() -> None:
    assert total_tokens(None) is None
    assert total_tokens(TokenUsage()) is None
    assert total_tokens(TokenUsage(input_tokens=5)) is None
    assert total_tokens(TokenUsage(input_tokens=5, output_tokens=7)) == 12
    assert total_tokens(TokenUsage(input_tokens=5, output_tokens=7, total_tokens=20)) == 20


@pytest.mark.parametrize(("ms", "out"), [(0.5, 1), (1.5, 2), (2.5, 3), (2.4999, 2), (0.0, 0)])
def test_round_ms_rounds_half_up_like_postgres(ms: float, out: int) -> None:
    assert round_ms(ms) == out


def test_run_output_is_a_json_summary_without_unknowns() -> None:
    rec = orchestrator(1, tokens=None, ok=False)
    text = run_output(rec)
    assert text.startswith('{"model": "workflow_orchestrator", "engine": "orchestrator", ')
    data = json.loads(text)
    assert data == {"success": False, "engine": "orchestrator", "execution_time_ms": 2502,
                    "model": "workflow_orchestrator", "provider": "neuronforge",
                    "steps_completed": 3, "steps_failed": 1, "steps_skipped": 1,
                    "total_steps": 5}
    assert json.loads(run_output(mapping(1))) == {
        "success": True, "engine": "mapping", "execution_time_ms": 1}
    partial = mapping(2).model_copy(update={"result": ExecutionResult(
        success=True, steps=StepCounts(completed=2))})
    assert json.loads(run_output(partial))["total_steps"] == 2


def test_log_row_for_agentkit() -> None:
    rec = agentkit(1, ok=False)
    row = log_row(rec)
    assert row["status"] == "failed"
    assert row["status_message"] == "TimeoutError: LLM timed out"
    assert row["run_tokens"] == 3200
    assert row["user_credits_used"] == 4
    meta = row["full_output"]["agentkit_metadata"]
    assert meta["execution_id"] == str(rec.execution_id)
    assert meta["tool_call_count"] == 2
    assert "response" not in meta
    assert log_row(rec, capture_content=True)["full_output"]["agentkit_metadata"]["response"]
    assert status_message(agentkit(2)) is None


def test_execution_row_keeps_tool_calls_as_metadata_only() -> None:
    row = execution_row(agentkit(1), capture_content=False)
    assert row["logs"]["tool_calls"][0] == {
        "name": "gmail.list", "plugin": "gmail", "action": "list", "call_id": "c1",
        "success": True, "duration_ms": 120.25, "items_returned": 7}
    assert row["logs"]["tokens"] == {"input_tokens": 900, "output_tokens": 2300,
                                     "total_tokens": 3200, "cached_input_tokens": 100}
    assert row["execution_type"] == "api"
    assert row["total_tokens"] == 3200
    assert "response" not in row["logs"]
    assert execution_row(agentkit(1), capture_content=True)["logs"]["response"]


def test_stats_deltas_merge_per_agent_in_key_order() -> None:
    a1 = orchestrator(1)
    a2 = orchestrator(2, ok=False, tokens=None)
    b1 = agentkit(1)
    none = mapping(1, agent_id=None)
    assert stats_delta(none) is None
    deltas = [d for d in map(stats_delta, [b1, a2, a1, none]) if d is not None]
    merged = merge_deltas(deltas)
    assert [m.agent_id for m in merged] == ["agent-kit", "agent-orch"]
    orch = merged[1]
    assert (orch.run_count, orch.success_count, orch.failure_count) == (2, 1, 1)
    assert (orch.total_tokens, orch.token_run_count) == (1200, 1)
    assert orch.total_duration_ms == 2502 + 2503
    assert orch.last_run_status == "failed"  # orchestrator(2) completed last
    later = orchestrator(0).model_copy(
        update={"completed_at": a2.completed_at + timedelta(seconds=1)})
    assert merge_deltas([stats_delta(a2), stats_delta(later)])[0].last_run_status == (  # type: ignore[list-item]
        "completed")
