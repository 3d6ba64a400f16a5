"""The opt-in monthly-partitioned layout of ``agent_executions`` and ``agent_logs`` (Postgres).

Why: retention on a big table deletes row by row and leaves the vacuum to do; with one range
partition per UTC month, ``instrument prune`` drops a whole month with one statement. The SQL
lives in ``sql/partition_by_month.sql`` (not a numbered migration: the layout is a choice, not a
schema version); this module runs it inside ``migrate``'s transaction and tells ``prune``
whether there are months to drop. Supabase uses the same SQL through its ``postgresql://`` URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

__all__ = ["MONTHS_AHEAD", "PARTITIONED", "DroppedMonth", "drop_months_before",
           "is_partitioned", "layout_sql", "maintain"]

#: the tables the layout partitions, with their partition key
PARTITIONED = {"agent_executions": "started_at", "agent_logs": "created_at"}
#: months past the current one that always have a partition (``migrate`` keeps them ahead)
MONTHS_AHEAD = 3


@dataclass(frozen=True, slots=True)
class DroppedMonth:
    """One statement of a month drop: a partition dropped (``partition`` names it), or the log
    rows of its executions that lived in a month kept (``partition`` is None)."""

    table: str
    partition: str | None
    rows: int


@cache
def layout_sql() -> str:
    """The idempotent script defining the layout's functions."""
    return (resources.files("instrument.stores.postgres").joinpath("sql", "partition_by_month.sql")
            .read_text(encoding="utf-8"))


def is_partitioned(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``agent_executions`` is range-partitioned (the layout was converted)."""
    row = conn.execute("select c.relkind = 'p' from pg_class c "
                       "where c.oid = to_regclass('public.agent_executions')").fetchone()
    return bool(row and row[0])


def maintain(conn: psycopg.Connection[Any], *, convert: bool = False) -> bool:
    """Inside ``migrate``'s transaction: convert both tables when `convert` and not done yet;
    on a partitioned layout, (re)define its functions and create the partitions of this month
    and the next :data:`MONTHS_AHEAD`. Returns whether the layout is partitioned."""
    if not convert and not is_partitioned(conn):
        return False
    conn.execute(layout_sql().encode())
    if convert:
        for table in PARTITIONED:
            conn.execute("select public.instrument_partition_by_month(%s)", (table,))
    conn.execute("select public.instrument_add_month_partitions(%s)", (MONTHS_AHEAD,))
    return True


def drop_months_before(conn: psycopg.Connection[Any], cutoff: datetime) -> list[DroppedMonth]:
    """Drop every month partition that ends at or before `cutoff` (one statement each); an
    empty list on an unpartitioned layout. `conn` is in autocommit mode: each call is its own
    short transaction."""
    if not is_partitioned(conn):
        return []
    if conn.execute("select to_regprocedure('public.instrument_drop_months_before(timestamptz)')"
                    " is null").fetchone() == (True,):
        conn.execute(layout_sql().encode())  # partitioned by hand, before this function existed
    rows = conn.execute("select table_name, partition_name, row_count "
                        "from public.instrument_drop_months_before(%s)", (cutoff,)).fetchall()
    return [DroppedMonth(str(t), None if p is None else str(p), int(n)) for t, p, n in rows]
