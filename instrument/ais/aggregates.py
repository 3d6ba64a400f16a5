"""AIS aggregates: what each record contributes, and the exact per-agent merge.

Per agent we keep **sums, counts, maxima, distinct sets and one arg-max** (the latest run with
measured input/output tokens). Every update is a commutative, associative merge
(:meth:`Aggregates.merge`), which is what makes the score exact under any order, batching or
concurrency, and what lets SQL apply it atomically as ``x = x + delta`` / ``max``.

``None`` means "not measured": such a dimension adds nothing to its ``n_*`` count, so it never
moves a mean. The SQL mirrors are ``stores/*/sql/0002_intensity.sql``; keep them in step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from instrument.record import ExecutionRecord

__all__ = ["Aggregates", "IntensityDelta", "aggregate", "as_utc", "sanitized_ms"]

#: Millisecond values are sanitized identically in Python and SQL: below 1e-6 (including
#: negatives) counts as 0 and above 1e12 as 1e12, so no arithmetic can underflow (PostgreSQL
#: raises on subnormal results) or overflow.
_MS_MIN = 1e-6
_MS_MAX = 1e12


def sanitized_ms(value: float | None) -> float | None:
    """A sanitized millisecond value; NaN/inf (JSON null in the record) is unmeasured."""
    if value is None or not math.isfinite(value):
        return None
    return 0.0 if value < _MS_MIN else min(float(value), _MS_MAX)


def as_utc(dt: datetime) -> datetime:
    """`dt` in UTC; a naive datetime is taken to be UTC already."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class IntensityDelta:
    """What one :class:`ExecutionRecord` contributes. ``None`` = not measured."""

    agent_id: str
    execution_id: str
    completed_at: datetime
    success: bool
    duration_ms: float
    retries: int | None
    total_tokens: int | None
    input_tokens: int | None
    output_tokens: int | None
    iterations: int | None
    tool_calls: int | None
    plugins: frozenset[str] | None
    orchestration_ms: float | None
    workflow_steps: int | None
    branches: int | None
    loops: int | None
    parallel: int | None
    memory_tokens: int | None
    memory_entries: int | None
    memory_types: frozenset[str] | None

    @classmethod
    def from_record(cls, record: ExecutionRecord) -> IntensityDelta | None:
        """The record's contribution, or ``None`` when it has no agent_id (nothing to score)."""
        if record.agent_id is None:
            return None
        r = record.result
        tok = r.tokens
        inp = tok.input_tokens if tok else None
        out = tok.output_tokens if tok else None
        total = tok.total_tokens if tok else None
        if total is None and inp is not None and out is not None:
            total = inp + out
        paired = inp is not None and out is not None
        wf = r.workflow
        mem = r.memory
        return cls(
            agent_id=record.agent_id,
            execution_id=str(record.execution_id),
            completed_at=as_utc(record.completed_at),
            success=r.success,
            duration_ms=sanitized_ms(record.duration_ms) or 0.0,
            retries=r.retries,
            total_tokens=total,
            input_tokens=inp if paired else None,
            output_tokens=out if paired else None,
            iterations=r.iterations,
            tool_calls=len(r.tool_calls) if r.tool_calls is not None else None,
            plugins=r.plugins if r.tool_calls is not None else None,
            orchestration_ms=sanitized_ms(r.orchestration_ms),
            workflow_steps=wf.steps if wf else None,
            branches=wf.branches if wf else None,
            loops=wf.loops if wf else None,
            parallel=wf.parallel if wf else None,
            memory_tokens=mem.tokens if mem else None,
            memory_entries=mem.entry_count if mem else None,
            memory_types=frozenset(mem.types) if mem and mem.types is not None else None,
        )


