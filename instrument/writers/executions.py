"""The ``executions`` writer: one ``agent_executions`` row per record, ``id = execution_id``.

Mirrored in SQL by ``instrument_ingest`` (postgres/0001_core.sql); keep the two in step.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from instrument.record import ExecutionRecord, TokenUsage

__all__ = [
    "engine_details",
    "execution_row",
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


def engine_details(record: ExecutionRecord, *, capture_content: bool) -> dict[str, Any]:
    """Engine metadata shared by ``agent_executions.logs`` and ``agent_logs.full_output``.

    Tool calls are metadata only (name, plugin/action, success, duration, items, error); the
    response text is included only when content capture is on. Unknown (``None``) fields are
    left out at every depth.
    """
    # The result's JSON form (one model dump per record, no JSON text in between), read as the
    # SQL reads it: NaN/inf are null there (_strip_json_nulls), nulls in objects are dropped.
    # Fields that are None are left out by pydantic already.
    res = record.result.model_dump(mode="json", exclude_none=True)
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


def execution_row(record: ExecutionRecord, *, capture_content: bool,
                  details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``agent_executions`` row (column -> Python value; ``logs`` is a JSON-safe dict).

    `details` is the record's :func:`engine_details` when the caller already built it (the
    SQLite store builds it once per record for this row and the ``agent_logs`` row).
    """
    if details is None:
        details = engine_details(record, capture_content=capture_content)
    r = record.result
    tokens = r.tokens
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
    }
