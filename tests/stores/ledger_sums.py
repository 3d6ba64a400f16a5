"""The usage ledger recomputed from agent_executions, independently of the writer under test.

``ledger_from_executions(store)`` groups the rows of agent_executions (read back from the
database, not from the records) per (tenant, user, agent, UTC day of started_at) exactly as
API.md defines the ledger; ``ledger_rows(store)`` reads usage_ledger in the same shape. A test
asserts the two are equal, value for value (Decimal equality for cost).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from tests.stores.conftest import Store, rows

Key = tuple[str, str, str, date]
COLUMNS = ("runs", "successes", "failures", "paused", "refused", "input_tokens",
           "output_tokens", "cached_input_tokens", "reasoning_tokens",
           "cache_write_input_tokens", "total_tokens", "cost_usd", "unpriced_runs")


def _day(value: Any) -> date:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).date()
    assert isinstance(value, date), value
    return value


def _add(total: Any, value: Any) -> Any:
    """A sum of measured values: None until one is measured."""
    if value is None:
        return total
    return value if total is None else total + value


def ledger_from_executions(store: Store) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for row in rows(store, "agent_executions"):
        key = (row["tenant_id"] or "", row["user_id"] or "", row["agent_id"] or "",
               _day(row["started_at"]))
        acc = out.setdefault(key, dict.fromkeys(COLUMNS) | dict.fromkeys(
            ("runs", "successes", "failures", "paused", "refused", "unpriced_runs"), 0))
        status = row["status"]
        if status == "refused":
            acc["refused"] += 1
            continue
        acc["runs"] += 1
        acc[{"completed": "successes", "failed": "failures", "paused": "paused"}[status]] += 1
        tokens = (row["logs"] or {}).get("tokens") or {}
        for column, value in (("input_tokens", row["input_tokens"]),
                              ("output_tokens", row["output_tokens"]),
                              ("total_tokens", row["total_tokens"]),
                              ("cache_write_input_tokens", row["cache_write_input_tokens"]),
                              ("cached_input_tokens", tokens.get("cached_input_tokens")),
                              ("reasoning_tokens", tokens.get("reasoning_tokens"))):
            acc[column] = _add(acc[column], value)
        cost = row["cost_usd"]
        acc["cost_usd"] = _add(acc["cost_usd"], None if cost is None else Decimal(cost))
        acc["unpriced_runs"] += cost is None
    return out


def ledger_rows(store: Store) -> dict[Key, dict[str, Any]]:
    out: dict[Key, dict[str, Any]] = {}
    for row in rows(store, "usage_ledger"):
        key = (row["tenant_id"], row["user_id"], row["agent_id"], _day(row["day"]))
        values = {c: row[c] for c in COLUMNS}
        if values["cost_usd"] is not None:
            values["cost_usd"] = Decimal(values["cost_usd"])
        out[key] = values
    return out
