"""The execution record: one immutable, versioned, JSON-safe model per executor call.

`None` always means "not measured". Writers and the intensity score treat it as unknown,
never as zero, so an engine that does not report a number never gets a made-up one.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, JsonValue

__all__ = [
    "SCHEMA_VERSION",
    "ErrorInfo",
    "ExecutionRecord",
    "ExecutionResult",
    "MemoryUsage",
    "StepCounts",
    "TokenUsage",
    "ToolCall",
    "WorkflowShape",
]

#: Version of the record layout. Bumped on any incompatible change; spooled records carry it.
SCHEMA_VERSION: Literal[1] = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="null")


class TokenUsage(_Frozen):
    """Token counts for one execution. `input_tokens` includes cached tokens (GenAI semconv)."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None


class ErrorInfo(_Frozen):
    """Why an execution failed: the exception class (or engine error code) and a message."""

    type: str
    message: str


class ToolCall(_Frozen):
    """Metadata of one tool call. Arguments and results are never kept here (privacy)."""

    name: str
    plugin: str | None = None
    action: str | None = None
    call_id: str | None = None
    success: bool | None = None
    duration_ms: float | None = None
    started_at: datetime | None = None
    error: str | None = None
    items_returned: int | None = None


class MemoryUsage(_Frozen):
    """Memory context injected into the run: its tokens, entry count and kinds."""

    tokens: int | None = None
    entry_count: int | None = None
    types: list[str] | None = None


class StepCounts(_Frozen):
    """Workflow step outcomes."""

    completed: int | None = None
    failed: int | None = None
    skipped: int | None = None


class WorkflowShape(_Frozen):
    """Structural complexity of the workflow that ran."""

    steps: int | None = None
    branches: int | None = None
    loops: int | None = None
    parallel: int | None = None


class ExecutionResult(_Frozen):
    """An executor's return value, normalized by its engine adapter."""

    success: bool
    error: ErrorInfo | None = None
    tokens: TokenUsage | None = None
    iterations: int | None = None
    retries: int | None = None
    tool_calls: list[ToolCall] | None = None
    model: str | None = None
    provider: str | None = None
    response: str | None = None
    memory: MemoryUsage | None = None
    steps: StepCounts | None = None
    workflow: WorkflowShape | None = None
    #: Time spent orchestrating tools/steps, when the engine measures it (AIS plugin component).
    orchestration_ms: float | None = None
    extras: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def plugins(self) -> frozenset[str]:
        """Distinct plugins used by the tool calls (empty when none were reported)."""
        if not self.tool_calls:
            return frozenset()
        return frozenset(c.plugin for c in self.tool_calls if c.plugin)


class ExecutionRecord(_Frozen):
    """One execution, whatever its engine: what every writer and the span are built from."""

    schema_version: int = SCHEMA_VERSION
    execution_id: UUID
    agent_id: str | None = None
    user_id: str | None = None
    agent_name: str | None = None
    session_id: str | None = None
    execution_type: str = "manual"
    engine: str
    #: Operation name: the decorator's `name=`, else the agent name, else the function qualname.
    name: str
    started_at: datetime
    completed_at: datetime
    duration_ms: float
    trace_id: str | None = None
    span_id: str | None = None
    result: ExecutionResult
    #: Writers this record is destined for; `None` means every configured writer.
    writers: tuple[str, ...] | None = None

    @property
    def status(self) -> Literal["completed", "failed"]:
        return "completed" if self.result.success else "failed"

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe dict (UUIDs and datetimes as strings, NaN/inf as null), as sent to stores.

        Goes through the JSON encoder so a stray NaN in user-supplied extras can never reach a
        database that rejects it (Postgres jsonb refuses NaN for the whole batch).
        """
        return json.loads(self.model_dump_json())  # type: ignore[no-any-return]


_ModelT = TypeVar("_ModelT", bound=BaseModel)
_FIELD_SETS: dict[type[BaseModel], set[str]] = {}


def construct(cls: type[_ModelT], values: dict[str, Any]) -> _ModelT:
    """Build a model from values *we* produced, skipping validation (hot path only).

    `values` must hold every field of `cls` with already-correct types; this is ~5x cheaper than
    ``model_construct``. Anything built from user data goes through ``model_validate`` instead.
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    fields = _FIELD_SETS.get(cls)
    if fields is None:
        fields = _FIELD_SETS[cls] = set(cls.model_fields)
    # Every field is set, so every such model can share one set: pydantic only ever copies
    # it (model_copy) before changing it, and adding a name it holds already changes nothing.
    object.__setattr__(obj, "__pydantic_fields_set__",
                       fields if len(values) == len(fields) else set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the exception's own ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:  # a hostile __str__ must not turn into our error
        return f"<unprintable {type(exc).__name__}>"


_UNMEASURED: dict[str, Any] = {
    name: (field.default if field.default_factory is None else None)
    for name, field in ExecutionResult.model_fields.items()
}


def unmeasured_result(success: bool, *, error: ErrorInfo | None = None,
                      extras: dict[str, JsonValue] | None = None) -> ExecutionResult:
    """A result that measured nothing but its outcome (every other field ``None``), built
    without validation: for the decorator's own fallbacks (exceptions, unreadable results)."""
    return construct(ExecutionResult, {
        **_UNMEASURED, "success": success, "error": error,
        "extras": {} if extras is None else extras,
    })


def failed_result(error_type: str, message: str) -> ExecutionResult:
    """The result of an executor that raised: only what we know, everything else unmeasured."""
    return unmeasured_result(
        False, error=construct(ErrorInfo, {"type": error_type, "message": message}))
