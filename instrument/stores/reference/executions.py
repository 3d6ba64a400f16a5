"""Reference row of the ``executions`` writer's effect: one ``agent_executions`` row per
record, ``id = execution_id``.

The SQL must match it: ``instrument_ingest`` (postgres/0001_core.sql) computes the same row, the
SQLite fast path (:mod:`instrument.stores.sqlite.ingest`) builds the same parameters; parity
tests hold both to this reference. Keep them in step.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from instrument.record import ExecutionRecord, ExecutionResult, TokenUsage, ToolCall

__all__ = [
    "engine_details",
    "execution_row",
    "json_finite",
    "round_ms",
    "strip_none",
    "strip_nulls_deep",
    "total_tokens",
]


#: Below this magnitude an integral float converts to int exactly (the Decimal path agrees).
_EXACT_INT = 1e15


def round_ms(value: float) -> int | None:
    """Milliseconds as an integer, half away from zero (what Postgres ``round(numeric)`` does).

    NaN and infinities (which records send to stores as null) give ``None``.
    """
    if not math.isfinite(value):
        return None
    value = float(value)
    if value.is_integer() and -_EXACT_INT < value < _EXACT_INT:
        return int(value)  # nothing to round (the common case; skips the Decimal)
    return int(Decimal(repr(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def total_tokens(tokens: TokenUsage | None) -> int | None:
    """The run's total tokens: reported total, else input + output when both were measured."""
    if tokens is None:
        return None
    if tokens.total_tokens is not None:
        return tokens.total_tokens
    if tokens.input_tokens is not None and tokens.output_tokens is not None:
        return tokens.input_tokens + tokens.output_tokens
    return None


def strip_none(values: dict[str, Any]) -> dict[str, Any]:
    """The mapping without its ``None`` values (top level only)."""
    return {k: v for k, v in values.items() if v is not None}


