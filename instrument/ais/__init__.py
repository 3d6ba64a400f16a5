"""AIS, the agent intensity score: exact aggregates and pure scoring functions.

Per agent we keep **sums, counts, maxima, distinct sets and one arg-max** (the latest run with
measured input/output tokens). Every update is a commutative, associative merge
(:meth:`Aggregates.merge`), which is what makes the score exact under any order, batching or
concurrency, and what lets SQL apply it atomically as ``x = x + delta`` / ``max``. Means and
scores are derived from the aggregates on read (:func:`derive`, :func:`score`).

``None`` means "not measured": such a dimension adds nothing to its ``n_*`` count, so it never
moves a mean, and a component (or sub-metric) with no measured data is left out of its weighted
mean instead of being scored 0 or 5. See docs/ais.md for the formulas and the worked example.

The SQL mirrors of this module are ``stores/*/sql/0002_intensity.sql``; keep them in step.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal

from instrument.errors import ConfigurationError
from instrument.record import ExecutionRecord

__all__ = [
    "COMPONENTS",
    "AISConfig",
    "Aggregates",
    "Derived",
    "GrowthTier",
    "IntensityDelta",
    "Scores",
    "aggregate",
    "creation_score",
    "derive",
    "dynamic_ranges",
    "multiplier",
    "norm",
    "score",
]

#: The five execution components, in the order of their weights.
COMPONENTS: tuple[str, ...] = ("token", "execution", "plugin", "workflow", "memory")

_DEFAULT_RANGES: dict[str, tuple[float, float]] = {
    "io_ratio": (0.5, 3.0),
    "iterations": (1.0, 10.0),
    "duration_ms": (0.0, 30000.0),
    "failure_rate": (0.0, 50.0),
    "retries_per_run": (0.0, 3.0),
    "unique_plugins": (0.0, 10.0),
    "tool_calls_per_run": (0.0, 8.0),
    "orchestration_ms": (0.0, 5000.0),
    "workflow_steps": (0.0, 20.0),
    "branches": (0.0, 10.0),
    "loops": (0.0, 50.0),
    "parallel": (0.0, 5.0),
    "memory_ratio": (0.0, 0.9),
    "memory_types": (0.0, 3.0),
    "memory_entries": (0.0, 20.0),
    "creation_workflow_steps": (0.0, 10.0),
    "creation_plugins": (0.0, 5.0),
    "creation_io_fields": (0.0, 8.0),
}
_DEFAULT_WEIGHTS: dict[str, float] = {
    "token": 0.30, "execution": 0.25, "plugin": 0.20, "workflow": 0.15, "memory": 0.10,
}
#: Sub-metric weights per component; each sub-metric is named after its range.
_DEFAULT_SUB_WEIGHTS: dict[str, dict[str, float]] = {
    "execution": {"iterations": 0.35, "duration_ms": 0.30, "failure_rate": 0.20,
                  "retries_per_run": 0.15},
    "plugin": {"unique_plugins": 0.40, "tool_calls_per_run": 0.35, "orchestration_ms": 0.25},
    "workflow": {"workflow_steps": 0.40, "branches": 0.25, "loops": 0.20, "parallel": 0.15},
    "memory": {"memory_ratio": 0.5, "memory_types": 0.3, "memory_entries": 0.2},
    "creation": {"creation_workflow_steps": 0.5, "creation_plugins": 0.3,
                 "creation_io_fields": 0.2},
}
#: Ranges that dynamic mode may widen/narrow (creation ranges have no per-agent aggregate).
_DYNAMIC_KEYS: tuple[str, ...] = tuple(k for k in _DEFAULT_RANGES if not k.startswith("creation"))


@dataclass(frozen=True, slots=True)
class GrowthTier:
    """Output-token growth at or above `threshold` % raises the alert to `name` (+adjustment)."""

    name: str
    threshold: float
    adjustment: float


def _default_tiers() -> tuple[GrowthTier, ...]:
    return (GrowthTier("monitor", 25.0, 0.2), GrowthTier("rescore", 50.0, 0.75),
            GrowthTier("upgrade", 100.0, 1.25))


@dataclass(frozen=True, slots=True)
class AISConfig:
    """Every number the score uses. Validated on construction (:class:`ConfigurationError`).

    Load it from code (``AISConfig(...)``, :meth:`from_mapping`), the environment
    (:meth:`from_env`, ``INSTRUMENT_AIS_CONFIG``) or the ``ais_config`` table
    (:meth:`from_rows`). :meth:`to_mapping` is the flat key/JSON-value form the table stores.
    """

    ranges: Mapping[str, tuple[float, float]] = field(
        default_factory=lambda: dict(_DEFAULT_RANGES))
    weights: Mapping[str, float] = field(default_factory=lambda: dict(_DEFAULT_WEIGHTS))
    sub_weights: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in _DEFAULT_SUB_WEIGHTS.items()})
    blend_creation: float = 0.3
    blend_execution: float = 0.7
    token_efficiency_factor: float = 0.7
    growth_tiers: tuple[GrowthTier, ...] = field(default_factory=_default_tiers)
    quality_success_rate_below: float = 80.0
    quality_success_bonus: float = 0.3
    quality_retried_share_above: float = 30.0
    quality_retried_bonus: float = 0.2
    min_executions_for_score: int = 5
    creation_default_score: float = 5.0
    creation_schedule_bonus: float = 1.0
    creation_event_bonus: float = 2.0
    dynamic_min_fleet_executions: int = 10
    dynamic_percentile: float = 0.95

    def __post_init__(self) -> None:
        _validate(self)

    # -- flat key/value form (the ais_config table, env JSON) ---------------------------------
    def to_mapping(self) -> dict[str, Any]:
        """Flat ``{key: JSON value}``: the rows of the ``ais_config`` table."""
        out: dict[str, Any] = {f"range.{k}": [lo, hi] for k, (lo, hi) in self.ranges.items()}
        out.update({f"weight.{k}": w for k, w in self.weights.items()})
        for comp, subs in self.sub_weights.items():
            out.update({f"weight.{comp}.{k}": w for k, w in subs.items()})
        out.update({
            "blend.creation": self.blend_creation,
            "blend.execution": self.blend_execution,
            "token.efficiency_factor": self.token_efficiency_factor,
            "growth.tiers": [{"name": t.name, "threshold": t.threshold,
                              "adjustment": t.adjustment} for t in self.growth_tiers],
            "quality.success_rate_below": self.quality_success_rate_below,
            "quality.success_bonus": self.quality_success_bonus,
            "quality.retried_share_above": self.quality_retried_share_above,
            "quality.retried_bonus": self.quality_retried_bonus,
            "min_executions_for_score": self.min_executions_for_score,
            "creation.default_score": self.creation_default_score,
            "creation.schedule_bonus": self.creation_schedule_bonus,
            "creation.event_bonus": self.creation_event_bonus,
            "dynamic.min_fleet_executions": self.dynamic_min_fleet_executions,
            "dynamic.percentile": self.dynamic_percentile,
        })
        return out

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], base: AISConfig | None = None) -> AISConfig:
        """`values` (flat keys as in :meth:`to_mapping`) over `base` (default: the defaults).

        Unknown keys and malformed values raise :class:`ConfigurationError` naming them. A
        weight group must be given so that it still sums to 1.
        """
        flat = (base or cls()).to_mapping()
        for key, value in values.items():
            if key not in flat:
                raise ConfigurationError(
                    f"unknown AIS config key {key!r}; known keys: {', '.join(sorted(flat))}")
            flat[key] = json.loads(value) if isinstance(value, str) and key.startswith(
                ("range.", "growth.")) else value
        return cls._from_flat(flat)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, Any]]) -> AISConfig:
        """From ``(key, value)`` rows of the ``ais_config`` table (values JSON or JSON text)."""
        values: dict[str, Any] = {}
        for key, raw in rows:
            values[key] = json.loads(raw) if isinstance(raw, str | bytes) else raw
        return cls.from_mapping(values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AISConfig:
        """Defaults overridden by ``INSTRUMENT_AIS_CONFIG`` (a JSON object, or a JSON file path)."""
        from instrument.config import env

        raw = env("INSTRUMENT_AIS_CONFIG", environ)
        if raw is None:
            return cls()
        text = raw
        if not raw.lstrip().startswith("{"):
            try:
                with open(raw, encoding="utf-8") as fh:
                    text = fh.read()
            except OSError as exc:
                raise ConfigurationError(
                    f"INSTRUMENT_AIS_CONFIG={raw!r} is neither a JSON object nor a readable "
                    f"file ({exc})") from None
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigurationError(f"INSTRUMENT_AIS_CONFIG is not valid JSON: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigurationError("INSTRUMENT_AIS_CONFIG must be a JSON object of overrides")
        return cls.from_mapping(values)

    @classmethod
    def _from_flat(cls, flat: Mapping[str, Any]) -> AISConfig:
        try:
            ranges = {k[6:]: _pair(k, v) for k, v in flat.items() if k.startswith("range.")}
            weights = {c: _num(f"weight.{c}", flat[f"weight.{c}"]) for c in COMPONENTS}
            subs = {comp: {k: _num(f"weight.{comp}.{k}", flat[f"weight.{comp}.{k}"])
                           for k in names} for comp, names in _DEFAULT_SUB_WEIGHTS.items()}
            tiers = tuple(GrowthTier(str(t["name"]), _num("growth.tiers", t["threshold"]),
                                     _num("growth.tiers", t["adjustment"]))
                          for t in flat["growth.tiers"])
        except (TypeError, KeyError) as exc:
            raise ConfigurationError(f"malformed AIS config value: {exc!r}") from None
        mins = flat["min_executions_for_score"]
        fleet = flat["dynamic.min_fleet_executions"]
        for name, v in (("min_executions_for_score", mins),
                        ("dynamic.min_fleet_executions", fleet)):
            if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
                raise ConfigurationError(f"AIS config {name}={v!r} must be an integer")
        return cls(
            ranges=ranges, weights=weights, sub_weights=subs,
            blend_creation=_num("blend.creation", flat["blend.creation"]),
            blend_execution=_num("blend.execution", flat["blend.execution"]),
            token_efficiency_factor=_num("token.efficiency_factor",
                                         flat["token.efficiency_factor"]),
            growth_tiers=tiers,
            quality_success_rate_below=_num("quality.success_rate_below",
                                            flat["quality.success_rate_below"]),
            quality_success_bonus=_num("quality.success_bonus", flat["quality.success_bonus"]),
            quality_retried_share_above=_num("quality.retried_share_above",
                                             flat["quality.retried_share_above"]),
            quality_retried_bonus=_num("quality.retried_bonus", flat["quality.retried_bonus"]),
            min_executions_for_score=int(mins),
            creation_default_score=_num("creation.default_score", flat["creation.default_score"]),
            creation_schedule_bonus=_num("creation.schedule_bonus",
                                         flat["creation.schedule_bonus"]),
            creation_event_bonus=_num("creation.event_bonus", flat["creation.event_bonus"]),
            dynamic_min_fleet_executions=int(fleet),
            dynamic_percentile=_num("dynamic.percentile", flat["dynamic.percentile"]),
        )

    def with_ranges(self, ranges: Mapping[str, tuple[float, float]]) -> AISConfig:
        """A copy with some ranges replaced (e.g. the result of :func:`dynamic_ranges`)."""
        return replace(self, ranges={**self.ranges, **ranges})


def _num(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"AIS config {name}={value!r} must be a finite number")
    return float(value)


def _pair(name: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ConfigurationError(f"AIS config {name}={value!r} must be a [lo, hi] pair")
    return _num(name, value[0]), _num(name, value[1])


def _check_weights(group: str, weights: Mapping[str, float]) -> None:
    for k, w in weights.items():
        _num(f"{group}.{k}", w)
        if not 0.0 <= w <= 1.0:
            raise ConfigurationError(f"AIS weight {group}.{k}={w!r} must be between 0 and 1")
    total = math.fsum(weights.values())
    if abs(total - 1.0) > 1e-9:
        listed = ", ".join(f"{k}={w!r}" for k, w in weights.items())
        raise ConfigurationError(
            f"AIS weights {group}.* sum to {total!r} ({listed}); they must sum to 1")


def _validate(cfg: AISConfig) -> None:
    if set(cfg.ranges) != set(_DEFAULT_RANGES):
        missing = sorted(set(_DEFAULT_RANGES) - set(cfg.ranges))
        extra = sorted(set(cfg.ranges) - set(_DEFAULT_RANGES))
        raise ConfigurationError(f"AIS ranges: missing {missing}, unknown {extra}")
    for key, (lo, hi) in cfg.ranges.items():
        _num(f"range.{key}", lo)
        _num(f"range.{key}", hi)
        if not lo < hi:
            raise ConfigurationError(
                f"AIS range {key}=[{lo!r}, {hi!r}] is invalid: lo must be below hi")
    if set(cfg.weights) != set(COMPONENTS):
        raise ConfigurationError(f"AIS weights must name exactly {list(COMPONENTS)}, "
                                 f"got {sorted(cfg.weights)}")
    _check_weights("weight", cfg.weights)
    for comp, names in _DEFAULT_SUB_WEIGHTS.items():
        subs = cfg.sub_weights.get(comp)
        if subs is None or set(subs) != set(names):
            raise ConfigurationError(f"AIS sub-weights weight.{comp} must name exactly "
                                     f"{list(names)}, got {subs!r}")
        _check_weights(f"weight.{comp}", subs)
    _check_weights("blend", {"creation": cfg.blend_creation, "execution": cfg.blend_execution})
    for name in ("token_efficiency_factor", "quality_success_bonus", "quality_retried_bonus",
                 "creation_schedule_bonus", "creation_event_bonus"):
        v = _num(name, getattr(cfg, name))
        if v < 0:
            raise ConfigurationError(f"AIS config {name}={v!r} must not be negative")
    for name in ("quality_success_rate_below", "quality_retried_share_above"):
        v = _num(name, getattr(cfg, name))
        if not 0 <= v <= 100:
            raise ConfigurationError(f"AIS config {name}={v!r} must be a percentage (0-100)")
    previous = -math.inf
    for tier in cfg.growth_tiers:
        if not tier.name or tier.name == "none":
            raise ConfigurationError(f"AIS growth tier name {tier.name!r} is reserved or empty")
        if _num("growth threshold", tier.threshold) <= previous:
            raise ConfigurationError(f"AIS growth tier {tier.name} threshold={tier.threshold!r} "
                                     "must be above the previous tier's")
        if _num("growth adjustment", tier.adjustment) < 0:
            raise ConfigurationError(f"AIS growth tier {tier.name} adjustment="
                                     f"{tier.adjustment!r} must not be negative")
        previous = tier.threshold
    if cfg.min_executions_for_score < 0:
        raise ConfigurationError(
            f"AIS min_executions_for_score={cfg.min_executions_for_score!r} must be >= 0")
    if cfg.dynamic_min_fleet_executions < 1:
        raise ConfigurationError(f"AIS dynamic.min_fleet_executions="
                                 f"{cfg.dynamic_min_fleet_executions!r} must be >= 1")
    if not 0 < _num("dynamic_percentile", cfg.dynamic_percentile) <= 1:
        raise ConfigurationError(
            f"AIS dynamic.percentile={cfg.dynamic_percentile!r} must be in (0, 1]")
    if not 0 <= _num("creation_default_score", cfg.creation_default_score) <= 10:
        raise ConfigurationError(f"AIS creation.default_score={cfg.creation_default_score!r} "
                                 "must be between 0 and 10")


# -- aggregates ---------------------------------------------------------------------------------

#: Millisecond values are sanitized identically in Python and SQL: below 1e-6 (including
#: negatives) counts as 0 and above 1e12 as 1e12, so no arithmetic can underflow (PostgreSQL
#: raises on subnormal results) or overflow.
_MS_MIN = 1e-6
_MS_MAX = 1e12


def _ms(value: float | None) -> float | None:
    """A sanitized millisecond value; NaN/inf (JSON null in the record) is unmeasured."""
    if value is None or not math.isfinite(value):
        return None
    return 0.0 if value < _MS_MIN else min(float(value), _MS_MAX)


def _utc(dt: datetime) -> datetime:
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
            completed_at=_utc(record.completed_at),
            success=r.success,
            duration_ms=_ms(record.duration_ms) or 0.0,
            retries=r.retries,
            total_tokens=total,
            input_tokens=inp if paired else None,
            output_tokens=out if paired else None,
            iterations=r.iterations,
            tool_calls=len(r.tool_calls) if r.tool_calls is not None else None,
            plugins=r.plugins if r.tool_calls is not None else None,
            orchestration_ms=_ms(r.orchestration_ms),
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
                values[f.name] = None if raw is None else _utc(
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


# -- derived means and scores -------------------------------------------------------------------

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

def _percentile_cont(values: Sequence[float], p: float) -> float:
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
            hi = _percentile_cont(values, cfg.dynamic_percentile)
            if hi > lo:
                out[k] = (lo, hi)
    return out


_DEFAULTS = AISConfig()
