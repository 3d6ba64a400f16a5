"""AIS scores: means derived exactly from the aggregates, component and combined scores, the
pricing multiplier, the creation score and dynamic ranges. Pure functions of their arguments.

A component (or sub-metric) with no measured data is left out of its weighted mean instead of
being scored 0 or 5. See docs/ais.md for the formulas and the worked example; the SQL mirrors
are ``stores/*/sql/0002_intensity.sql``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from instrument.ais.aggregates import Aggregates
from instrument.ais.config import COMPONENTS, AISConfig
from instrument.errors import ConfigurationError

__all__ = [
    "Derived",
    "Scores",
    "clamp10",
    "creation_score",
    "derive",
    "dynamic_ranges",
    "multiplier",
    "norm",
    "percentile_cont",
    "score",
]

_DEFAULTS = AISConfig()
#: Ranges that dynamic mode may widen/narrow (creation ranges have no per-agent aggregate).
_DYNAMIC_KEYS: tuple[str, ...] = tuple(
    k for k in _DEFAULTS.ranges if not k.startswith("creation"))


def _div(a: float, n: float) -> float | None:
    return a / n if n > 0 else None


@dataclass(frozen=True, slots=True)
class Derived:
    """Means and ratios recomputed exactly from the aggregates (``None`` = no data)."""

    success_rate: float | None
    mean_retries_per_run: float | None
    retried_share: float | None
    avg_tokens_per_run: float | None
    avg_input_tokens_per_run: float | None
    avg_output_tokens_per_run: float | None
    output_input_ratio: float | None
    avg_execution_duration_ms: float | None
    avg_iterations_per_run: float | None
    unique_plugins_used: int | None
    avg_tool_calls_per_run: float | None
    avg_orchestration_ms: float | None
    avg_memory_tokens_per_run: float | None
    memory_token_ratio: float | None
    memory_type_count: int | None
    avg_memory_entries: float | None
    output_token_baseline: float | None
    output_token_growth_rate: float | None
    output_token_alert_level: str
    growth_adjustment: float


def derive(agg: Aggregates, config: AISConfig | None = None) -> Derived:
    cfg = config or _DEFAULTS
    total = agg.total_executions
    success_rate = _div(agg.successful_executions * 100.0, total)
    avg_in = _div(agg.total_input_tokens, agg.n_io_runs)
    avg_mem = _div(agg.total_memory_tokens, agg.n_memory_runs)
    ratio = (agg.total_output_tokens / agg.total_input_tokens
             if agg.n_io_runs > 0 and agg.total_input_tokens > 0 else None)
    mem_ratio = (min(1.0, avg_mem / avg_in)
                 if avg_mem is not None and avg_in is not None and avg_in > 0 else None)
    baseline: float | None = None
    growth: float | None = None
    if agg.n_io_runs >= 2 and agg.latest_output_tokens is not None:
        baseline = (agg.total_output_tokens - agg.latest_output_tokens) / (agg.n_io_runs - 1)
        if baseline > 0:
            growth = (agg.latest_output_tokens - baseline) / baseline * 100.0
    level, adjustment = "none", 0.0
    if growth is not None:
        for tier in cfg.growth_tiers:
            if growth >= tier.threshold:
                level, adjustment = tier.name, tier.adjustment
    return Derived(
        success_rate=success_rate,
        mean_retries_per_run=_div(agg.total_retries, agg.n_retry_runs),
        retried_share=_div(agg.retried_executions * 100.0, agg.n_retry_runs),
        avg_tokens_per_run=_div(agg.total_tokens_used, agg.n_token_runs),
        avg_input_tokens_per_run=avg_in,
        avg_output_tokens_per_run=_div(agg.total_output_tokens, agg.n_io_runs),
        output_input_ratio=ratio,
        avg_execution_duration_ms=_div(agg.total_duration_ms, total),
        avg_iterations_per_run=_div(agg.total_iterations, agg.n_iteration_runs),
        unique_plugins_used=len(agg.plugins) if agg.n_tool_runs > 0 else None,
        avg_tool_calls_per_run=_div(agg.total_tool_calls, agg.n_tool_runs),
        avg_orchestration_ms=_div(agg.total_orchestration_ms, agg.n_orchestration_runs),
        avg_memory_tokens_per_run=avg_mem,
        memory_token_ratio=mem_ratio,
        memory_type_count=len(agg.memory_types) if agg.n_memory_type_runs > 0 else None,
        avg_memory_entries=_div(agg.total_memory_entries, agg.n_memory_entry_runs),
        output_token_baseline=baseline,
        output_token_growth_rate=growth,
        output_token_alert_level=level,
        growth_adjustment=adjustment,
    )


def clamp10(v: float) -> float:
    return min(max(v, 0.0), 10.0)


def norm(value: float, bounds: tuple[float, float]) -> float:
    """``(clamp(v, lo, hi) - lo) / (hi - lo) * 10``; config validation guarantees lo < hi."""
    lo, hi = bounds
    return (min(max(value, lo), hi) - lo) / (hi - lo) * 10.0


def _weighted(parts: Sequence[tuple[float, float | None]]) -> float | None:
    """Weighted mean over the measured parts (weights renormalized); None when none measured."""
    num = 0.0
    den = 0.0
    for w, v in parts:
        if v is not None:
            num += w * v
            den += w
    return clamp10(num / den) if den > 0 else None


@dataclass(frozen=True, slots=True)
class Scores:
    """Component scores (``None`` = no measured data), execution/combined score, multiplier."""

    token: float | None
    execution: float | None
    plugin: float | None
    workflow: float | None
    memory: float | None
    execution_score: float | None
    creation_score: float
    combined_score: float
    multiplier: float

    def components(self) -> dict[str, float | None]:
        return {c: getattr(self, c) for c in COMPONENTS}


def score(agg: Aggregates, creation: float | None = None,
          config: AISConfig | None = None, derived: Derived | None = None) -> Scores:
    """All scores of one agent from its aggregates and creation score (default from config)."""
    cfg = config or _DEFAULTS
    d = derived or derive(agg, cfg)
    rng = cfg.ranges

    def part(comp: str, key: str, value: float | None) -> tuple[float, float | None]:
        return cfg.sub_weights[comp][key], None if value is None else norm(value, rng[key])

    token: float | None = None
    if d.output_input_ratio is not None:
        efficiency = 10.0 - norm(d.output_input_ratio, rng["io_ratio"])
        quality = 1.0
        if d.success_rate is not None and d.success_rate < cfg.quality_success_rate_below:
            quality += cfg.quality_success_bonus
        if d.retried_share is not None and d.retried_share > cfg.quality_retried_share_above:
            quality += cfg.quality_retried_bonus
        token = clamp10(cfg.token_efficiency_factor * efficiency + d.growth_adjustment * quality)
    failure = None if d.success_rate is None else 100.0 - d.success_rate
    execution = _weighted([
        part("execution", "iterations", d.avg_iterations_per_run),
        part("execution", "duration_ms", d.avg_execution_duration_ms),
        part("execution", "failure_rate", failure),
        part("execution", "retries_per_run", d.mean_retries_per_run),
    ])
    plugin = _weighted([
        part("plugin", "unique_plugins", _f(d.unique_plugins_used)),
        part("plugin", "tool_calls_per_run", d.avg_tool_calls_per_run),
        part("plugin", "orchestration_ms", d.avg_orchestration_ms),
    ])
    workflow = _weighted([
        part("workflow", "workflow_steps", _f(agg.max_workflow_steps)),
        part("workflow", "branches", _f(agg.max_branches)),
        part("workflow", "loops", _f(agg.max_loops)),
        part("workflow", "parallel", _f(agg.max_parallel)),
    ])
    memory = _weighted([
        part("memory", "memory_ratio", d.memory_token_ratio),
        part("memory", "memory_types", _f(d.memory_type_count)),
        part("memory", "memory_entries", d.avg_memory_entries),
    ])
    comps = {"token": token, "execution": execution, "plugin": plugin, "workflow": workflow,
             "memory": memory}
    execution_score = _weighted([(cfg.weights[c], comps[c]) for c in COMPONENTS])
    creation_value = clamp10(cfg.creation_default_score if creation is None else creation)
    if execution_score is None or agg.total_executions < cfg.min_executions_for_score:
        combined = creation_value
    else:
        combined = clamp10(cfg.blend_creation * creation_value
                           + cfg.blend_execution * execution_score)
    return Scores(token=token, execution=execution, plugin=plugin, workflow=workflow,
                  memory=memory, execution_score=execution_score, creation_score=creation_value,
                  combined_score=combined, multiplier=multiplier(combined))


def _f(v: int | None) -> float | None:
    return None if v is None else float(v)


def multiplier(score_value: float) -> float:
    """Pricing multiplier ``1 + score/10`` with the score clamped to 0-10 first (1.0x-2.0x)."""
    return 1.0 + clamp10(score_value) / 10.0


def creation_score(*, workflow_steps: int, connected_plugins: int, io_fields: int,
                   trigger: Literal["none", "schedule", "event"] = "none",
                   config: AISConfig | None = None) -> float:
    """Creation score of an agent definition: weighted structure plus a trigger bonus, max 10."""
    cfg = config or _DEFAULTS
    w = cfg.sub_weights["creation"]
    bonus = {"none": 0.0, "schedule": cfg.creation_schedule_bonus,
             "event": cfg.creation_event_bonus}.get(trigger)
    if bonus is None:
        raise ConfigurationError(f"trigger={trigger!r} must be 'none', 'schedule' or 'event'")
    value = (w["creation_workflow_steps"] * norm(workflow_steps, cfg.ranges[
        "creation_workflow_steps"])
             + w["creation_plugins"] * norm(connected_plugins, cfg.ranges["creation_plugins"])
             + w["creation_io_fields"] * norm(io_fields, cfg.ranges["creation_io_fields"])
             + bonus)
    return clamp10(value)


# -- dynamic ranges -----------------------------------------------------------------------------

def percentile_cont(values: Sequence[float], p: float) -> float:
    """PostgreSQL's ``percentile_cont``: linear interpolation between closest ranks."""
    s = sorted(values)
    pos = p * (len(s) - 1)
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _range_values(agg: Aggregates, cfg: AISConfig) -> dict[str, float | None]:
    d = derive(agg, cfg)
    return {
        "io_ratio": d.output_input_ratio,
        "iterations": d.avg_iterations_per_run,
        "duration_ms": d.avg_execution_duration_ms,
        "failure_rate": None if d.success_rate is None else 100.0 - d.success_rate,
        "retries_per_run": d.mean_retries_per_run,
        "unique_plugins": _f(d.unique_plugins_used),
        "tool_calls_per_run": d.avg_tool_calls_per_run,
        "orchestration_ms": d.avg_orchestration_ms,
        "workflow_steps": _f(agg.max_workflow_steps),
        "branches": _f(agg.max_branches),
        "loops": _f(agg.max_loops),
        "parallel": _f(agg.max_parallel),
        "memory_ratio": d.memory_token_ratio,
        "memory_types": _f(d.memory_type_count),
        "memory_entries": d.avg_memory_entries,
    }


