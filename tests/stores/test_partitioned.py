"""The opt-in monthly-partitioned Postgres layout (issue 18 item 15): `instrument migrate
--partition-by-month` converts a database holding rows, ingest stays exactly once through every
writer, a row no month covers lands in DEFAULT, a month goes with one statement while the other
months and the aggregates stay, `instrument prune` drops whole months, and tail/show still read."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from instrument.cli import EXIT_OK, EXIT_USAGE
from instrument.record import ExecutionRecord
from instrument.stores.postgres.store import PostgresStore
from tests.cli.conftest import Run, run
from tests.integration.supabase_support import make_record
from tests.stores.conftest import rows

__all__ = ["run"]  # the fixture, imported

WRITERS = ("executions", "logs", "stats", "intensity", "usage_ledger")
NOW = datetime.now(UTC)


def _at(when: datetime, agent: str = "agent-1", **fields: Any) -> ExecutionRecord:
    record = make_record(agent, user_id="user-a", tenant_id="acme", owner_id="user-a", **fields)
    return record.model_copy(update={"started_at": when,
                                     "completed_at": when + timedelta(seconds=1.5)})


def _months_ago(n: int, day: int = 10) -> datetime:
    first = NOW.replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    for _ in range(n):
        first = (first - timedelta(days=1)).replace(day=1)
    return first.replace(day=day)


def _sql(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, args or None)
        return cur.fetchall() if cur.description else []


def _aggregates(store: PostgresStore) -> dict[str, Any]:
    return {t: rows(store, t, order) for t, order in (
        ("agent_stats", "agent_id"), ("usage_ledger", "tenant_id, user_id, agent_id, day"),
        ("agent_intensity_metrics", "agent_id"), ("instrument_applied", "execution_id"))}


def _partitions(url: str, table: str) -> list[str]:
    return [str(r[0]) for r in _sql(
        url, "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid "
        "where i.inhparent = %s::regclass and c.relkind = 'r' order by 1", f"public.{table}")]


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_url)
    store.migrate()
    yield store
    store.close()


@pytest.fixture
def converted(pg_store: PostgresStore, run: Run) -> PostgresStore:
    """A database with rows in three past months, plus an index, policy, trigger and grant of
    the application's own, converted by the CLI."""
    url = pg_store.url
    old = [_at(_months_ago(m, day=d)) for m in (6, 3, 1) for d in (3, 20)]
    assert pg_store.apply(old, WRITERS).applied == 6
    _sql(url, "create index app_exec_model_idx on public.agent_executions (model)")
    _sql(url, "create policy app_read_public on public.agent_executions for select to public "
              "using (agent_id is not null)")
    _sql(url, "create function public.app_touch() returns trigger language plpgsql as "
              "$$ begin new.status_message := coalesce(new.status_message, 'ok'); "
              "return new; end $$")
    _sql(url, "create trigger app_touch before insert on public.agent_logs for each row "
              "execute function public.app_touch()")
    _sql(url, "grant select on public.agent_logs to public")
    pg_store._test_before = {  # type: ignore[attr-defined]
        "executions": rows(pg_store, "agent_executions", "id"),
        "logs": rows(pg_store, "agent_logs", "id"),
        "aggregates": _aggregates(pg_store),
        "policies": _sql(url, "select tablename, policyname, cmd, roles::text, qual, with_check "
                              "from pg_policies where tablename in ('agent_executions', "
                              "'agent_logs') order by 1, 2"),
        "indexes": _sql(url, "select indexname from pg_indexes where tablename in "
                             "('agent_executions', 'agent_logs') order by 1"),
    }
    result = run("migrate", "--partition-by-month", "--database-url", url)
    assert result.code == EXIT_OK, result.err
    assert "partitioned by month" in result.out
    return pg_store


