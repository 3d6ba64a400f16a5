"""The migration runner and the DDL `instrument schema` prints."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import psycopg
import pytest

from instrument.stores import migrations
from instrument.stores.postgres.store import PostgresStore
from instrument.stores.sqlite.store import SQLiteStore


def test_expected_version_is_the_newest_file() -> None:
    for dialect in ("postgres", "sqlite"):
        files = migrations.migrations(dialect)
        assert [m.version for m in files] == sorted(m.version for m in files)
        assert files[0].version == 1
        assert files[0].name == "core"
        assert migrations.expected_version(dialect) == files[-1].version
    newest = max(migrations.expected_version(d) for d in ("postgres", "sqlite"))
    assert newest == migrations.EXPECTED_VERSION


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="postgres"):
        migrations.ddl("mysql")


def test_sqlite_ddl_builds_a_working_schema(tmp_path: Path) -> None:
    script = migrations.ddl("sqlite")
    conn = sqlite3.connect(tmp_path / "ddl.db")
    conn.executescript(script)
    conn.executescript(script)  # idempotent
    versions = [r[0] for r in conn.execute("select version from instrument_schema_version")]
    conn.close()
    assert versions == [m.version for m in migrations.migrations("sqlite")]
    store = SQLiteStore(f"sqlite:///{tmp_path / 'ddl.db'}", auto_migrate=False)
    assert store.schema_version() == migrations.expected_version("sqlite")
    assert store.agent_stats() == []  # the schema check passes: nothing is missing
    store.close()


def test_postgres_ddl_builds_a_working_schema(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(migrations.ddl("postgres").encode())
    store = PostgresStore(pg_url)
    assert store.schema_version() == migrations.expected_version("postgres")
    assert store.agent_stats() == []
    store.close()


def test_migrate_twice_and_concurrently_applies_each_file_once(pg_url: str) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        store = PostgresStore(pg_url)
        try:
            results.append(store.migrate())
        except BaseException as exc:
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = migrations.expected_version("postgres")
    assert results == [expected] * 3
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("select version from instrument_schema_version order by 1").fetchall()
    assert [r[0] for r in rows] == [m.version for m in migrations.migrations("postgres")]


def test_an_older_schema_is_upgraded(tmp_path: Path) -> None:
    """A database at v1 reports it, and migrate brings it to the expected version."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(migrations._BOOTSTRAP["sqlite"])
    conn.executescript(migrations.migrations("sqlite")[0].sql)
    conn.execute("insert into instrument_schema_version (version, name) values (1, 'core')")
    conn.close()
    store = SQLiteStore(f"sqlite:///{path}", auto_migrate=False)
    assert store.schema_version() == 1
    if migrations.expected_version("sqlite") > 1:
        with pytest.raises(Exception, match=r"schema v1, expected v\d.*instrument migrate"):
            store.agent_stats()
    assert store.migrate() == migrations.expected_version("sqlite")
    store.close()


def test_split_sqlite_script_keeps_triggers_whole() -> None:
    script = """
    -- a comment; with a semicolon
    CREATE TABLE t (x INTEGER);
    CREATE TRIGGER tr AFTER INSERT ON t BEGIN
        UPDATE t SET x = x + 1;
    END;
    """
    parts = migrations.split_sqlite_script(script)
    assert len(parts) == 2
    assert parts[1].endswith("END;")


_ORIGIN_LOGS = {
    "postgres": "create table agent_logs (id uuid primary key default gen_random_uuid(), "
                "agent_id text, user_id text, run_output text, full_output jsonb, "
                "status text, created_at timestamptz default now())",
    "sqlite": "CREATE TABLE agent_logs (id TEXT PRIMARY KEY, agent_id TEXT, user_id TEXT, "
              "run_output TEXT, full_output TEXT, status TEXT, created_at TEXT)",
}


def test_migrate_adopts_an_existing_origin_table_with_rows(
        dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """An app that already has agent_logs (without our columns, with rows) can migrate."""
    from tests.stores.conftest import execute, make_store, rows
    from tests.stores.records import ALL_WRITERS, mixed_run

    store = make_store(dialect, request, tmp_path, migrate=False)
    execute(store, _ORIGIN_LOGS[dialect])
    execute(store, "insert into agent_logs (id, agent_id, status) values "
                   "('6f1c1d5e-0000-4000-8000-000000000000', 'old-agent', '✅ done')")
    store.migrate()
    records = mixed_run()
    assert store.apply(records, ALL_WRITERS).applied == len(records)
    assert store.apply(records, ALL_WRITERS).duplicates == len(records)
    logs = rows(store, "agent_logs")
    assert len(logs) == len(records) + 1
    assert {r["agent_id"] for r in logs if r["execution_id"] is None} == {"old-agent"}
    store.close()
