"""The workflow orchestrator's result (``WorkflowExecutionResult``), mapping or object.

Reads the camelCase mapping the origin's pilot returns (``stepsCompleted``,
``totalExecutionTime``, ``totalTokensUsed``, ...) and attribute objects (dataclasses, pydantic
models, any object) in camelCase or snake_case.

Unlike the origin's normalizer it invents nothing: the total token count stays a total (no
``prompt=0``/``completion=total`` split), and iterations, tool calls, model and provider stay
``None`` unless the result carries them. ``orchestration_ms`` is set only when the engine
measured orchestration time itself, never from the total execution time.
"""

from __future__ import annotations

from typing import Final

from pydantic import JsonValue

from instrument.adapters._coerce import (
    MAX_NAME,
    MAX_TEXT,
    MISSING,
    Notes,
    absent,
    error_text,
    field,
    has_field,
    is_a,
    length,
    str_list,
    to_bool,
    to_count,
    to_ms,
    to_str,
    type_name,
)
from instrument.adapters._jsonsafe import json_dict
from instrument.record import ErrorInfo, ExecutionResult, StepCounts, TokenUsage

__all__ = ["ADAPTER", "OrchestratorAdapter"]

#: Fields only a workflow result has; one of them is enough for auto-detection.
_SIGNATURE: Final = (
    "totalExecutionTime", "stepsCompleted", "stepsFailed", "stepsSkipped",
    "total_execution_time", "steps_completed", "steps_failed", "steps_skipped",
)
_MAX_STACK: Final = 4_000


def _f(obj: object, camel: str, snake: str | None = None) -> object:
    return field(obj, camel, snake) if snake else field(obj, camel)


class OrchestratorAdapter:
    """``orchestrator``: workflow results with step counts and a single token total."""

    name = "orchestrator"
    #: matches() on a plain dict looks only at its keys (see registry.keys_decide)
    detect_by_keys = True

    def matches(self, result: object) -> bool:
        if is_a(result, (str, bytes, int, float)) or result is None:
            return False
        return any(has_field(result, n) for n in _SIGNATURE)

    def normalize(self, result: object) -> ExecutionResult:
        if result is None or is_a(result, (str, bytes, int, float, list, tuple)):
            raise TypeError(
                f"orchestrator adapter needs a workflow result (mapping or object), "
                f"got {type_name(result)}"
            )
        notes = Notes()
        extras: dict[str, JsonValue] = {}

        raw_error = _f(result, "error")
        message = None if absent(raw_error) else error_text(raw_error)
        success = to_bool(_f(result, "success"))
        if success is None:
            success = message is None
            notes.add("success: missing or not a boolean; inferred from the error field")

        error: ErrorInfo | None = None
        if message is not None:
            code = field(raw_error, "code", "type", "name") if not is_a(
                raw_error, str) else MISSING
            etype = (type_name(raw_error) if is_a(raw_error, BaseException)
                     else to_str(code) or "WorkflowError")
            error = ErrorInfo(type=etype, message=message)

        total = to_count(_f(result, "totalTokensUsed", "total_tokens_used"))
        tokens = TokenUsage(total_tokens=total) if total is not None else None

        steps = self._steps(result)

        output = _f(result, "output")
        response = to_str(field(output, "message"), MAX_TEXT, scalars=False)

        for key, camel, snake in (
            ("execution_id", "executionId", "execution_id"),
            ("failed_step", "failedStep", "failed_step"),
            ("debug_run_id", "debugRunId", "debug_run_id"),
        ):
            v = to_str(_f(result, camel, snake), MAX_NAME)
            if v is not None:
                extras[key] = v
        engine_ms = to_ms(_f(result, "totalExecutionTime", "total_execution_time"))
        if engine_ms is not None:
            extras["engine_execution_time_ms"] = engine_ms
        stack = to_str(_f(result, "errorStack", "error_stack"), _MAX_STACK, scalars=False)
        if stack is not None:
            extras["error_stack"] = stack
        for key, camel, snake in (
            ("completed_step_ids", "completedStepIds", "completed_step_ids"),
            ("failed_step_ids", "failedStepIds", "failed_step_ids"),
            ("skipped_step_ids", "skippedStepIds", "skipped_step_ids"),
        ):
            ids = str_list(_f(result, camel, snake))
            if ids is not None:
                extras[key] = list(ids)
        issues = length(_f(result, "collectedIssues", "collected_issues"))
        if issues is not None:
            extras["collected_issues_count"] = issues

        orchestration_ms: float | None = None
        metrics = _f(result, "orchestrationMetrics", "orchestration_metrics")
        if not absent(metrics):
            orchestration_ms = to_ms(field(
                metrics, "orchestrationTimeMs", "orchestrationTime", "orchestration_ms",
                "orchestration_time_ms"))
            summary = json_dict(metrics)
            if summary is not None:
                extras["orchestration_metrics"] = summary
            else:
                notes.add(f"orchestrationMetrics: expected an object, got {type_name(metrics)}")
        if orchestration_ms is None:
            orchestration_ms = to_ms(_f(result, "orchestrationTimeMs", "orchestration_ms"))

        return ExecutionResult(
            success=success,
            error=error,
            tokens=tokens,
            model=to_str(_f(result, "model")),
            provider=to_str(_f(result, "provider")),
            response=response,
            steps=steps,
            orchestration_ms=orchestration_ms,
            extras=notes.into(extras),
        )

    @staticmethod
    def _steps(result: object) -> StepCounts | None:
        counts: dict[str, int | None] = {}
        for key, camel, snake, ids_camel, ids_snake in (
            ("completed", "stepsCompleted", "steps_completed", "completedStepIds",
             "completed_step_ids"),
            ("failed", "stepsFailed", "steps_failed", "failedStepIds", "failed_step_ids"),
            ("skipped", "stepsSkipped", "steps_skipped", "skippedStepIds", "skipped_step_ids"),
        ):
            n = to_count(_f(result, camel, snake))
            if n is None:
                # The id lists are measured too: their length is the count, not a guess.
                n = length(_f(result, ids_camel, ids_snake))
            counts[key] = n
        if all(v is None for v in counts.values()):
            return None
        return StepCounts(**counts)


ADAPTER = OrchestratorAdapter()