def _max(a: Any, b: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _n(v: object) -> int:
    return 0 if v is None else 1


@dataclass(frozen=True, slots=True)
class Aggregates:
    """Per-agent sums, counts, maxima, distinct sets and the latest measured run.

    Field names are the column names of ``agent_intensity_metrics``. ``merge`` is commutative
    and associative with :meth:`empty` as identity (floating-point sums up to rounding).
    """

    total_executions: int = 0
    successful_executions: int = 0
    failed_executions: int = 0
    n_retry_runs: int = 0
    total_retries: int = 0
    retried_executions: int = 0
    recovered_executions: int = 0
    n_token_runs: int = 0
    total_tokens_used: int = 0
    peak_tokens_single_run: int | None = None
    n_io_runs: int = 0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_duration_ms: float = 0.0
    peak_execution_duration_ms: float | None = None
    n_iteration_runs: int = 0
    total_iterations: int = 0
    n_tool_runs: int = 0
    total_tool_calls: int = 0
    plugins: frozenset[str] = frozenset()
    n_orchestration_runs: int = 0
    total_orchestration_ms: float = 0.0
    max_workflow_steps: int | None = None
    max_branches: int | None = None
    max_loops: int | None = None
    max_parallel: int | None = None
    n_memory_runs: int = 0
    total_memory_tokens: int = 0
    n_memory_entry_runs: int = 0
    total_memory_entries: int = 0
    n_memory_type_runs: int = 0
    memory_types: frozenset[str] = frozenset()
    #: Arg-max over io runs by (completed_at, execution_id): the "current" run for growth.
    latest_completed_at: datetime | None = None
    latest_execution_id: str | None = None
    latest_output_tokens: int | None = None

    @classmethod
    def empty(cls) -> Aggregates:
        return cls()

    @classmethod
    def of(cls, d: IntensityDelta) -> Aggregates:
        retried = d.retries is not None and d.retries > 0
        io = d.output_tokens is not None
        return cls(
            total_executions=1,
            successful_executions=int(d.success),
            failed_executions=int(not d.success),
            n_retry_runs=_n(d.retries),
            total_retries=d.retries or 0,
            retried_executions=int(retried),
            recovered_executions=int(retried and d.success),
            n_token_runs=_n(d.total_tokens),
            total_tokens_used=d.total_tokens or 0,
            peak_tokens_single_run=d.total_tokens,
            n_io_runs=int(io),
            total_input_tokens=d.input_tokens or 0,
            total_output_tokens=d.output_tokens or 0,
            total_duration_ms=d.duration_ms,
            peak_execution_duration_ms=d.duration_ms,
            n_iteration_runs=_n(d.iterations),
            total_iterations=d.iterations or 0,
            n_tool_runs=_n(d.tool_calls),
            total_tool_calls=d.tool_calls or 0,
            plugins=d.plugins or frozenset(),
            n_orchestration_runs=_n(d.orchestration_ms),
            total_orchestration_ms=d.orchestration_ms or 0.0,
            max_workflow_steps=d.workflow_steps,
            max_branches=d.branches,
            max_loops=d.loops,
            max_parallel=d.parallel,
            n_memory_runs=_n(d.memory_tokens),
            total_memory_tokens=d.memory_tokens or 0,
            n_memory_entry_runs=_n(d.memory_entries),
            total_memory_entries=d.memory_entries or 0,
            n_memory_type_runs=_n(d.memory_types),
            memory_types=d.memory_types or frozenset(),
            latest_completed_at=d.completed_at if io else None,
            latest_execution_id=d.execution_id if io else None,
            latest_output_tokens=d.output_tokens if io else None,
        )

    @property
    def latest_key(self) -> tuple[datetime, str] | None:
        if self.latest_completed_at is None or self.latest_execution_id is None:
            return None
        return (self.latest_completed_at, self.latest_execution_id)

    def merge(self, other: Aggregates) -> Aggregates:
        """The aggregates of both histories (disjoint by execution_id)."""
        values: dict[str, Any] = {}
        for f in fields(self):
            name = f.name
            if name.startswith("latest_"):
                continue
            a, b = getattr(self, name), getattr(other, name)
            if name.startswith(("peak_", "max_")):
                values[name] = _max(a, b)
            elif isinstance(a, frozenset):
                values[name] = a | b
            else:
                values[name] = a + b
        mine, theirs = self.latest_key, other.latest_key
        winner = self if theirs is None or (mine is not None and mine > theirs) else other
        values["latest_completed_at"] = winner.latest_completed_at
        values["latest_execution_id"] = winner.latest_execution_id
        values["latest_output_tokens"] = winner.latest_output_tokens
        return Aggregates(**values)

    def add(self, delta: IntensityDelta) -> Aggregates:
        return self.merge(Aggregates.of(delta))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Aggregates:
        """An ``agent_intensity_metrics`` row from any store (sets as lists or JSON text,
        timestamps as datetimes or ISO text, numbers as int/float/Decimal)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = row.get(f.name)
            if f.name in ("plugins", "memory_types"):
                if isinstance(raw, str):
                    raw = json.loads(raw)
                values[f.name] = frozenset(str(v) for v in raw or ())
            elif f.name == "latest_completed_at":
                values[f.name] = None if raw is None else as_utc(
                    raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw)))
            elif f.name == "latest_execution_id":
                values[f.name] = None if raw is None else str(raw)
            elif raw is None:
                values[f.name] = None if f.name.startswith(("peak_", "max_", "latest_")) else 0
            elif f.name in _FLOAT_FIELDS:
                values[f.name] = float(raw)
            else:
                values[f.name] = int(raw)
        return cls(**values)


_FLOAT_FIELDS = frozenset({"total_duration_ms", "peak_execution_duration_ms",
                           "total_orchestration_ms"})


def aggregate(records: Iterable[ExecutionRecord],
              into: Mapping[str, Aggregates] | None = None) -> dict[str, Aggregates]:
    """Per-agent aggregates of `records` (merged into `into`); records without agent_id skip."""
    out = dict(into or {})
    for record in records:
        delta = IntensityDelta.from_record(record)
        if delta is not None:
            out[delta.agent_id] = out.get(delta.agent_id, Aggregates()).add(delta)
    return out
