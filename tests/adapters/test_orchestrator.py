"""The orchestrator adapter, field by field, for mappings and attribute objects."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest

from instrument import logged_execution
from instrument.adapters import detect_adapter, get_adapter
from instrument.record import ErrorInfo, StepCounts, TokenUsage
from instrument.testing import capture
from tests.adapters.samples import (
    WorkflowExecutionResult,
    agentkit_success,
    mapping_result,
    workflow_failure,
    workflow_success,
)

ADAPTER = get_adapter("orchestrator")


def test_success_mapping_field_by_field() -> None:
    r = ADAPTER.normalize(workflow_success())
    assert r.success is True
    assert r.error is None
    # The total stays a total: no prompt=0 / completion=total split (the origin's mistake).
    assert r.tokens == TokenUsage(total_tokens=2300)
    assert r.tokens.input_tokens is None
    assert r.tokens.output_tokens is None
    assert r.steps == StepCounts(completed=4, failed=1, skipped=0)
    assert r.response == "Sent 3 summaries"
    # Not reported by the engine, so not invented.
    assert r.iterations is None
    assert r.tool_calls is None
    assert r.retries is None
    assert r.model is None
    assert r.provider is None
    assert r.memory is None
    assert r.orchestration_ms is None  # totalExecutionTime is not orchestration time
    assert r.extras["execution_id"] == "exec-7f3a"
    assert r.extras["debug_run_id"] == "dbg-1"
    assert r.extras["engine_execution_time_ms"] == 5120.0
    assert r.extras["completed_step_ids"] == ["s1", "s2", "s3", "s4"]
    assert r.extras["failed_step_ids"] == ["s5"]
    assert r.extras["skipped_step_ids"] == []
    assert r.extras["collected_issues_count"] == 1
    assert r.extras["orchestration_metrics"] == workflow_success()["orchestrationMetrics"]
    assert "normalization_notes" not in r.extras
    # The workflow output itself (user data) is not copied into extras.
    assert "someone@example.com" not in r.model_dump_json()


def test_failure_mapping() -> None:
    r = ADAPTER.normalize(workflow_failure())
    assert r.success is False
    assert r.error == ErrorInfo(type="WorkflowError", message=workflow_failure()["error"])
    assert r.response is None  # output is None
    assert r.steps == StepCounts(completed=1, failed=1, skipped=2)
    assert r.tokens == TokenUsage(total_tokens=120)
    assert r.extras["failed_step"] == "s2"
    assert str(r.extras["error_stack"]).startswith("Error: Step s2 failed")


def test_snake_case_dataclass() -> None:
    obj = WorkflowExecutionResult(
        success=True, execution_id="e1", output={"message": "ok"}, steps_completed=2,
        steps_failed=0, steps_skipped=1, total_execution_time=90.5, total_tokens_used=15,
        completed_step_ids=["a", "b"],
    )
    assert ADAPTER.matches(obj)
    r = ADAPTER.normalize(obj)
    assert r.success is True
    assert r.steps == StepCounts(completed=2, failed=0, skipped=1)
    assert r.tokens == TokenUsage(total_tokens=15)
    assert r.response == "ok"
    assert r.extras["execution_id"] == "e1"
    assert r.extras["engine_execution_time_ms"] == 90.5
    assert r.extras["completed_step_ids"] == ["a", "b"]


class CamelModel(pydantic.BaseModel):
    success: bool
    executionId: str
    stepsCompleted: int
    totalExecutionTime: float
    totalTokensUsed: int | None = None
    output: Any = None


def test_camel_case_pydantic_object() -> None:
    obj = CamelModel(success=False, executionId="x", stepsCompleted=0, totalExecutionTime=3,
                     output=type("Out", (), {"message": "partial"})())
    assert detect_adapter(obj) is ADAPTER
    r = ADAPTER.normalize(obj)
    assert r.success is False
    assert r.error is None  # the engine gave no error: none is invented
    assert r.tokens is None  # totalTokensUsed is None: not measured
    assert r.steps == StepCounts(completed=0)
    assert r.response == "partial"


def test_no_token_total_means_no_tokens() -> None:
    data = workflow_success()
    del data["totalTokensUsed"]
    assert ADAPTER.normalize(data).tokens is None


def test_step_counts_fall_back_to_id_lists() -> None:
    r = ADAPTER.normalize({"totalExecutionTime": 10, "success": True,
                           "completedStepIds": ["a", "b", "c"], "failedStepIds": []})
    assert r.steps == StepCounts(completed=3, failed=0, skipped=None)


def test_orchestration_ms_only_when_measured() -> None:
    data = workflow_success()
    data["orchestrationMetrics"]["orchestrationTimeMs"] = 640
    assert ADAPTER.normalize(data).orchestration_ms == 640.0
    assert ADAPTER.normalize({"stepsCompleted": 1, "orchestration_ms": 12}).orchestration_ms == 12


def test_success_inferred_and_noted_when_missing() -> None:
    r = ADAPTER.normalize({"stepsCompleted": 1, "error": "boom"})
    assert r.success is False
    assert r.error == ErrorInfo(type="WorkflowError", message="boom")
    assert r.extras["normalization_notes"]
    assert ADAPTER.normalize({"stepsCompleted": 1}).success is True


def test_error_objects() -> None:
    r = ADAPTER.normalize({"stepsFailed": 1, "success": False,
                           "error": {"code": "STEP_TIMEOUT", "message": "s3 timed out"}})
    assert r.error == ErrorInfo(type="STEP_TIMEOUT", message="s3 timed out")
    r = ADAPTER.normalize({"stepsFailed": 1, "success": False, "error": KeyError("k")})
    assert r.error is not None
    assert r.error.type == "KeyError"


def test_wrong_types_are_dropped_not_guessed() -> None:
    r = ADAPTER.normalize({"success": True, "stepsCompleted": -2, "stepsFailed": float("nan"),
                           "stepsSkipped": "3", "totalTokensUsed": "lots",
                           "totalExecutionTime": float("inf"), "output": {"message": 42}})
    assert r.steps == StepCounts(completed=None, failed=None, skipped=3)
    assert r.tokens is None
    assert "engine_execution_time_ms" not in r.extras
    assert r.response is None
    json.loads(r.model_dump_json())


@pytest.mark.parametrize("value", [
    agentkit_success(), mapping_result(), {"success": True}, {"executionId": "x"}, None, "s",
    [workflow_success()], 3,
])
def test_matches_only_workflow_results(value: object) -> None:
    assert ADAPTER.matches(value) is False


def test_matches_workflow_results() -> None:
    assert ADAPTER.matches(workflow_success())
    assert ADAPTER.matches({"totalExecutionTime": 1})
    assert ADAPTER.matches({"stepsCompleted": 0})

    @dataclass
    class Minimal:
        steps_completed: int

    assert ADAPTER.matches(Minimal(1))


def test_decorated_workflow_record_end_to_end() -> None:
    payload = workflow_failure()

    @logged_execution(agent_id="agent_id")
    def run(agent_id: str) -> dict[str, Any]:
        return payload

    with capture() as cap:
        out = run("agent-1")
    assert out is payload
    (record,) = cap.records
    assert record.engine == "orchestrator"
    assert record.status == "failed"
    assert record.result.tokens == TokenUsage(total_tokens=120)
    # The connection string's password is redacted before the record leaves the core.
    assert record.result.error is not None
    assert "hunter2" not in record.result.error.message
    assert "postgresql://svc:[REDACTED]@db:5432/app" in record.result.error.message
    record.model_dump_json()