def strip_nulls_deep(value: Any) -> Any:
    """Drop ``None``-valued object fields at every depth (Postgres ``jsonb_strip_nulls``).

    ``None`` elements of lists stay, as in Postgres.
    """
    if isinstance(value, dict):
        return {k: strip_nulls_deep(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls_deep(v) for v in value]
    return value


def json_finite(value: Any) -> Any:
    """`value` as its JSON form reads back: NaN and infinities (null in records' JSON) become
    ``None``; everything else is kept (a free-form document such as ``metadata``)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_finite(v) for v in value]
    return value


def _strip_json_nulls(value: Any) -> Any:
    """``strip_nulls_deep(json.loads(json_text_of(value)))`` for a JSON-mode model dump.

    NaN and infinities (null in JSON text) count as null: dropped from objects, ``None`` in
    lists. Only containers are walked (one call per object or list, not per value).
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if v is None:
                continue
            if isinstance(v, float):
                if math.isfinite(v):
                    out[k] = v
            elif isinstance(v, dict | list):
                out[k] = _strip_json_nulls(v)
            else:
                out[k] = v
        return out
    if isinstance(value, list):
        return [
            (v if math.isfinite(v) else None) if isinstance(v, float)
            else _strip_json_nulls(v) if isinstance(v, dict | list) else v
            for v in value
        ]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fields(model: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """A sub-model's known (non-``None``) int/str/bool fields, in field order."""
    return {n: v for n in names if (v := getattr(model, n)) is not None}


_TOKEN_FIELDS = ("input_tokens", "output_tokens", "total_tokens", "cached_input_tokens",
                 "reasoning_tokens", "cache_write_input_tokens")
_STEP_FIELDS = ("completed", "failed", "skipped")
_WORKFLOW_FIELDS = ("steps", "branches", "loops", "parallel")


def _tool_call(call: ToolCall) -> dict[str, Any]:
    """A tool call's JSON form without unknowns (``started_at`` is ``None`` here)."""
    out: dict[str, Any] = {"name": call.name}
    if call.plugin is not None:
        out["plugin"] = call.plugin
    if call.action is not None:
        out["action"] = call.action
    if call.call_id is not None:
        out["call_id"] = call.call_id
    if call.success is not None:
        out["success"] = call.success
    if (ms := call.duration_ms) is not None and math.isfinite(ms):
        out["duration_ms"] = ms
    if call.error is not None:
        out["error"] = call.error
    if call.items_returned is not None:
        out["items_returned"] = call.items_returned
    return out


def _dumped_details(r: ExecutionResult, *, capture_content: bool) -> dict[str, Any]:
    """:func:`engine_details` through the result's JSON-mode model dump (any result)."""
    # One model dump per record, no JSON text in between, read as the SQL reads it: NaN/inf
    # are null there (_strip_json_nulls), nulls in objects are dropped. Fields that are None
    # are left out by pydantic already.
    res = r.model_dump(mode="json", exclude_none=True)
    calls = res.get("tool_calls")
    details: dict[str, Any] = _strip_json_nulls(
        {
            "iterations": res.get("iterations"),
            "retries": res.get("retries"),
            "tool_call_count": len(calls) if isinstance(calls, list) else None,
            "tool_calls": calls,
            "tokens": res.get("tokens"),
            "steps": res.get("steps"),
            "workflow": res.get("workflow"),
            "memory": res.get("memory"),
            "orchestration_ms": res.get("orchestration_ms"),
            "extras": res.get("extras") or {},
            "response": res.get("response") if capture_content else None,
        }
    )
    return details


def engine_details(record: ExecutionRecord, *, capture_content: bool) -> dict[str, Any]:
    """Engine metadata shared by ``agent_executions.logs`` and ``agent_logs.full_output``.

    Tool calls are metadata only (name, plugin/action, success, duration, items, error); the
    response text is included only when content capture is on. Unknown (``None``) fields are
    left out at every depth.
    """
    r = record.result
    calls = r.tool_calls
    if r.extras or (calls and any(c.started_at is not None for c in calls)):
        # Free-form JSON and datetimes: pydantic's JSON form is the definition.
        return _dumped_details(r, capture_content=capture_content)
    # The common shape, read from the attributes: the same dict as the model dump gives (a
    # property test holds the two together), at a fraction of the cost.
    details: dict[str, Any] = {}
    if r.iterations is not None:
        details["iterations"] = r.iterations
    if r.retries is not None:
        details["retries"] = r.retries
    if calls is not None:
        details["tool_call_count"] = len(calls)
        details["tool_calls"] = [_tool_call(c) for c in calls]
    if r.tokens is not None:
        details["tokens"] = _fields(r.tokens, _TOKEN_FIELDS)
    if r.steps is not None:
        details["steps"] = _fields(r.steps, _STEP_FIELDS)
    if r.workflow is not None:
        details["workflow"] = _fields(r.workflow, _WORKFLOW_FIELDS)
    if (memory := r.memory) is not None:
        mem: dict[str, Any] = {}
        if memory.tokens is not None:
            mem["tokens"] = memory.tokens
        if memory.entry_count is not None:
            mem["entry_count"] = memory.entry_count
        if memory.types is not None:
            mem["types"] = list(memory.types)
        details["memory"] = mem
    if (ms := r.orchestration_ms) is not None and math.isfinite(ms):
        details["orchestration_ms"] = ms
    details["extras"] = {}
    if capture_content and r.response is not None:
        details["response"] = r.response
    return details


def execution_row(record: ExecutionRecord, *, capture_content: bool,
                  details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``agent_executions`` row (column -> Python value; ``logs`` is a JSON-safe dict).

    ``status`` is the record's (``completed``, ``failed``, ``paused`` or ``refused``);
    ``cost_usd`` is the exact :class:`~decimal.Decimal` the record carries; ``input`` is kept
    only with content capture, as the response is (in ``logs``).

    `details` is the record's :func:`engine_details` when the caller already built it (the
    SQLite store builds it once per record for this row and the ``agent_logs`` row).
    """
    if details is None:
        details = engine_details(record, capture_content=capture_content)
    r = record.result
    tokens = r.tokens
    parent, resumes = record.parent_execution_id, record.resumes_execution_id
    return {
        "id": str(record.execution_id),
        "agent_id": record.agent_id,
        "user_id": record.user_id,
        "agent_name": record.agent_name,
        "session_id": record.session_id,
        "execution_type": record.execution_type,
        "engine": record.engine,
        "status": record.status,
        "started_at": record.started_at,
        "completed_at": record.completed_at,
        "execution_duration_ms": round_ms(record.duration_ms),
        "error_type": r.error.type if r.error is not None else None,
        "error_message": r.error.message if r.error is not None else None,
        "input_tokens": tokens.input_tokens if tokens is not None else None,
        "output_tokens": tokens.output_tokens if tokens is not None else None,
        "total_tokens": total_tokens(tokens),
        "model": r.model,
        "provider": r.provider,
        "trace_id": record.trace_id,
        "span_id": record.span_id,
        "logs": {"name": record.name, **details},
        # schema v6 (December 2026)
        "tenant_id": record.tenant_id,
        "owner_id": record.owner_id,
        "parent_execution_id": None if parent is None else str(parent),
        "resumes_execution_id": None if resumes is None else str(resumes),
        "tags": None if record.tags is None else list(record.tags),
        "metadata": None if record.metadata is None else json_finite(record.metadata),
        "cost_usd": r.cost_usd,
        "price_source": r.price_source,
        "input": r.input if capture_content else None,
        "request_model": r.request_model,
        "service_tier": r.service_tier,
        "cache_write_input_tokens": tokens.cache_write_input_tokens if tokens is not None else None,
    }