def dynamic_ranges(rows: Iterable[Aggregates | Mapping[str, Any]],
                   config: AISConfig | None = None) -> dict[str, tuple[float, float]]:
    """Dynamic-mode ranges: upper bound = the fleet's percentile of each aggregate.

    `rows` are :class:`Aggregates` or ``agent_intensity_metrics`` rows. Over agents with
    executions; only once the fleet has at least
    ``dynamic_min_fleet_executions`` runs (else ``{}``). The lower bound stays the configured
    one; a range whose percentile is not above it (or has no data) is left out, so the result
    is always valid for :meth:`AISConfig.with_ranges`. Computed on demand, never on writes.
    """
    cfg = config or _DEFAULTS
    aggs = [a for a in (r if isinstance(r, Aggregates) else Aggregates.from_row(r)
                        for r in rows) if a.total_executions > 0]
    if sum(a.total_executions for a in aggs) < cfg.dynamic_min_fleet_executions:
        return {}
    per_key: dict[str, list[float]] = {k: [] for k in _DYNAMIC_KEYS}
    for a in aggs:
        for k, v in _range_values(a, cfg).items():
            if v is not None:
                per_key[k].append(v)
    out: dict[str, tuple[float, float]] = {}
    for k, values in per_key.items():
        if values:
            lo = cfg.ranges[k][0]
            hi = percentile_cont(values, cfg.dynamic_percentile)
            if hi > lo:
                out[k] = (lo, hi)
    return out
