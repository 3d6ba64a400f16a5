"""Budgets on SQLite: committed spend of a key, and atomic reservations of runs in flight.

Spend since a time is read from ``usage_ledger`` for whole UTC days (its ``(user_id|tenant_id|
agent_id, day)`` indexes) and, when the time is not a UTC midnight (a rolling window), from
``agent_executions`` for the rest of its first day (the ``(…, started_at)`` indexes). USD is
summed exactly (:mod:`instrument.stores.sqlite.money`). A reservation runs in the caller's
``BEGIN IMMEDIATE`` transaction: SQLite's write lock serializes it with every other
reservation and every batch, so "read the spend, then register the run" is atomic.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

from instrument.stores.base import Reservation, Spend, budget_column

__all__ = ["reserve_sqlite", "spend_sqlite", "split_window", "utc"]


def utc(value: datetime) -> datetime:
    """`value` in UTC (a naive datetime is read as UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def split_window(since: datetime) -> tuple[date, tuple[datetime, datetime] | None]:
    """The first whole UTC day the ledger serves, and the partial head ``[since, midnight)``
    that only ``agent_executions`` can (``None`` when `since` is a UTC midnight)."""
    since = utc(since)
    day = since.date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if since == midnight:
        return day, None
    return day + timedelta(days=1), (since, midnight + timedelta(days=1))


def _ts(value: datetime) -> str:
    """The fixed-width UTC text agent_executions.started_at holds (see sqlite/ingest.py)."""
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def spend_sqlite(conn: sqlite3.Connection, per: str, key: str, since: datetime) -> Spend:
    """Committed spend of `key` since `since` (see the module docstring)."""
    column = budget_column(per)
    first_day, head = split_window(since)
    usd, tokens, runs = conn.execute(
        f"SELECT instrument_decimal_sum(cost_usd), coalesce(sum(total_tokens), 0), "
        f"coalesce(sum(runs), 0) FROM usage_ledger WHERE {column} = ? AND day >= ?",
        (key, first_day.isoformat())).fetchone()
    total = Decimal(usd or 0)
    if head is not None:
        h_usd, h_tokens, h_runs = conn.execute(
            f"SELECT instrument_decimal_sum(cost_usd), coalesce(sum(total_tokens), 0), count(*) "
            f"FROM agent_executions WHERE {column} = ? AND started_at >= ? AND started_at < ? "
            "AND status <> 'refused'", (key, _ts(head[0]), _ts(head[1]))).fetchone()
        total += Decimal(h_usd or 0)
        tokens += h_tokens
        runs += h_runs
    return Spend(usd=total, tokens=int(tokens), runs=int(runs))


def reserve_sqlite(conn: sqlite3.Connection, per: str, key: str, since: datetime,
                   limit_usd: Decimal | None, limit_tokens: int | None, execution_id: UUID,
                   ttl_s: float) -> Reservation:
    """Inside the caller's ``BEGIN IMMEDIATE``: the spend, the key's runs in flight, and, when
    the spend is below both limits, `execution_id` registered in flight until
    ``now + ttl_s`` (expired rows of the key are deleted)."""
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be positive, not {ttl_s!r}")
    spent = spend_sqlite(conn, per, key, since)
    now = datetime.now(UTC)
    eid = str(execution_id)
    conn.execute("DELETE FROM budget_inflight WHERE per = ? AND key = ? AND expires_at <= ?",
                 (per, key, _ts(now)))
    (in_flight,) = conn.execute(
        "SELECT count(*) FROM budget_inflight WHERE per = ? AND key = ? AND execution_id <> ?",
        (per, key, eid)).fetchone()
    allowed = ((limit_usd is None or spent.usd < limit_usd)
               and (limit_tokens is None or spent.tokens < limit_tokens))
    if allowed:
        conn.execute(
            "INSERT INTO budget_inflight (execution_id, per, key, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (execution_id, per, key) DO UPDATE SET expires_at = excluded.expires_at",
            (eid, per, key, _ts(now + timedelta(seconds=ttl_s))))
    return Reservation(allowed=allowed, spent_usd=spent.usd, spent_tokens=spent.tokens,
                       in_flight=int(in_flight))
