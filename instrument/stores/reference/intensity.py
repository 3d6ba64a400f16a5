"""Reference Python of the ``intensity`` writer's effect: per-agent AIS aggregates and the
derived and score values stored with them.

This is what the SQL must match: the SQLite store applies it through
:mod:`instrument.stores.sqlite.intensity`, Postgres/Supabase compute the same rows in SQL
(``instrument_apply_intensity(records jsonb)`` in ``stores/postgres/sql/0002_intensity.sql``);
parity tests hold every store to it. Pure: no database, no clock.

Reading: :func:`aggregates_from_row` and :func:`agent_scores` turn an
``agent_intensity_metrics`` row (from any store) into aggregates and a display dict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from instrument import ais
from instrument.ais.aggregates import as_utc, sanitized_ms
from instrument.record import ExecutionRecord

__all__ = [
    "AGGREGATE_COLUMNS",
    "DERIVED_COLUMNS",
    "SCORE_COLUMNS",
    "IntensityBatch",
    "agent_scores",
    "aggregates_from_row",
    "batch_aggregates",
    "stored_values",
]

#: Aggregate columns of agent_intensity_metrics, in ais.Aggregates field order.
AGGREGATE_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ais.Aggregates))
#: Derived-mean columns of agent_intensity_metrics, in ais.Derived field order.
DERIVED_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in fields(ais.Derived) if f.name != "growth_adjustment")
#: Score columns: the five components, execution/creation/combined score and the multiplier.
SCORE_COLUMNS: tuple[str, ...] = (
    "token_complexity_score", "execution_complexity_score", "plugin_complexity_score",
    "workflow_complexity_score", "memory_complexity_score", "execution_score",
    "creation_score", "combined_score", "intensity_multiplier",
)


def batch_aggregates(records: Iterable[ExecutionRecord]) -> ais.Aggregates:
    """``Aggregates()`` merged with every record's delta in order, in one pass.

    Equal to ``functools.reduce(Aggregates.add, map(IntensityDelta.from_record, records),
    Aggregates())`` for records that all have an ``agent_id`` (the same additions in the same
    order, so float sums are bit-identical; a property test holds the two together) without a
    delta or an aggregate per record: the delta's values are read from the record here.
    """
    total = successful = n_retry = retries = retried = recovered = 0
    n_tok = tokens = n_io = tok_in = tok_out = 0
    peak_tok: int | None = None
    duration = 0.0
    peak_duration: float | None = None
    n_iter = iterations = n_tool = tool_calls = n_orch = 0
    orchestration = 0.0
    plugins: set[str] = set()
    steps: int | None = None
    branches: int | None = None
    loops: int | None = None
    parallel: int | None = None
    n_mem = mem_tokens = n_mem_entries = mem_entries = n_mem_types = 0
    mem_types: set[str] = set()
    latest: tuple[datetime, str, int] | None = None  # (completed_at, execution_id, output)
    ms, utc = sanitized_ms, as_utc  # IntensityDelta.from_record's sanitizers
    for record in records:
        r = record.result
        success = r.success
        total += 1
        successful += int(success)
        if (n := r.retries) is not None:
            n_retry += 1
            retries += n
            if n > 0:
                retried += 1
                recovered += int(success)
        tok = r.tokens
        inp = out = run_tokens = None
        if tok is not None:
            inp, out, run_tokens = tok.input_tokens, tok.output_tokens, tok.total_tokens
            if run_tokens is None and inp is not None and out is not None:
                run_tokens = inp + out
        if run_tokens is not None:
            n_tok += 1
            tokens += run_tokens
            peak_tok = _max(peak_tok, run_tokens)
        run_ms = ms(record.duration_ms) or 0.0
        duration = duration + run_ms
        peak_duration = _max(peak_duration, run_ms)
        if (n := r.iterations) is not None:
            n_iter += 1
            iterations += n
        if (calls := r.tool_calls) is not None:
            n_tool += 1
            tool_calls += len(calls)
            for call in calls:
                if call.plugin:
                    plugins.add(call.plugin)
        orch = ms(r.orchestration_ms)
        if orch is not None:
            n_orch += 1
        orchestration = orchestration + (orch or 0.0)
        if (wf := r.workflow) is not None:
            steps = _max(steps, wf.steps)
            branches = _max(branches, wf.branches)
            loops = _max(loops, wf.loops)
            parallel = _max(parallel, wf.parallel)
        if (mem := r.memory) is not None:
            if mem.tokens is not None:
                n_mem += 1
                mem_tokens += mem.tokens
            if mem.entry_count is not None:
                n_mem_entries += 1
                mem_entries += mem.entry_count
            if mem.types is not None:
                n_mem_types += 1
                mem_types.update(mem.types)
        if inp is not None and out is not None:  # an io run: candidate for the latest one
            tok_in += inp
            tok_out += out
            n_io += 1
            candidate = (utc(record.completed_at), str(record.execution_id), out)
            # Aggregates.merge keeps the accumulated winner only when strictly later.
            if latest is None or not latest[:2] > candidate[:2]:
                latest = candidate
    return ais.Aggregates(
        total_executions=total, successful_executions=successful,
        failed_executions=total - successful, n_retry_runs=n_retry, total_retries=retries,
        retried_executions=retried, recovered_executions=recovered, n_token_runs=n_tok,
        total_tokens_used=tokens, peak_tokens_single_run=peak_tok, n_io_runs=n_io,
        total_input_tokens=tok_in, total_output_tokens=tok_out, total_duration_ms=duration,
        peak_execution_duration_ms=peak_duration, n_iteration_runs=n_iter,
        total_iterations=iterations, n_tool_runs=n_tool, total_tool_calls=tool_calls,
        plugins=frozenset(plugins), n_orchestration_runs=n_orch,
        total_orchestration_ms=orchestration, max_workflow_steps=steps, max_branches=branches,
        max_loops=loops, max_parallel=parallel, n_memory_runs=n_mem,
        total_memory_tokens=mem_tokens, n_memory_entry_runs=n_mem_entries,
        total_memory_entries=mem_entries, n_memory_type_runs=n_mem_types,
        memory_types=frozenset(mem_types),
        latest_completed_at=None if latest is None else latest[0],
        latest_execution_id=None if latest is None else latest[1],
        latest_output_tokens=None if latest is None else latest[2],
    )


def _max(a: Any, b: Any) -> Any:
    """``max`` where ``None`` (never measured) loses; ``a`` on ties, as ``ais`` merges."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass(frozen=True, slots=True)
