"""Upgrading a populated v5 database to v6 (SQLite and PostgreSQL).

What v6 does to existing rows: executions and logs keep every value (new columns NULL, status
unchanged); the per-agent rows' user_id (the first caller, which showed other users' runs to
that user) becomes NULL once, and only once: an owner named after the upgrade survives any
re-run of the migration. On SQLite, whose CHECK constraints cannot be altered, the v6 file
edits the schema text; the file stays valid, and a connection opened before the upgrade sees
the new schema.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from instrument.stores import migrations
from instrument.writers import BUILTIN_WRITERS
from tests.stores.conftest import Store, execute, make_store, rows
from tests.stores.records import accounting, agentkit

V5_WRITERS = ("executions", "logs", "stats", "intensity")


def _v5_schema(store: Store) -> None:
    """The schema exactly as v5 shipped it: files 0001-0005 and their version rows."""
    v5 = [m for m in migrations.migrations(store.dialect) if m.version <= 5]
    if store.dialect == "sqlite":
        conn = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[union-attr]
        conn.executescript(migrations._BOOTSTRAP["sqlite"])
        for m in v5:
            conn.executescript(m.sql)
            conn.execute("insert into instrument_schema_version (version, name) values (?, ?)",
                         (m.version, m.name))
        conn.close()
        return
    import psycopg

    with psycopg.connect(store.url) as conn, conn.transaction():  # type: ignore[union-attr]
        conn.execute(migrations._BOOTSTRAP["postgres"].encode())
        for m in v5:
            conn.execute(m.sql.encode())
            conn.execute("insert into instrument_schema_version (version, name) values (%s, %s)",
                         (m.version, m.name))


def _v5_rows(store: Store) -> None:
    """Rows as v5 wrote them: an execution, its log, the agent's row owned by its first caller."""
    if store.dialect == "postgres":
        import psycopg

        from instrument.stores.postgres.payload import ingest_json

        with psycopg.connect(store.url, autocommit=True) as conn:  # type: ignore[union-attr]
            conn.execute("select instrument_ingest(%s::jsonb, %s::text[])",
                         (ingest_json([agentkit(1, agent_id="old-agent", user_id="first")],
                                      capture_content=False), list(V5_WRITERS)))
        return
    # v5 on SQLite wrote these rows through the store's Python; the same rows, in SQL
    execute(store, "insert into agent_executions (id, agent_id, user_id, engine, status, "
                   "started_at, completed_at) values ('00000000-0000-4000-8000-000000000001', "
                   "'old-agent', 'first', 'agentkit', 'completed', '2026-01-01T00:00:00+00:00', "
                   "'2026-01-01T00:00:01+00:00')")
    execute(store, "insert into agent_logs (id, execution_id, agent_id, user_id, status) values "
                   "('00000000-0000-7000-8000-000000000001', "
                   "'00000000-0000-4000-8000-000000000001', 'old-agent', 'first', 'completed')")
    execute(store, "insert into agent_stats (agent_id, user_id, run_count, success_count) "
                   "values ('old-agent', 'first', 1, 1)")
    execute(store, "insert into agent_intensity_metrics (agent_id, user_id, total_executions) "
                   "values ('old-agent', 'first', 1)")


def test_a_populated_v5_database_upgrades(dialect: str, request: pytest.FixtureRequest,
                                          tmp_path: Path) -> None:
    store = make_store(dialect, request, tmp_path, migrate=False)
    _v5_schema(store)
    _v5_rows(store)
    before = rows(store, "agent_executions")
    earlier = None
    if dialect == "sqlite":  # a connection of another process, opened before the upgrade
        earlier = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[union-attr]
        earlier.execute("select count(*) from agent_executions").fetchone()

    assert store.migrate() == migrations.EXPECTED_VERSION == 6
    (old,) = rows(store, "agent_executions")
    assert {k: old[k] for k in before[0]} == before[0]  # every v5 value kept
    assert (old["tenant_id"], old["cost_usd"], old["tags"]) == (None, None, None)
    (stats,) = rows(store, "agent_stats")
    assert (stats["user_id"], stats["run_count"], stats["paused_count"],
            stats["refused_count"]) == (None, 1, 0, 0)
    assert [r["user_id"] for r in rows(store, "agent_intensity_metrics")] == [None]

    # the new statuses land; an owner named now is the row's
    store.apply([accounting(1, agent_id="old-agent", status="paused", owner_id="owner-1"),
                 accounting(2, agent_id="old-agent", status="refused")], BUILTIN_WRITERS)
    (stats,) = rows(store, "agent_stats")
    assert (stats["user_id"], stats["run_count"], stats["paused_count"],
            stats["refused_count"]) == ("owner-1", 2, 1, 1)
    if earlier is not None:
        earlier.execute("insert into agent_executions (id, engine, status, started_at, "
                        "completed_at, tenant_id) values ('x', 'e', 'refused', 't', 't', 'ten')")
        assert earlier.execute("pragma integrity_check").fetchone() == ("ok",)
        earlier.close()

    # a re-run of v6 (here: a repair after a table was dropped by hand) keeps the owner
    execute(store, "drop table usage_ledger")
    assert store.migrate() == 6
    assert rows(store, "agent_stats")[0]["user_id"] == "owner-1"
    assert rows(store, "usage_ledger") == []
    store.close()


def test_the_sqlite_v6_file_runs_twice_on_its_own_result(tmp_path: Path) -> None:
    """The printed schema (`instrument schema --dialect sqlite`) is idempotent, and the
    schema text it leaves is exactly what the v6 CREATE TABLE statements say."""
    path = tmp_path / "twice.db"
    conn = sqlite3.connect(path)
    conn.executescript(migrations.ddl("sqlite"))
    first = dict(conn.execute("select name, sql from sqlite_master where type = 'table'"))
    conn.executescript(migrations.ddl("sqlite"))
    again = dict(conn.execute("select name, sql from sqlite_master where type = 'table'"))
    assert first == again
    columns = {t: [r[1] for r in conn.execute(f"pragma table_info({t})")]
               for t in ("agent_executions", "agent_logs", "agent_stats")}
    for table, cols in columns.items():
        assert cols == list(migrations.expected_columns("sqlite")[table]), table
    assert "'paused', 'refused'" in first["agent_executions"]
    assert "BETWEEN 0 AND 31" in first["instrument_applied"]
    assert "instrument_schema_reload" not in first
    assert "instrument_schema_reloaded" not in first
    assert conn.execute("pragma integrity_check").fetchone() == ("ok",)
    conn.close()


def test_an_adopted_table_keeps_its_own_status_values(
        dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """An application's own agent_logs (adopted by v1) has no status check of ours: v6 adds
    none, so its old rows ('✅ done') stay valid."""
    store = make_store(dialect, request, tmp_path, migrate=False)
    logs = ("create table agent_logs (id text primary key, agent_id text, user_id text, "
            "run_output text, full_output text, status text, created_at text)")
    execute(store, logs)
    execute(store, "insert into agent_logs (id, agent_id, status) values "
                   "('6f1c1d5e-0000-4000-8000-000000000000', 'old', '✅ done')")
    store.migrate()
    store.apply([accounting(1, status="paused")], BUILTIN_WRITERS)
    assert sorted(r["status"] for r in rows(store, "agent_logs")) == ["paused", "✅ done"]
    store.close()