def test_conversion_keeps_rows_indexes_policies_grants_and_triggers(
        converted: PostgresStore) -> None:
    url, before = converted.url, converted._test_before  # type: ignore[attr-defined]
    kinds = dict(_sql(url, "select relname, relkind::text from pg_class where relname in "
                           "('agent_executions', 'agent_logs')"))
    assert kinds == {"agent_executions": "p", "agent_logs": "p"}
    assert rows(converted, "agent_executions", "id") == before["executions"]
    assert rows(converted, "agent_logs", "id") == before["logs"]
    assert _aggregates(converted) == before["aggregates"]
    policies = _sql(url, "select tablename, policyname, cmd, roles::text, qual, with_check from "
                         "pg_policies where tablename in ('agent_executions', 'agent_logs') "
                         "order by 1, 2")
    assert policies == before["policies"]
    assert ("agent_executions", "app_read_public") in [p[:2] for p in policies]
    # every index of the parents is back (unique ones now include the partition key)
    indexes = [r[0] for r in _sql(url, "select indexname from pg_indexes where tablename in "
                                       "('agent_executions', 'agent_logs') order by 1")]
    assert indexes == [r[0] for r in before["indexes"]]
    keys = dict(_sql(url, "select conrelid::regclass::text, pg_get_constraintdef(oid) from "
                          "pg_constraint where contype = 'p' and conrelid in "
                          "('public.agent_executions'::regclass, 'public.agent_logs'::regclass)"))
    assert keys == {"agent_executions": "PRIMARY KEY (id, started_at)",
                    "agent_logs": "PRIMARY KEY (id, created_at)"}
    assert _sql(url, "select has_table_privilege('public', 'public.agent_logs', 'select'), "
                     "relrowsecurity from pg_class where oid = 'public.agent_logs'::regclass"
                ) == [(True, True)]
    assert _sql(url, "select count(*) from pg_trigger where tgname = 'app_touch' and "
                     "tgrelid = 'public.agent_logs'::regclass") == [(1,)]
    # a month for each month present (log rows: written today), this one and 3 ahead, and
    # DEFAULT; each locked down
    ahead = {(NOW.replace(day=1) + timedelta(days=32 * i)).strftime("p%Y_%m") for i in range(4)}
    present = {_months_ago(m).strftime("p%Y_%m") for m in (6, 3, 1)}
    for table, months in (("agent_executions", present | ahead), ("agent_logs", ahead)):
        parts = _partitions(url, table)
        assert {p.removeprefix(f"{table}_") for p in parts} == months | {"default"}, parts
    assert _sql(url, "select bool_and(c.relrowsecurity), bool_and(coalesce(not "
                     "has_table_privilege('public', c.oid, 'select'), true)) from pg_inherits i "
                     "join pg_class c on c.oid = i.inhrelid where c.relkind = 'r'"
                ) == [(True, True)]
    # migrate again: nothing converted twice, the same partitions, nothing missing for doctor
    from instrument.cli import main
    from instrument.stores.migrations import missing_objects_postgres

    parts = _partitions(url, "agent_executions")
    assert main(["migrate", "--database-url", url]) == EXIT_OK
    assert _partitions(url, "agent_executions") == parts
    with psycopg.connect(url) as conn:
        assert missing_objects_postgres(conn) == []


def test_ingest_is_exactly_once_and_unmatched_months_land_in_default(
        converted: PostgresStore) -> None:
    url = converted.url
    batch = [_at(NOW - timedelta(hours=i), agent=f"agent-{i % 3}") for i in range(40)]
    ancient = _at(datetime(2019, 3, 4, 5, 6, tzinfo=UTC), agent="agent-old")
    batch.append(ancient)
    first = converted.apply(batch, WRITERS)
    assert (first.applied, first.duplicates) == (41, 0)
    snapshot = (rows(converted, "agent_executions", "id"), rows(converted, "agent_logs", "id"),
                _aggregates(converted))
    again = converted.apply(batch, WRITERS)  # a retry of the same batch changes nothing
    assert (again.applied, again.duplicates) == (0, 41)
    assert (rows(converted, "agent_executions", "id"), rows(converted, "agent_logs", "id"),
            _aggregates(converted)) == snapshot
    where = _sql(url, "select tableoid::regclass::text from public.agent_executions "
                      "where id = %s", ancient.execution_id)
    assert where == [("agent_executions_default",)]
    # a partition created later for that month takes its rows out of DEFAULT
    assert _sql(url, "select public.instrument_create_month_partition('agent_executions', "
                     "'2019-03-01')") == [(True,)]
    assert _sql(url, "select tableoid::regclass::text from public.agent_executions "
                     "where id = %s", ancient.execution_id) == [("agent_executions_p2019_03",)]


