"""The AIS configuration: every number the score uses, validated on construction.

:class:`AISConfig` loads from code, a flat key/value mapping (the ``ais_config`` table's rows)
or an ``INSTRUMENT_AIS_CONFIG`` value handed in by the caller (this package never reads the
environment). See docs/ais.md for what each number means.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from instrument.errors import ConfigurationError

__all__ = ["COMPONENTS", "AISConfig", "GrowthTier"]

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

    Load it from code (``AISConfig(...)``, :meth:`from_mapping`), an ``INSTRUMENT_AIS_CONFIG``
    value (:meth:`from_setting`) or the ``ais_config`` table (:meth:`from_rows`).
    :meth:`to_mapping` is the flat key/JSON-value form the table stores.
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
    def from_setting(cls, raw: str | None) -> AISConfig:
        """Defaults overridden by an ``INSTRUMENT_AIS_CONFIG`` value (a JSON object of overrides,
        or the path of a JSON file holding one); ``None`` (unset) gives the defaults.

        `raw` is the variable's value as :mod:`instrument.config` read it: this package never
        reads the environment. Errors name ``INSTRUMENT_AIS_CONFIG``.
        """
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

