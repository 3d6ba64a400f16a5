"""Real-database helpers for the AIS parity tests (SQLite files and PostgreSQL databases)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from instrument import ais
from instrument.record import ExecutionRecord
from instrument.stores.migrations import migrate_postgres, migrate_sqlite
from instrument.stores.reference.intensity import (
    AGGREGATE_COLUMNS,
    SCORE_COLUMNS,
    aggregates_from_row,
    stored_values,
)
from instrument.stores.sqlite.intensity import apply_sqlite

COMPARED = (*stored_values(ais.Aggregates(), None).keys(),)


def sqlite_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    return conn


def sqlite_migrated(path: Path) -> sqlite3.Connection:
    conn = sqlite_connect(path)
    migrate_sqlite(conn)
    return conn


def sqlite_apply(conn: sqlite3.Connection, records: Sequence[ExecutionRecord]) -> None:
    """One store-like batch transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        apply_sqlite(conn, records)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def rows(conn: Any, sql: str = "SELECT * FROM agent_intensity_metrics ORDER BY agent_id"
         ) -> dict[str, dict[str, Any]]:
    cur = conn.execute(sql)
    names = [d[0] for d in cur.description]
    return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def pg_migrated(url: str) -> Any:
    import psycopg

    conn = psycopg.connect(url, autocommit=True)
    migrate_postgres(conn)
    return conn


def pg_apply(conn: Any, records: Sequence[ExecutionRecord]) -> None:
    from psycopg.types.json import Jsonb

    # model_dump_json turns NaN/inf into null (to_json_dict keeps them, and PostgreSQL's json
    # parser rejects the resulting "Infinity"/"NaN" tokens)
    with conn.transaction():
        conn.execute("select instrument_apply_intensity(%s)",
                     [Jsonb([json.loads(r.model_dump_json()) for r in records])])


def expected_rows(history: Sequence[ExecutionRecord], creation: dict[str, float] | None = None
                  ) -> dict[str, dict[str, Any]]:
    out = {}
    for agent, agg in ais.aggregate(history).items():
        out[agent] = {"aggregates": agg,
                      **stored_values(agg, (creation or {}).get(agent))}
    return out


__all__ = ["AGGREGATE_COLUMNS", "COMPARED", "SCORE_COLUMNS", "aggregates_from_row",
           "expected_rows", "pg_apply", "pg_migrated", "rows", "sqlite_apply",
           "sqlite_connect", "sqlite_migrated"]