def test_a_month_drops_with_one_statement_and_the_rest_stays(converted: PostgresStore) -> None:
    url = converted.url
    month = _months_ago(3).strftime("agent_executions_p%Y_%m")
    aggregates = _aggregates(converted)
    others = [r for r in rows(converted, "agent_executions", "id")
              if r["started_at"].strftime("agent_executions_p%Y_%m") != month]
    _sql(url, f"drop table public.{month}")
    assert rows(converted, "agent_executions", "id") == others
    assert len(others) == 4
    assert _aggregates(converted) == aggregates


def test_prune_drops_whole_months_then_batches_the_rest(converted: PostgresStore,
                                                        run: Run) -> None:
    url = converted.url
    recent = [_at(NOW - timedelta(days=1, minutes=i)) for i in range(3)]
    converted.apply(recent, WRITERS)
    # log rows written when their executions ran (the old ones land in DEFAULT, then each
    # month's partition takes its rows out of it), but one written today (a late replay)
    late = str(rows(converted, "agent_executions", "started_at")[0]["id"])
    _sql(url, "update public.agent_logs l set created_at = e.started_at from "
              "public.agent_executions e where e.id = l.execution_id and e.id <> %s", late)
    for m in (6, 3, 1):
        _sql(url, "select public.instrument_create_month_partition('agent_logs', %s)",
             _months_ago(m).date())
    assert _sql(url, "select count(*) from public.agent_logs_default") == [(0,)]
    aggregates = _aggregates(converted)
    from instrument.stores.prune import prune

    report = prune(converted, NOW - timedelta(days=45))
    dropped = set(report.months_dropped)
    assert {_months_ago(6).strftime("agent_executions_p%Y_%m"),
            _months_ago(3).strftime("agent_executions_p%Y_%m"),
            _months_ago(3).strftime("agent_logs_p%Y_%m")} <= dropped
    assert report.deleted == {"agent_executions": 4, "agent_logs": 4}
    assert report.batches == 0  # whole months only: nothing older in this month or DEFAULT
    assert _sql(url, "select count(*) from public.agent_logs where execution_id = %s",
                late) == [(0,)]  # went with its execution although its month stays
    left = rows(converted, "agent_executions", "started_at")
    assert all(r["started_at"] >= NOW - timedelta(days=45) for r in left)
    assert {str(r["id"]) for r in left} >= {str(r.execution_id) for r in recent}
    assert _aggregates(converted) == aggregates  # stats, intensity, usage_ledger, ledger
    assert not set(_partitions(url, "agent_executions")) & dropped
    # the CLI on a partitioned layout: prune, tail and show
    pruned = run("prune", "--older-than", "30d", "--database-url", url)
    assert pruned.code == EXIT_OK, pruned.err
    tail = run("tail", "--database-url", url, "--json")
    assert tail.code == EXIT_OK, tail.err
    assert {str(r.execution_id) for r in recent} <= {str(x.get("id", x.get("execution_id")))
                                                    for x in tail.json_lines()}
    show = run("show", str(recent[0].execution_id), "--database-url", url)
    assert show.code == EXIT_OK, show.err
    assert str(recent[0].execution_id) in show.out


def test_partition_by_month_is_postgres_only(run: Run, tmp_path: Any) -> None:
    result = run("migrate", "--partition-by-month", "--database-url",
                 f"sqlite:///{tmp_path / 'x.db'}")
    assert result.code == EXIT_USAGE
    assert "applies to PostgreSQL" in result.err
