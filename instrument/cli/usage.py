"""`instrument stats --by user|tenant|agent`: the usage ledger, summed per key over days.

``usage_ledger`` holds one row per (tenant, user, agent, UTC day): runs, outcomes, tokens by
kind, cost and unpriced runs (docs/accounting.md). A time filter selects whole UTC days (the
ledger has no finer grain): ``--since`` from the day it falls in, ``--until`` up to the day it
falls in (that day included unless it is exactly midnight). Sums are exact decimals for cost;
a token kind no run measured stays ``None`` ("–"), never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from instrument.cli.layout import Col, Grid
from instrument.cli.render import fmt, usd

__all__ = ["BY_COLUMN", "aggregate", "day_range", "usage_table"]

#: `--by` value -> the ledger column it groups by
BY_COLUMN = {"user": "user_id", "tenant": "tenant_id", "agent": "agent_id"}

_COUNTS = ("runs", "successes", "failures", "paused", "refused", "unpriced_runs")
_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens",
           "cache_write_input_tokens", "total_tokens")


def day_range(since: datetime | None, until: datetime | None
              ) -> tuple[date | None, date | None]:
    """The ledger days ``[first, end)`` covering ``[since, until)``."""
    first = since.date() if since is not None else None
    end = None
    if until is not None:
        end = until.date() if until.time() == datetime.min.time() \
            else until.date() + timedelta(days=1)
    return first, end


def _add(total: Any, value: Any) -> Any:
    if value is None or value == "":
        return total
    return (total or 0) + int(value)


def aggregate(rows: Iterable[Mapping[str, Any]], by: str, agent_id: str | None = None
              ) -> list[dict[str, Any]]:
    """One JSON-safe dict per key of `by`, sorted by key; `agent_id` keeps one agent's rows."""
    column = BY_COLUMN[by]
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if agent_id is not None and row.get("agent_id") != agent_id:
            continue
        key = str(row.get(column) or "")
        acc = out.setdefault(key, {by: key or None, **dict.fromkeys(_COUNTS, 0),
                                   **dict.fromkeys(_TOKENS), "cost_usd": None,
                                   "days": set(), "agents": set(), "users": set()})
        for c in _COUNTS:
            acc[c] += int(row.get(c) or 0)
        for t in _TOKENS:
            acc[t] = _add(acc[t], row.get(t))
        cost = row.get("cost_usd")
        if cost is not None and cost != "":
            acc["cost_usd"] = (acc["cost_usd"] or Decimal(0)) + Decimal(str(cost))
        acc["days"].add(str(row.get("day"))[:10])
        acc["agents"].add(row.get("agent_id") or "")
        acc["users"].add(row.get("user_id") or "")
    result = []
    for key in sorted(out):
        acc = out[key]
        days = sorted(acc.pop("days"))
        acc["agents"] = len(acc["agents"])
        acc["users"] = len(acc["users"])
        acc["first_day"], acc["last_day"] = days[0], days[-1]
        acc["cost_usd"] = None if acc["cost_usd"] is None else str(acc["cost_usd"])
        result.append(acc)
    return result


def usage_table(summaries: Sequence[Mapping[str, Any]], by: str, title: str) -> Grid:
    """The ledger summed per key; the least important columns go first at a narrow width."""
    other = "agents" if by != "agent" else "users"
    grid = Grid(title, (
        Col(by, wrap=14), Col("runs", right=True), Col("ok", right=True, priority=2),
        Col("failed", right=True, priority=2), Col("paused", right=True, priority=5),
        Col("refused", right=True, priority=3), Col("tokens", right=True, priority=1),
        Col("input tok", right=True, priority=4), Col("output tok", right=True, priority=4),
        Col("cost $", right=True),
        Col("unpriced", right=True, priority=1), Col(other, right=True, priority=6),
    ))
    for s in summaries:
        grid.add(fmt(s[by]), fmt(s["runs"]), fmt(s["successes"]), fmt(s["failures"]),
                 fmt(s["paused"]), fmt(s["refused"]), fmt(s["total_tokens"]),
                 fmt(s["input_tokens"]),
                 fmt(s["output_tokens"]), usd(s["cost_usd"]), fmt(s["unpriced_runs"]),
                 fmt(s[other]))
    unpriced = sum(int(s["unpriced_runs"]) for s in summaries)
    if unpriced:
        grid.notes.append(f"{unpriced} run(s) unpriced (model or tokens unknown): not in cost $ "
                          "(docs/accounting.md).")
    return grid
