"""Rich tables for rows read back from the store. Pure functions: rows in, a Table out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from instrument.cli.common import pick
from instrument.cli.summary import COMPONENTS

__all__ = [
    "agents_table",
    "ais_table",
    "checks_table",
    "executions_table",
    "fmt",
    "logs_table",
    "stats_rows_table",
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
    style = {"completed": "green", "failed": "red"}.get(text.split()[0] if text else "", "")
    return Text(text, style=style)


def executions_table(rows: Sequence[Mapping[str, Any]], title: str = "agent_executions") -> Table:
    table = Table(title=title, title_justify="left")
    for name, justify in (
        ("started", "left"), ("execution", "left"), ("agent", "left"), ("user", "left"),
        ("engine", "left"), ("type", "left"), ("status", "left"), ("ms", "right"),
        ("tokens", "right"), ("error", "left"),
    ):
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         overflow="fold" if name == "error" else "ellipsis",
                         min_width=20 if name == "error" else None)
    for r in rows:
        error = pick(r, "error_message", "error")
        etype = pick(r, "error_type")
        table.add_row(
            fmt(pick(r, "started_at", "created_at")),
            _short_id(pick(r, "id", "execution_id")),
            fmt(pick(r, "agent_id")),
            fmt(pick(r, "user_id")),
            fmt(pick(r, "engine")),
            fmt(pick(r, "execution_type")),
            _status(pick(r, "status")),
            fmt(pick(r, "execution_duration_ms", "duration_ms"), digits=0),
            fmt(pick(r, "total_tokens")),
            _DASH if error is None
            else (f"{etype}: {error}" if etype and etype != error else str(error)),
        )
    return table


def logs_table(rows: Sequence[Mapping[str, Any]], title: str = "agent_logs") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("execution")
    table.add_column("agent")
    table.add_column("status")
    table.add_column("run_time ms", justify="right")
    table.add_column("run_tokens", justify="right")
    table.add_column("credits", justify="right")
    table.add_column("run_output", overflow="fold")
    for r in rows:
        table.add_row(
            _short_id(pick(r, "execution_id")),
            fmt(pick(r, "agent_id")),
            _status(pick(r, "status")),
            fmt(pick(r, "run_time"), digits=0),
            fmt(pick(r, "run_tokens")),
            fmt(pick(r, "user_credits_used")),
            fmt(pick(r, "run_output")),
        )
    return table


def stats_rows_table(rows: Sequence[Mapping[str, Any]], title: str = "agent_stats") -> Table:
    table = Table(title=title, title_justify="left")
    for name in ("agent", "runs", "succeeded", "failed", "tokens", "duration ms", "last run"):
        table.add_column(name, justify="left" if name in ("agent", "last run") else "right")
    for r in rows:
        table.add_row(
            fmt(pick(r, "agent_id")), fmt(pick(r, "run_count")), fmt(pick(r, "success_count")),
            fmt(pick(r, "failure_count")), fmt(pick(r, "total_tokens")),
            fmt(pick(r, "total_duration_ms"), digits=0),
            f"{fmt(pick(r, 'last_run_at'))} {fmt(pick(r, 'last_run_status'))}",
        )
    return table


def agents_table(summaries: Sequence[Mapping[str, Any]], title: str = "Agents") -> Table:
    """Runs and the intensity score per agent (from :func:`agent_summaries`)."""
    table = Table(title=title, title_justify="left")
    table.add_column("agent")
    for name in ("runs", "success %", "tokens", "mean ms", "execution score", "combined score",
                 "multiplier"):
        table.add_column(name, justify="right")
    for s in summaries:
        mult = s.get("multiplier")
        table.add_row(
            fmt(s["agent_id"]), fmt(s.get("runs")), fmt(s.get("success_rate")),
            fmt(s.get("total_tokens")), fmt(s.get("mean_duration_ms"), digits=0),
            fmt(s.get("execution_score"), digits=2), fmt(s.get("combined_score"), digits=2),
            _DASH if mult is None else f"{mult:.2f}×",
        )
    return table


def ais_table(summaries: Sequence[Mapping[str, Any]],
              title: str = "AIS components (0–10; – = no data)") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("agent")
    for c in COMPONENTS:
        table.add_column(c, justify="right")
    for s in summaries:
        comps = s.get("components") or {}
        table.add_row(fmt(s["agent_id"]), *(fmt(comps.get(c), digits=2) for c in COMPONENTS))
    return table


def checks_table(checks: Sequence[Mapping[str, Any]], title: str = "instrument doctor") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail", overflow="fold")
    table.add_column("fix", overflow="fold")
    style = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    for c in checks:
        status = str(c["status"])
        table.add_row(str(c["check"]), Text(status, style=style.get(status, "")),
                      str(c.get("detail") or ""), str(c.get("fix") or ""))
    return table
