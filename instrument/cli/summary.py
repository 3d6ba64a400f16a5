"""Per-agent summaries for `stats` and `demo`: agent_stats joined with the AIS scores.

The AIS formulas live in :mod:`instrument.ais`; this module only joins rows and picks the
numbers to show. A value the store did not measure stays ``None`` (shown as "–").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from instrument import ais
from instrument.ais import COMPONENTS
from instrument.cli.common import pick
from instrument.stores.reference import intensity

__all__ = ["COMPONENTS", "agent_summaries", "ais_scores", "dynamic_ranges", "young_agents_note"]


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def ais_scores(row: Mapping[str, Any],
               ranges: Mapping[str, tuple[float, float]] | None = None,
               base: ais.AISConfig | None = None) -> dict[str, Any]:
    """Component scores, execution/combined score and multiplier for one intensity row.

    The scores the intensity writer stored (what billing reads), or, with dynamic `ranges`,
    scores recomputed from the stored aggregates by :func:`instrument.ais.score` with the
    database's configuration `base` (weights, tiers...) and those ranges.
    """
    config = (base or ais.AISConfig()).with_ranges(ranges) if ranges else None
    got = intensity.agent_scores(row, config)
    comps = {c: _num(pick(got, *_component_names(c))) for c in COMPONENTS}
    combined = _num(pick(got, "combined_score", "intensity_score"))
    multiplier = _num(got.get("multiplier"))
    if multiplier is None and combined is not None:
        multiplier = ais.multiplier(combined)
    return {"components": comps, "execution_score": _num(got.get("execution_score")),
            "creation_score": _num(got.get("creation_score")),
            "combined_score": combined, "multiplier": multiplier}


def dynamic_ranges(rows: Sequence[Mapping[str, Any]], config: ais.AISConfig | None = None
                   ) -> dict[str, tuple[float, float]]:
    """The fleet's dynamic ranges (AIS.md), computed now from every agent's aggregates, with
    the percentile and minimum fleet size of `config` (the database's configuration)."""
    return ais.dynamic_ranges([intensity.aggregates_from_row(r) for r in rows], config)


def _component_names(component: str) -> tuple[str, ...]:
    names = (component, f"{component}_complexity_score", f"{component}_component_score")
    # "execution_score" is the blended score, not the execution component.
    return names if component == "execution" else (*names, f"{component}_score")


def agent_summaries(
    stats_rows: Sequence[Mapping[str, Any]],
    intensity_rows: Sequence[Mapping[str, Any]],
    ranges: Mapping[str, tuple[float, float]] | None = None,
    base: ais.AISConfig | None = None,
) -> list[dict[str, Any]]:
    """One JSON-safe dict per agent, sorted by agent id.

    `base` is the database's AIS configuration (for the minimum runs and the blend); the code's
    defaults when None.
    """
    config = base or ais.AISConfig()
    stats = {str(r["agent_id"]): r for r in stats_rows if r.get("agent_id") is not None}
    intensity = {str(r["agent_id"]): r for r in intensity_rows if r.get("agent_id") is not None}
    out: list[dict[str, Any]] = []
    for agent in sorted(set(stats) | set(intensity)):
        s = stats.get(agent, {})
        i = intensity.get(agent, {})
        runs = pick(s, "run_count") if s else pick(i, "total_executions")
        ok = pick(s, "success_count") if s else pick(i, "successful_executions")
        failed = pick(s, "failure_count") if s else pick(i, "failed_executions")
        # unmeasured is not 0: no run that reported tokens means no token total
        tokens = (_measured(s, "total_tokens", "token_run_count") if s
                  else _measured(i, "total_tokens_used", "n_token_runs"))
        total_ms = _num(pick(s, "total_duration_ms")) if s else _num(pick(i, "total_duration_ms"))
        runs_n = int(runs) if runs is not None else 0
        summary: dict[str, Any] = {
            "agent_id": agent,
            "user_id": pick(s, "user_id") or pick(i, "user_id"),
            "runs": runs_n,
            "successes": int(ok) if ok is not None else None,
            "failures": int(failed) if failed is not None else None,
            "success_rate": round(100.0 * int(ok) / runs_n, 1) if ok is not None and runs_n
            else None,
            "total_tokens": int(tokens) if tokens is not None else None,
            "mean_duration_ms": round(total_ms / runs_n, 1) if total_ms is not None and runs_n
            else None,
            "last_run_at": pick(s, "last_run_at"),
            "last_run_status": pick(s, "last_run_status"),
        }
        summary.update(ais_scores(i, ranges, base) if i else {
            "components": dict.fromkeys(COMPONENTS), "execution_score": None,
            "creation_score": None, "combined_score": None, "multiplier": None,
        })
        summary.update(_basis(summary, config))
        out.append(summary)
    return out


def _measured(row: Mapping[str, Any], total: str, measured_runs: str) -> Any:
    runs = row.get(measured_runs)
    return None if runs is not None and int(runs) == 0 else pick(row, total)


def _basis(summary: Mapping[str, Any], config: ais.AISConfig) -> dict[str, Any]:
    """What the combined score rests on (AIS.md): the creation score alone until the agent's
    `min_executions_for_score`-th run and while no component is measured, then the blend."""
    young = summary["runs"] < config.min_executions_for_score
    creation_only = young or summary.get("execution_score") is None
    return {"score_basis": "creation" if creation_only else "blended",
            "scored_from_run": config.min_executions_for_score,
            "blend": {"creation": config.blend_creation, "measured": config.blend_execution}}


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def young_agents_note(summaries: Sequence[Mapping[str, Any]]) -> str | None:
    """The line under the agents table explaining a combined score marked ``*``, or None."""
    marked = [s for s in summaries
              if s.get("score_basis") == "creation" and s.get("combined_score") is not None]
    if not marked:
        return None
    first = marked[0]
    nth = int(first["scored_from_run"])
    blend = first["blend"]
    why = ", ".join(
        f"{s['agent_id']} {s['runs']} of {nth} runs" if s["runs"] < nth
        else f"{s['agent_id']} nothing measured yet" for s in marked)
    return (f"* the creation score: it stands until an agent's {_ordinal(nth)} run and its first "
            f"measured component ({why}); then combined = {blend['creation']:g} × creation + "
            f"{blend['measured']:g} × measured score.")
