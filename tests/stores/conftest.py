"""A migrated store of each dialect, and raw table reads that bypass the store under test."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from instrument.stores.postgres.store import PostgresStore
from instrument.stores.sqlite.store import SQLiteStore

Store = SQLiteStore | PostgresStore


def make_store(dialect: str, request: pytest.FixtureRequest, tmp_path: Path, *,
               migrate: bool = True, capture_content: bool = False) -> Store:
    store: Store
    if dialect == "sqlite":
        store = SQLiteStore(f"sqlite:///{tmp_path / 'instrument.db'}",
                            capture_content=capture_content, auto_migrate=False)
    else:
        store = PostgresStore(request.getfixturevalue("pg_url"), capture_content=capture_content)
    if migrate:
        store.migrate()
    return store


@pytest.fixture(params=["sqlite", "postgres"])
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s = make_store(dialect, request, tmp_path)
    yield s
    s.close()


def _norm(value: Any) -> Any:
    return str(value) if isinstance(value, UUID) else value


def rows(store: Store, table: str, order: str = "1") -> list[dict[str, Any]]:
    """Every row of `table` read with a fresh connection (JSON text decoded, UUIDs as str)."""
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path)
        conn.row_factory = sqlite3.Row
        try:
            out = [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]
        finally:
            conn.close()
        for r in out:
            for k in ("logs", "full_output", "tags", "metadata"):
                if isinstance(r.get(k), str):
                    r[k] = json.loads(r[k])
            if table != "budget_inflight" and isinstance(r.get("cost_usd"), str):
                r["cost_usd"] = Decimal(r["cost_usd"])  # exact decimal text, as Postgres numeric
        return out
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(store.url) as pconn:
        got = pconn.cursor(row_factory=dict_row).execute(
            f"select * from {table} order by {order}").fetchall()
    return [{k: _norm(v) for k, v in r.items()} for r in got]


def execute(store: Store, sql: str) -> None:
    """Run DDL/DML as the owner, outside the store (to damage a schema on purpose)."""
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            conn.execute(sql)
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as pconn:
        pconn.execute(sql.encode())
