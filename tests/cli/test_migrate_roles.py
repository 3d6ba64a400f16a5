"""`instrument migrate` on PostgreSQL: Supabase's roles only on Supabase (or with --supabase),
and `--grant ROLE` for an application role that then writes and reads (issue 18 item 7).

Roles are cluster-wide. "Creates no role" is watched on a throwaway cluster of its own
(tests/ops/pristine_pg.py); on the shared server, where Supabase's roles exist, the tests use
uniquely named application roles and check what the migration leaves in *their* database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

import instrument
from instrument import logged_execution
from instrument.cli import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from instrument.stores.grants import SUPABASE_ROLES
from tests.cli.conftest import Run, assert_one_line_error
from tests.ops.pristine_pg import pristine_cluster


@logged_execution(engine="orchestrator", agent_id="agent.id", user_id="user")
def _run_agent(agent: dict[str, str], user: str) -> dict[str, Any]:
    return {"success": True, "stepsCompleted": 2, "stepsFailed": 0, "totalTokensUsed": 50,
            "output": {"ok": True}}


def _database(admin: str, name: str | None = None) -> str:
    name = name or f"instr_roles_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def _as(url: str, role: str) -> str:
    return url.replace("postgres@", f"{role}:pw-{role}@", 1)


def _create_app_role(admin: str) -> str:
    role = f"instr_app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"create role {role} login password 'pw-{role}'")
    return role


def _roles(admin: str) -> set[str]:
    with psycopg.connect(admin) as conn:
        return {str(r[0]) for r in conn.execute(
            "select rolname from pg_roles where rolname !~ '^pg_'").fetchall()}


def _supabase_traces(url: str) -> dict[str, Any]:
    """What a Supabase-mode migration leaves in one database: the auth schema, policies and
    privileges for anon/authenticated/service_role on our tables."""
    with psycopg.connect(url) as conn:
        auth = conn.execute("select count(*) from pg_namespace where nspname = 'auth'"
                            ).fetchone()
        policies = conn.execute(
            "select tablename, policyname from pg_policies where schemaname = 'public' and "
            "roles && %s::name[]", (list(SUPABASE_ROLES),)).fetchall()
        acl = conn.execute(
            "select c.relname, c.relacl::text from pg_class c where c.relnamespace = "
            "'public'::regnamespace and c.relkind in ('r', 'v')").fetchall()
    granted = [(t, a) for t, a in acl if a and any(f"{r}=" in a for r in SUPABASE_ROLES)]
    return {"auth_schema": auth[0] if auth else None, "policies": policies,
            "privileges": granted}


def _write_and_read_as(run: Run, url: str, tmp_path: Path) -> None:
    """The application role records two executions through the SDK and reads them back."""
    instrument.configure(database_url=url, spool_dir=str(tmp_path / "spool"))
    for user in ("u1", "u2"):
        _run_agent({"id": "granted-bot"}, user)
    assert instrument.flush(20), "the application role could not write"
    instrument.shutdown(5)
    tail = run("tail", "--json", "--database-url", url)
    assert tail.code == EXIT_OK, tail.err
    assert sorted(r["user_id"] for r in tail.json_lines()) == ["u1", "u2"]
    stats = run("stats", "--json", "--database-url", url)
    assert stats.code == EXIT_OK, stats.err
    assert [a["runs"] for a in stats.json()["agents"]] == [2]


@pytest.fixture
def cluster() -> Iterator[str]:
    with pristine_cluster() as admin:
        yield admin


def test_plain_postgres_gets_no_role_and_an_app_role_works_after_grant(
        run: Run, db_url: str, cluster: str, tmp_path: Path) -> None:
    app = _create_app_role(cluster)
    url = _database(cluster, "app")
    before = _roles(cluster)
    got = run("migrate", "--database-url", url, "--grant", app)
    assert got.code == EXIT_OK, got.err
    assert "Plain PostgreSQL: no Supabase role" in got.out
    assert f"Granted {app}" in got.out
    assert _roles(cluster) == before == {"postgres", app}  # nothing cluster-wide
    assert _supabase_traces(url) == {"auth_schema": 0, "policies": [], "privileges": []}
    _write_and_read_as(run, _as(url, app), tmp_path)
    # migrating again (nothing to do) keeps it so
    assert run("migrate", "--database-url", url).code == EXIT_OK
    assert _roles(cluster) == {"postgres", app}


def test_supabase_flag_creates_the_roles_and_later_migrations_keep_supabase_mode(
        run: Run, db_url: str, cluster: str) -> None:
    first = _database(cluster)
    got = run("migrate", "--database-url", first, "--supabase")
    assert got.code == EXIT_OK, got.err
    assert "Supabase mode (created role anon, role authenticated, role service_role, schema " \
        "auth)" in got.out
    assert set(SUPABASE_ROLES) <= _roles(cluster)
    traces = _supabase_traces(first)
    assert traces["auth_schema"] == 1
    assert traces["policies"]
    assert traces["privileges"]
    # where the roles exist, a plain `migrate` keeps Supabase's grants and policies
    second = _database(cluster)
    got = run("migrate", "--database-url", second)
    assert got.code == EXIT_OK
    assert "Supabase mode (created schema auth)" in got.out
    assert _supabase_traces(second)["policies"]


def test_an_app_role_without_grant_is_refused_and_with_grant_writes(
        run: Run, db_url: str, pg_url: str, pg_admin_url: str, tmp_path: Path) -> None:
    """On the shared server (Supabase's roles exist there), forced plain mode."""
    app = _create_app_role(pg_admin_url)
    try:
        got = run("migrate", "--database-url", pg_url, "--no-supabase")
        assert got.code == EXIT_OK, got.err
        assert "Plain PostgreSQL" in got.out
        assert _supabase_traces(pg_url) == {"auth_schema": 0, "policies": [], "privileges": []}
        # the symptom, now explained in one line
        refused = run("tail", "--database-url", _as(pg_url, app))
        assert_one_line_error(refused, EXIT_PROBLEM, "permission denied")
        # the roles exist on this server, but a database migrated plain stays plain
        got = run("migrate", "--database-url", pg_url, "--grant", app)
        assert got.code == EXIT_OK, got.err
        assert "Plain PostgreSQL" in got.out
        assert f"Granted {app}" in got.out
        _write_and_read_as(run, _as(pg_url, app), tmp_path)
        # a table re-created by a later migrate (as an upgrade adds one) keeps the grant
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("drop table usage_ledger")
        got = run("migrate", "--database-url", pg_url, "--no-supabase")
        assert got.code == EXIT_OK, got.err
        assert "re-created table usage_ledger" in got.out, got.out
        assert f"Granted {app}" in got.out
        with psycopg.connect(_as(pg_url, app)) as conn:
            assert conn.execute("select count(*) from usage_ledger").fetchone() == (0,)
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f"drop owned by {app}")
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"drop role {app}")


def test_grant_names_a_missing_role_and_applies_only_to_postgres(
        run: Run, db_url: str, pg_url: str) -> None:
    got = run("migrate", "--database-url", pg_url, "--grant", "no_such_role_here")
    assert_one_line_error(got, EXIT_USAGE, "role 'no_such_role_here' does not exist",
                          "CREATE ROLE")
    got = run("migrate", "--grant", "app")
    assert_one_line_error(got, EXIT_USAGE, "apply to PostgreSQL", "sqlite")
