"""The tables of rows read back from the store. Pure functions: rows in, a :class:`Grid` out
(:mod:`instrument.cli.layout` fits it to the terminal, or prints it as plain text)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rich.text import Text

from instrument.cli.common import pick
from instrument.cli.layout import Col, Grid
from instrument.cli.summary import COMPONENTS, young_agents_note

__all__ = [
    "agents_table",
    "ais_table",
    "checks_table",
    "executions_table",
    "fmt",
    "logs_table",
    "stats_rows_table",
    "tags",
    "usd",
]

_DASH = "–"


def fmt(value: Any, *, digits: int = 1) -> str:
    """A cell: None is "–" (not measured), floats are rounded, datetimes are compact."""
    if value is None:
        return _DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, separators=(",", ":"))
    text = str(value)
    if len(text) >= 19 and text[10:11] in ("T", " ") and text[4:5] == "-":
        return text[:19].replace("T", " ")
    return text


def _short_id(value: Any) -> str:
    return _DASH if value is None else str(value)[:8]


def _status(value: Any) -> Text:
    text = fmt(value)
    style = {"completed": "green", "failed": "red", "paused": "yellow",
             "refused": "magenta"}.get(text.split()[0] if text else "", "")
    return Text(text, style=style)


def _tokens(row: Mapping[str, Any], total: str, measured_runs: str) -> Any:
    """A token total, or None when no run measured tokens (unmeasured is not 0)."""
    runs = row.get(measured_runs)
    return None if runs is not None and int(runs) == 0 else pick(row, total)


def _error(row: Mapping[str, Any]) -> str:
    error = pick(row, "error_message", "error")
    etype = pick(row, "error_type")
    if error is None:
        return _DASH
    return f"{etype}: {error}" if etype and etype != error else str(error)


#: At a narrow terminal the columns with the highest priority number are left out first.
_EXECUTION_COLS = (
    Col("started"), Col("execution", priority=4), Col("agent", wrap=12),
    Col("user", priority=6, wrap=8), Col("engine", priority=5, wrap=8),
    Col("type", priority=7, wrap=6), Col("status"), Col("ms", right=True, priority=3),
    Col("tokens", right=True, priority=2), Col("cost $", right=True, priority=8),
    Col("tags", priority=9, wrap=12), Col("error", priority=1, wrap=16),
)


def usd(value: Any, digits: int = 6) -> str:
    """A cost: exact decimal places (no float rounding on the way), "–" when unpriced."""
    if value is None or value == "":
        return _DASH
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"{amount.quantize(Decimal(1).scaleb(-digits)):,}"


def tags(value: Any) -> str:
    """Tags as stored (a JSON array, or its text in SQLite) joined by commas; "–" for none."""
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            return text
    if not value:
        return _DASH
    return ",".join(str(t) for t in value) if isinstance(value, list) else str(value)


def executions_table(rows: Sequence[Mapping[str, Any]], title: str = "agent_executions") -> Grid:
    grid = Grid(title, _EXECUTION_COLS)
    for r in rows:
        grid.add(
            fmt(pick(r, "started_at", "created_at")),
            _short_id(pick(r, "id", "execution_id")),
            fmt(pick(r, "agent_id")),
            fmt(pick(r, "user_id")),
            fmt(pick(r, "engine")),
            fmt(pick(r, "execution_type")),
            _status(pick(r, "status")),
            fmt(pick(r, "execution_duration_ms", "duration_ms"), digits=0),
            fmt(pick(r, "total_tokens")),
            usd(r.get("cost_usd")),
            tags(r.get("tags")),
            _error(r),
        )
    return grid


_LOG_COLS = (
    Col("execution", priority=3), Col("agent", wrap=10), Col("status"),
    Col("run_time ms", right=True, priority=2), Col("run_tokens", right=True, priority=1),
    Col("credits", right=True, priority=4), Col("run_output", priority=1, wrap=16),
)


def logs_table(rows: Sequence[Mapping[str, Any]], title: str = "agent_logs") -> Grid:
    grid = Grid(title, _LOG_COLS)
    for r in rows:
        grid.add(
            _short_id(pick(r, "execution_id")),
            fmt(pick(r, "agent_id")),
            _status(pick(r, "status")),
            fmt(pick(r, "run_time"), digits=0),
            fmt(pick(r, "run_tokens")),
            fmt(pick(r, "user_credits_used")),
            fmt(pick(r, "run_output")),
        )
    return grid


_STATS_COLS = (
    Col("agent", wrap=12), Col("runs", right=True), Col("succeeded", right=True, priority=1),
    Col("failed", right=True, priority=1), Col("tokens", right=True, priority=2),
    Col("duration ms", right=True, priority=3), Col("last run", priority=4, wrap=10),
)


def stats_rows_table(rows: Sequence[Mapping[str, Any]], title: str = "agent_stats") -> Grid:
    grid = Grid(title, _STATS_COLS)
    for r in rows:
        grid.add(
            fmt(pick(r, "agent_id")), fmt(pick(r, "run_count")), fmt(pick(r, "success_count")),
            fmt(pick(r, "failure_count")), fmt(_tokens(r, "total_tokens", "token_run_count")),
            fmt(pick(r, "total_duration_ms"), digits=0),
            f"{fmt(pick(r, 'last_run_at'))} {fmt(pick(r, 'last_run_status'))}",
        )
    return grid


#: "measured score" is the stored `execution_score`: the weighted mean of the measured AIS
#: components (not the `execution` component of the components table).
_AGENT_COLS = (
    Col("agent", wrap=16), Col("runs", right=True), Col("success %", right=True, priority=1),
    Col("tokens", right=True, priority=2), Col("mean ms", right=True, priority=4),
    Col("measured score", right=True, priority=2), Col("combined score", right=True),
    Col("multiplier", right=True, priority=3),  # 1 + combined / 10: the first to go
)


def agents_table(summaries: Sequence[Mapping[str, Any]], title: str = "Agents") -> Grid:
    """Runs and the intensity score per agent (from :func:`agent_summaries`). A combined score
    that is still the creation score (a young agent, or nothing measured) is marked ``*`` and
    explained under the table."""
    grid = Grid(title, _AGENT_COLS)
    for s in summaries:
        mult = s.get("multiplier")
        combined = fmt(s.get("combined_score"), digits=2)
        if s.get("score_basis") == "creation" and s.get("combined_score") is not None:
            combined += "*"
        grid.add(
            fmt(s["agent_id"]), fmt(s.get("runs")), fmt(s.get("success_rate")),
            fmt(s.get("total_tokens")), fmt(s.get("mean_duration_ms"), digits=0),
            fmt(s.get("execution_score"), digits=2), combined,
            _DASH if mult is None else f"{mult:.2f}×",
        )
    note = young_agents_note(summaries)
    if note:
        grid.notes.append(note)
    return grid


def ais_table(summaries: Sequence[Mapping[str, Any]],
              title: str = "AIS components (0–10; – = no data)") -> Grid:
    grid = Grid(title, (Col("agent", wrap=12), *(Col(c, right=True, priority=1)
                                                 for c in COMPONENTS)))
    for s in summaries:
        comps = s.get("components") or {}
        grid.add(fmt(s["agent_id"]), *(fmt(comps.get(c), digits=2) for c in COMPONENTS))
    return grid


_STYLE = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def checks_table(checks: Sequence[Mapping[str, Any]], title: str = "instrument doctor") -> Grid:
    grid = Grid(title, (Col("check"), Col("status"), Col("detail", wrap=20),
                        Col("fix", priority=1, wrap=20)))
    for c in checks:
        status = str(c["status"])
        grid.add(str(c["check"]), Text(status, style=_STYLE.get(status, "")),
                 str(c.get("detail") or ""), str(c.get("fix") or ""))
    return grid