class IntensityBatch:
    """A batch's contribution per agent: aggregates, and the owner a new row starts with."""

    aggregates: Mapping[str, ais.Aggregates]
    users: Mapping[str, str | None]

    @classmethod
    def of(cls, records: Iterable[ExecutionRecord]) -> IntensityBatch:
        """From `records` (deduplicated, in the order their float sums are to be added).

        Refused executions (a budget stopped them before they ran) are not runs: they add
        nothing. The row's ``user_id`` is the agent's owner (``owner_id``), never the caller.
        """
        per_agent: dict[str, list[ExecutionRecord]] = {}
        users: dict[str, str | None] = {}
        for record in records:
            agent_id = record.agent_id
            if agent_id is None or record.result.refused:  # no agent, or no run, to score
                continue
            per_agent.setdefault(agent_id, []).append(record)
            # a new row takes the batch's smallest owner_id (as the Postgres function does)
            known = users.get(agent_id)
            owner = record.owner_id
            if owner is not None and (known is None or owner < known):
                users[agent_id] = owner
        return cls({a: batch_aggregates(rs) for a, rs in per_agent.items()}, users)


def stored_values(agg: ais.Aggregates, creation: float | None,
                  config: ais.AISConfig | None = None) -> dict[str, Any]:
    """The derived and score column values of one row, as every store writes them."""
    derived = ais.derive(agg, config)
    scores = ais.score(agg, creation, config, derived)
    out: dict[str, Any] = {c: getattr(derived, c) for c in DERIVED_COLUMNS}
    out.update({
        "token_complexity_score": scores.token,
        "execution_complexity_score": scores.execution,
        "plugin_complexity_score": scores.plugin,
        "workflow_complexity_score": scores.workflow,
        "memory_complexity_score": scores.memory,
        "execution_score": scores.execution_score,
        "creation_score": scores.creation_score,
        "combined_score": scores.combined_score,
        "intensity_multiplier": scores.multiplier,
    })
    return out


def aggregates_from_row(row: Mapping[str, Any]) -> ais.Aggregates:
    """An ``agent_intensity_metrics`` row (any store) as :class:`ais.Aggregates`."""
    return ais.Aggregates.from_row(row)


def agent_scores(row: Mapping[str, Any], config: ais.AISConfig | None = None) -> dict[str, Any]:
    """One agent's line for ``instrument stats``, from its ``agent_intensity_metrics`` row.

    Keys: agent_id, user_id, runs, successful, failed, success_rate (0-100), total_tokens,
    avg_tokens_per_run, mean_duration_ms, token/execution/plugin/workflow/memory (component
    scores, ``None`` = no measured data), execution_score, creation_score, combined_score,
    multiplier, alert_level. With ``config=None`` the stored score columns are shown (what
    billing reads); with a config, scores are recomputed from the aggregates (what-if, or after
    :func:`instrument.ais.dynamic_ranges`).
    """
    agg = aggregates_from_row(row)
    creation = row.get("creation_score")
    values = stored_values(agg, None if creation is None else float(creation), config)
    if config is None and row.get("combined_score") is not None:
        for col in SCORE_COLUMNS:
            if col in row:
                values[col] = None if row[col] is None else float(row[col])
    return {
        "agent_id": row.get("agent_id"),
        "user_id": row.get("user_id"),
        "runs": agg.total_executions,
        "successful": agg.successful_executions,
        "failed": agg.failed_executions,
        "success_rate": values["success_rate"],
        "total_tokens": agg.total_tokens_used if agg.n_token_runs else None,
        "avg_tokens_per_run": values["avg_tokens_per_run"],
        "mean_duration_ms": values["avg_execution_duration_ms"],
        "token": values["token_complexity_score"],
        "execution": values["execution_complexity_score"],
        "plugin": values["plugin_complexity_score"],
        "workflow": values["workflow_complexity_score"],
        "memory": values["memory_complexity_score"],
        "execution_score": values["execution_score"],
        "creation_score": values["creation_score"],
        "combined_score": values["combined_score"],
        "multiplier": values["intensity_multiplier"],
        "alert_level": values["output_token_alert_level"],
    }
