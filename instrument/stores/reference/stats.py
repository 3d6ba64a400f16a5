"""Reference delta of the ``stats`` writer's effect: per-agent counters in ``agent_stats``,
applied as ``x = x + delta``.

A record without an ``agent_id`` has no stats row to update: it has no stats delta.
Deltas of one batch are merged per agent here (SQLite) or with ``GROUP BY`` in
``instrument_ingest`` (Postgres); the database adds them to the stored values atomically.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from instrument.record import ExecutionRecord
from instrument.stores.reference.executions import round_ms, total_tokens

__all__ = ["StatsDelta", "merge_deltas", "stats_delta"]


@dataclass(frozen=True, slots=True)
class StatsDelta:
    """What one record (or a merged batch) adds to one agent's ``agent_stats`` row."""

    agent_id: str
    user_id: str | None
    run_count: int
    success_count: int
    failure_count: int
    #: Sum of the measured totals; runs with unknown tokens add 0 here and 0 to token_run_count.
    total_tokens: int
    token_run_count: int
    total_duration_ms: int
    last_run_at: datetime
    last_run_status: str
    #: Tie-breaker for last_run_status when two runs completed at the same instant.
    last_execution_id: str


def stats_delta(record: ExecutionRecord) -> StatsDelta | None:
    """The record's contribution, or ``None`` when it names no agent."""
    if record.agent_id is None:
        return None
    total = total_tokens(record.result.tokens)
    ok = record.result.success
    return StatsDelta(
        agent_id=record.agent_id,
        user_id=record.user_id,
        run_count=1,
        success_count=1 if ok else 0,
        failure_count=0 if ok else 1,
        total_tokens=total or 0,
        token_run_count=0 if total is None else 1,
        total_duration_ms=round_ms(record.duration_ms) or 0,
        last_run_at=record.completed_at,
        last_run_status=record.status,
        last_execution_id=str(record.execution_id),
    )


@dataclass(slots=True)
class _Merged:
    """One agent's running merge (mutable, so a batch costs no object per record)."""

    user_id: str | None
    run_count: int
    success_count: int
    failure_count: int
    total_tokens: int
    token_run_count: int
    total_duration_ms: int
    last_run_at: datetime
    last_run_status: str
    last_execution_id: str


def merge_deltas(deltas: Iterable[StatsDelta]) -> list[StatsDelta]:
    """One delta per agent (sorted by agent_id, the lock order that avoids deadlocks).

    ``user_id`` is the latest run's non-null user; ``last_run_*`` come from the latest run
    (latest by ``(last_run_at, last_execution_id)``; on a tie the first delta keeps
    ``last_run_*`` and the later delta's user wins).
    """
    merged: dict[str, _Merged] = {}
    for d in deltas:
        m = merged.get(d.agent_id)
        if m is None:
            merged[d.agent_id] = _Merged(
                d.user_id, d.run_count, d.success_count, d.failure_count, d.total_tokens,
                d.token_run_count, d.total_duration_ms, d.last_run_at, d.last_run_status,
                d.last_execution_id)
            continue
        mine = (m.last_run_at, m.last_execution_id)
        theirs = (d.last_run_at, d.last_execution_id)
        if d.user_id is not None and (m.user_id is None or theirs >= mine):
            m.user_id = d.user_id
        m.run_count += d.run_count
        m.success_count += d.success_count
        m.failure_count += d.failure_count
        m.total_tokens += d.total_tokens
        m.token_run_count += d.token_run_count
        m.total_duration_ms += d.total_duration_ms
        if theirs > mine:
            m.last_run_at = d.last_run_at
            m.last_run_status = d.last_run_status
            m.last_execution_id = d.last_execution_id
    out: list[StatsDelta] = []
    for agent_id in sorted(merged):
        m = merged[agent_id]
        out.append(StatsDelta(
            agent_id, m.user_id, m.run_count, m.success_count, m.failure_count, m.total_tokens,
            m.token_run_count, m.total_duration_ms, m.last_run_at, m.last_run_status,
            m.last_execution_id))
    return out
