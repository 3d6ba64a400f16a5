"""`doctor` checks every table, view and function the schema needs, not only the version row,
and `migrate` says what it repaired."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest

from instrument.cli import EXIT_OK, EXIT_PROBLEM
from tests.cli.conftest import Run, assert_one_line_error


def _schema_check(run: Run, *extra: str) -> tuple[int, dict[str, str]]:
    got = run("doctor", "--json", *extra)
    checks = {c["check"]: c for c in json.loads(got.out)["checks"]}
    return got.code, checks["schema"]


def _executions(path: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM agent_executions").fetchone()[0])


def test_sqlite_missing_table_and_column_found_and_repaired(run: Run, db_url: str) -> None:
    assert run("demo").code == EXIT_OK
    path = db_url.removeprefix("sqlite:///")
    code, schema = _schema_check(run)
    assert (code, schema["status"]) == (EXIT_OK, "ok")
    assert "every table, view and function present" in schema["detail"]
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TABLE agent_logs")
        conn.execute("ALTER TABLE agent_stats DROP COLUMN token_run_count")
        conn.commit()

    code, schema = _schema_check(run)
    assert code == EXIT_PROBLEM
    assert schema["status"] == "fail"
    assert schema["detail"].endswith(
        "but missing: table agent_logs, column agent_stats.token_run_count")
    assert "instrument migrate" in schema["fix"]
    assert_one_line_error(run("doctor"), EXIT_PROBLEM, "table agent_logs", "instrument migrate")

    repaired = run("migrate")
    assert repaired.code == EXIT_OK, repaired.err
    assert "nothing to do" not in repaired.out
    assert " ".join(repaired.out.split()).startswith(f"Repaired {db_url} (schema v")
    assert "re-created table agent_logs, column agent_stats.token_run_count." in " ".join(
        repaired.out.split())
    code, schema = _schema_check(run)
    assert (code, schema["status"]) == (EXIT_OK, "ok"), schema
    assert _executions(path) == 11  # the rows of the other tables are kept
    again = run("migrate")
    assert "nothing to do" in again.out


@pytest.mark.postgres
def test_postgres_missing_table_and_function_found_and_repaired(run: Run, db_url: str,
                                                                 pg_url: str) -> None:
    import psycopg

    assert run("demo", "--database-url", pg_url).code == EXIT_OK
    code, schema = _schema_check(run, "--database-url", pg_url)
    assert (code, schema["status"]) == (EXIT_OK, "ok")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE agent_logs")
        conn.execute("DROP FUNCTION increment_agent_stats")

    code, schema = _schema_check(run, "--database-url", pg_url)
    assert code == EXIT_PROBLEM
    assert schema["detail"].endswith(
        "but missing: table agent_logs, function increment_agent_stats")
    assert f"instrument migrate --database-url {pg_url}" in schema["fix"]

    repaired = run("migrate", "--database-url", pg_url)
    assert repaired.code == EXIT_OK, repaired.err
    said = " ".join(repaired.out.split())
    assert "nothing to do" not in said
    assert "re-created table agent_logs, function increment_agent_stats." in said
    code, schema = _schema_check(run, "--database-url", pg_url)
    assert (code, schema["status"]) == (EXIT_OK, "ok"), schema
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("select count(*) from agent_executions").fetchone()
    assert row is not None
    assert row[0] == 11
