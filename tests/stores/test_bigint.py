"""Token counts of 2**31 and more land (schema v5 widened Postgres's integer columns)."""

from __future__ import annotations

import psycopg

from instrument.record import ExecutionRecord
from instrument.stores import migrations
from instrument.stores.postgres.store import PostgresStore, ingest_json
from tests.stores.conftest import Store, rows
from tests.stores.records import ALL_WRITERS, agentkit

BIG_IN, BIG_OUT = 2_500_000_000, 1_000_000_000
BIG_TOTAL = BIG_IN + BIG_OUT  # 3.5e9 > 2**31 - 1


def _big(i: int) -> ExecutionRecord:
    return agentkit(i, tokens=(BIG_IN, BIG_OUT))


def test_counts_past_2_31_land_in_all_four_tables(store: Store) -> None:
    batch = [_big(1), _big(2)]
    assert store.apply(batch, ALL_WRITERS).applied == 2
    executions = rows(store, "agent_executions")
    assert [(r["input_tokens"], r["output_tokens"], r["total_tokens"]) for r in executions] == [
        (BIG_IN, BIG_OUT, BIG_TOTAL)] * 2
    logs = rows(store, "agent_logs")
    assert [(r["run_tokens"], r["user_credits_used"]) for r in logs] == [
        (BIG_TOTAL, BIG_TOTAL // 1000)] * 2
    [stats] = rows(store, "agent_stats")
    assert (stats["total_tokens"], stats["token_run_count"]) == (2 * BIG_TOTAL, 2)
    [intensity] = rows(store, "agent_intensity_metrics")
    assert (intensity["total_tokens_used"], intensity["peak_tokens_single_run"],
            intensity["total_input_tokens"]) == (2 * BIG_TOTAL, BIG_TOTAL, 2 * BIG_IN)


def test_a_v4_database_is_widened_in_place(pg_url: str) -> None:
    """Rows written at v4 keep their values; the columns become bigint; big counts land."""
    with psycopg.connect(pg_url) as conn, conn.transaction():
        conn.execute(migrations._BOOTSTRAP["postgres"].encode())
        for m in migrations.migrations("postgres"):
            if m.version <= 4:
                conn.execute(m.sql.encode())
                conn.execute("insert into instrument_schema_version (version, name) "
                             "values (%s, %s)", (m.version, m.name))
        old = agentkit(1)  # through v4's own ingest function
        conn.execute("select instrument_ingest(%s::jsonb, %s::text[])",
                     (ingest_json([old], capture_content=False), list(ALL_WRITERS)))
    store = PostgresStore(pg_url)
    assert store.schema_version() == 4
    assert store.migrate() == migrations.EXPECTED_VERSION
    with psycopg.connect(pg_url) as conn:
        types = dict(conn.execute(
            "select table_name || '.' || column_name, data_type from information_schema.columns"
            " where table_schema = 'public' and column_name in ('input_tokens', "
            "'output_tokens', 'total_tokens', 'run_tokens', 'user_credits_used') and "
            "table_name in ('agent_executions', 'agent_logs')").fetchall())
    assert types == {
        "agent_executions.input_tokens": "bigint", "agent_executions.output_tokens": "bigint",
        "agent_executions.total_tokens": "bigint", "agent_logs.run_tokens": "bigint",
        "agent_logs.user_credits_used": "bigint"}
    assert store.apply([_big(2)], ALL_WRITERS).applied == 1
    assert sorted(r["total_tokens"] for r in rows(store, "agent_executions")) == [
        3200, BIG_TOTAL]
    assert store.migrate() == migrations.EXPECTED_VERSION  # idempotent
    store.close()
