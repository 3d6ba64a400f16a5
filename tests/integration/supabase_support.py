"""Helpers for the Supabase store tests: the production migration, records, table snapshots."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from instrument.record import (
    ErrorInfo,
    ExecutionRecord,
    ExecutionResult,
    StepCounts,
    TokenUsage,
    ToolCall,
)

TABLES = ("agent_executions", "agent_logs", "agent_stats", "agent_intensity_metrics")


def apply_production_migration(dsn: str) -> None:
    """The same SQL migration as production, through the stores' migration runner."""
    from instrument.stores.migrations import migrate_postgres

    with psycopg.connect(dsn) as conn:
        migrate_postgres(conn)


_T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def make_record(
    agent_id: str,
    *,
    user_id: str | None = None,
    engine: str = "agentkit",
    success: bool = True,
    tokens: tuple[int, int] | None = (100, 40),
    iterations: int | None = 2,
    tool_calls: int = 1,
    duration_ms: float = 1500.0,
    offset_s: int = 0,
    response: str | None = None,
    **fields: Any,
) -> ExecutionRecord:
    """One record, as the decorator would produce it for `engine`."""
    started = _T0 + timedelta(seconds=offset_s)
    result = ExecutionResult(
        success=success,
        error=None if success else ErrorInfo(type="ToolError", message="search failed"),
        tokens=None if tokens is None else TokenUsage(
            input_tokens=tokens[0], output_tokens=tokens[1], total_tokens=sum(tokens)),
        iterations=iterations if engine == "agentkit" else None,
        tool_calls=[ToolCall(name=f"tool_{i}", plugin="google-mail", action="search",
                             success=True, duration_ms=12.5, items_returned=3)
                    for i in range(tool_calls)] if engine == "agentkit" else None,
        steps=StepCounts(completed=3, failed=0 if success else 1, skipped=0)
        if engine == "orchestrator" else None,
        model="gpt-4o-mini",
        provider="openai",
        response=response,
    )
    return ExecutionRecord(
        execution_id=uuid.uuid4(),
        agent_id=agent_id,
        user_id=user_id,
        agent_name=f"Agent {agent_id}",
        engine=engine,
        name=f"Agent {agent_id}",
        started_at=started,
        completed_at=started + timedelta(milliseconds=duration_ms),
        duration_ms=duration_ms,
        result=result,
        **fields,
    )


def table_snapshot(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the four target tables, in a stable order."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(dsn) as conn:
        for table in TABLES:
            exists = conn.execute("SELECT to_regclass(%s)", (f"public.{table}",)).fetchone()
            if exists is None or exists[0] is None:
                out[table] = []
                continue
            rows = conn.execute(f"SELECT * FROM public.{table}").fetchall()
            out[table] = sorted(rows, key=repr)
    return out


def count_rows(dsn: str, table: str, where: str = "TRUE", params: tuple[Any, ...] = ()) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(f"SELECT count(*) FROM public.{table} WHERE {where}", params).fetchone()
    assert row is not None
    return int(row[0])
