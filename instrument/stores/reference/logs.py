"""Reference row of the ``logs`` writer's effect: one ``agent_logs`` row per record, unique on
``execution_id``.

``run_output`` is a short JSON summary *string* (the origin's format, kept for its
dashboards), in the text form Postgres gives ``jsonb`` so every store writes the same bytes;
``full_output`` holds the per-engine metadata under ``<engine>_metadata``. Mirrored in SQL by
``instrument_ingest`` (postgres/0001_core.sql); keep the two in step.
"""

from __future__ import annotations

import json
from typing import Any

from instrument.record import ExecutionRecord
from instrument.stores.reference.executions import (
    engine_details,
    round_ms,
    strip_none,
    total_tokens,
)

__all__ = [
    "credits_used", "jsonb_text", "log_row", "run_output", "status_message", "summary_text",
]


def _jsonb_key(key: str) -> tuple[int, bytes]:
    raw = key.encode()
    return (len(raw), raw)


#: What ``json.dumps(value, ensure_ascii=False)`` uses, built once.
_JSON = json.JSONEncoder(ensure_ascii=False)
#: ``_JSON.encode`` of a ``str``.
_string = json.encoder.encode_basestring


def credits_used(total: int | None) -> int | None:
    """Credits a run costs: ``ceil(total_tokens / 1000)``; ``None`` when tokens are unknown."""
    if total is None:
        return None
    return -((-total) // 1000)


def run_output(record: ExecutionRecord) -> str:
    """The JSON summary text; keys with unknown (``None``) values are left out."""
    return summary_text(record, total_tokens(record.result.tokens), round_ms(record.duration_ms))


def summary_text(record: ExecutionRecord, tokens: int | None, duration: int | None) -> str:
    """:func:`run_output`, given the record's ``total_tokens`` and ``round_ms(duration_ms)``
    (for a caller that computed them already)."""
    r = record.result
    steps = r.steps
    completed, failed, skipped = (
        (steps.completed, steps.failed, steps.skipped) if steps is not None else (None,) * 3
    )
    known_steps = [v for v in (completed, failed, skipped) if v is not None]
    # Written in jsonb_text's key order (byte length, then bytes), so no sort is needed here;
    # the values are a str, a bool and ints (their JSON text is their repr, as json.dumps
    # writes them), the strings through json's own encoder.
    parts: list[str] = []
    if r.model is not None:
        parts.append('"model": ' + _string(r.model))
    parts.append('"engine": ' + _string(record.engine))
    parts.append('"success": true' if r.success else '"success": false')
    if r.provider is not None:
        parts.append('"provider": ' + _string(r.provider))
    if r.iterations is not None:
        parts.append(f'"iterations": {r.iterations!r}')
    if tokens is not None:
        parts.append(f'"tokens_used": {tokens!r}')
    if known_steps:
        parts.append(f'"total_steps": {sum(known_steps)!r}')
    if failed is not None:
        parts.append(f'"steps_failed": {failed!r}')
    if skipped is not None:
        parts.append(f'"steps_skipped": {skipped!r}')
    if completed is not None:
        parts.append(f'"steps_completed": {completed!r}')
    if r.tool_calls is not None:
        parts.append(f'"tool_calls_count": {len(r.tool_calls)!r}')
    if duration is not None:
        parts.append(f'"execution_time_ms": {duration!r}')
    return "{" + ", ".join(parts) + "}"


def jsonb_text(values: dict[str, Any]) -> str:
    """A flat object as Postgres prints ``jsonb``: keys by byte length, then bytes; ``", "``.

    The SQLite store and ``instrument_ingest`` thereby store byte-identical ``run_output``.
    """
    ordered = sorted(values.items(), key=lambda kv: _jsonb_key(kv[0]))
    return _JSON.encode(dict(ordered))



def status_message(record: ExecutionRecord) -> str | None:
    """``"<ErrorType>: <message>"`` for a failure with error details, else ``None``."""
    error = record.result.error
    if record.result.success or error is None:
        return None
    return f"{error.type}: {error.message}"


def log_row(record: ExecutionRecord, *, capture_content: bool = False,
            details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``agent_logs`` row (``id`` is left to the database default).

    `details` is the record's :func:`engine_details` when the caller already built it.
    """
    if details is None:
        details = engine_details(record, capture_content=capture_content)
    r = record.result
    total = total_tokens(r.tokens)
    metadata = strip_none(
        {
            "execution_id": str(record.execution_id),
            "model": r.model,
            "provider": r.provider,
            **details,
        }
    )
    return {
        "execution_id": str(record.execution_id),
        "agent_id": record.agent_id,
        "user_id": record.user_id,
        "run_output": run_output(record),
        "full_output": {f"{record.engine}_metadata": metadata},
        "status": record.status,
        "status_message": status_message(record),
        "run_time": round_ms(record.duration_ms),
        "run_tokens": total,
        "user_credits_used": credits_used(total),
        "tenant_id": record.tenant_id,  # schema v6
    }
