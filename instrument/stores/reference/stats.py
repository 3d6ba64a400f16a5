"""Reference delta of the ``stats`` writer's effect: per-agent counters in ``agent_stats``,
applied as ``x = x + delta``.

A record without an ``agent_id`` has no stats row to update: it has no stats delta.
Deltas of one batch are merged per agent here (SQLite) or with ``GROUP BY`` in
``instrument_ingest`` (Postgres); the database adds them to the stored values atomically.

What counts (schema v6, API.md "Decided details"): a ``completed``, ``failed`` or ``paused``
execution is a run (``run_count``); a paused run is neither a success nor a failure
(``paused_count``); a ``refused`` execution (a budget stopped it before it ran) is not a run:
it adds only ``refused_count``, and leaves ``last_run_*`` alone. The row's ``user_id`` is the
agent's owner (the record's ``owner_id``), never the caller: a row takes the first owner named
for its agent, and keeps it.
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
    #: The agent's owner (``ExecutionRecord.owner_id``): the row's ``user_id``.
    user_id: str | None
    run_count: int
    success_count: int
    failure_count: int
    #: Sum of the measured totals; runs with unknown tokens add 0 here and 0 to token_run_count.
    total_tokens: int
    token_run_count: int
    total_duration_ms: int
    #: The latest run's completion time and status; ``None`` when the delta holds no run (only
    #: refused executions).
    last_run_at: datetime | None
    last_run_status: str | None
    #: Tie-breaker for last_run_status when two runs completed at the same instant.
    last_execution_id: str
    paused_count: int = 0
    refused_count: int = 0
    #: Ordering key of the owner: (completed_at, execution id) of the record that named it.
    owner_at: tuple[datetime, str] | None = None


def stats_delta(record: ExecutionRecord) -> StatsDelta | None:
    """The record's contribution, or ``None`` when it names no agent."""
    if record.agent_id is None:
        return None
    eid = str(record.execution_id)
    owner_at = None if record.owner_id is None else (record.completed_at, eid)
    status = record.status
    if status == "refused":  # not a run: counted apart, nothing else
        return StatsDelta(record.agent_id, record.owner_id, 0, 0, 0, 0, 0, 0, None, None, eid,
                          0, 1, owner_at)
    total = total_tokens(record.result.tokens)
    return StatsDelta(
        agent_id=record.agent_id,
        user_id=record.owner_id,
        run_count=1,
        success_count=int(status == "completed"),
        failure_count=int(status == "failed"),
        total_tokens=total or 0,
        token_run_count=0 if total is None else 1,
        total_duration_ms=round_ms(record.duration_ms) or 0,
        last_run_at=record.completed_at,
        last_run_status=status,
        last_execution_id=eid,
        paused_count=int(status == "paused"),
        owner_at=owner_at,
    )


@dataclass(slots=True)
class _Merged:
    """One agent's running merge (mutable, so a batch costs no object per record)."""

    user_id: str | None
    owner_at: tuple[datetime, str] | None
    run_count: int
    success_count: int
    failure_count: int
    total_tokens: int
    token_run_count: int
    total_duration_ms: int
    last_run_at: datetime | None
    last_run_status: str | None
    last_execution_id: str
    paused_count: int
    refused_count: int


def merge_deltas(deltas: Iterable[StatsDelta]) -> list[StatsDelta]:
    """One delta per agent (sorted by agent_id, the lock order that avoids deadlocks).

    ``user_id`` is the owner named by the latest record naming one (latest by
    ``(completed_at, execution_id)``); ``last_run_*`` come from the latest run (latest by
    ``(last_run_at, last_execution_id)``); refused executions have no ``last_run_*``.
    """
    merged: dict[str, _Merged] = {}
    for d in deltas:
        m = merged.get(d.agent_id)
        if m is None:
            merged[d.agent_id] = _Merged(
                d.user_id, d.owner_at, d.run_count, d.success_count, d.failure_count,
                d.total_tokens, d.token_run_count, d.total_duration_ms, d.last_run_at,
                d.last_run_status, d.last_execution_id, d.paused_count, d.refused_count)
            continue
        if d.owner_at is not None and (m.owner_at is None or d.owner_at > m.owner_at):
            m.user_id, m.owner_at = d.user_id, d.owner_at
        m.run_count += d.run_count
        m.success_count += d.success_count
        m.failure_count += d.failure_count
        m.total_tokens += d.total_tokens
        m.token_run_count += d.token_run_count
        m.total_duration_ms += d.total_duration_ms
        m.paused_count += d.paused_count
        m.refused_count += d.refused_count
        if d.last_run_at is not None and (
                m.last_run_at is None
                or (d.last_run_at, d.last_execution_id) > (m.last_run_at, m.last_execution_id)):
            m.last_run_at = d.last_run_at
            m.last_run_status = d.last_run_status
            m.last_execution_id = d.last_execution_id
    out: list[StatsDelta] = []
    for agent_id in sorted(merged):
        m = merged[agent_id]
        out.append(StatsDelta(
            agent_id, m.user_id, m.run_count, m.success_count, m.failure_count, m.total_tokens,
            m.token_run_count, m.total_duration_ms, m.last_run_at, m.last_run_status,
            m.last_execution_id, m.paused_count, m.refused_count, m.owner_at))
    return out
