"""Upgrading a populated schema v2 database to v3 keeps its ledger protecting re-delivery.

v2 kept one ``instrument_ledger`` row per (execution, writer); v3 folds them into one
``instrument_applied`` row per execution (a writer bitmask). A record applied (fully or for a
subset of writers) before the upgrade must, re-delivered after it, apply only what is missing.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from instrument.stores import migrations
from instrument.stores.postgres.store import ingest_json
from tests.stores.conftest import Store, make_store, rows
from tests.stores.records import ALL_WRITERS, agentkit, orchestrator


def _v2_schema(store: Store) -> None:
    """The schema exactly as v2 shipped it: files 0001 and 0002 and their version rows."""
    v2 = [m for m in migrations.migrations(store.dialect) if m.version <= 2]
    if store.dialect == "sqlite":
        conn = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[union-attr]
        conn.executescript(migrations._BOOTSTRAP["sqlite"])
        for m in v2:
            conn.executescript(m.sql)
            conn.execute("insert into instrument_schema_version (version, name) values (?, ?)",
                         (m.version, m.name))
        conn.close()
        return
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:  # type: ignore[union-attr]
        conn.execute(migrations._BOOTSTRAP["postgres"].encode())
        for m in v2:
            conn.execute(m.sql.encode())
            conn.execute("insert into instrument_schema_version (version, name) values (%s, %s)",
                         (m.version, m.name))


def _counts(store: Store) -> dict[str, int]:
    stats = {r["agent_id"]: r["run_count"] for r in rows(store, "agent_stats")}
    intensity = {r["agent_id"]: r["total_executions"]
                 for r in rows(store, "agent_intensity_metrics")}
    return {"executions": len(rows(store, "agent_executions")),
            "logs": len(rows(store, "agent_logs")),
            "stats": sum(stats.values()), "intensity": sum(intensity.values())}


def test_a_populated_v2_database_upgrades_and_redelivery_applies_nothing_twice(
        dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    store = make_store(dialect, request, tmp_path, migrate=False)
    _v2_schema(store)
    assert store.schema_version() == 2
    full = orchestrator(1)                                  # applied by every writer under v2
    partial = agentkit(1).model_copy(update={"writers": ("executions",)})  # one writer under v2
    if dialect == "postgres":
        import psycopg

        # v2's own ingest function (0001) writes the v2 ledger and the effects.
        with psycopg.connect(store.url, autocommit=True) as conn:  # type: ignore[union-attr]
            row = conn.execute("select instrument_ingest(%s::jsonb, %s::text[])",
                               (ingest_json([full, partial], capture_content=False),
                                list(ALL_WRITERS))).fetchone()
        assert row is not None
        assert row[0] == {"applied": 2, "duplicates": 0}
        before = {"executions": 2, "logs": 1, "stats": 1, "intensity": 1}
    else:
        # v2's SQLite ledger rows, without their effects: anything the upgraded ledger did not
        # keep would show up below as a row or a count the re-delivery added.
        conn = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[union-attr]
        conn.executemany("insert into instrument_ledger (execution_id, writer) values (?, ?)",
                         [(str(full.execution_id), w) for w in ALL_WRITERS]
                         + [(str(partial.execution_id), "executions")])
        conn.close()
        before = {"executions": 0, "logs": 0, "stats": 0, "intensity": 0}
    assert _counts(store) == before

    assert store.migrate() == migrations.expected_version(dialect) == migrations.EXPECTED_VERSION
    ledger = {r["execution_id"]: r["writers"] for r in rows(store, "instrument_applied")}
    assert ledger == {str(full.execution_id): 0b1111, str(partial.execution_id): 0b0001}

    # Re-delivery of both with every writer: only the partial record's missing writers apply.
    result = store.apply([full, agentkit(1)], ALL_WRITERS)
    assert (result.applied, result.duplicates) == (1, 1)
    after = {k: v + (0 if k == "executions" else 1) for k, v in before.items()}
    assert _counts(store) == after
    # ... and once more: nothing at all.
    result = store.apply([agentkit(1), full], ALL_WRITERS)
    assert (result.applied, result.duplicates) == (0, 2)
    assert _counts(store) == after
    ledger = {r["execution_id"]: r["writers"] for r in rows(store, "instrument_applied")}
    assert set(ledger.values()) == {0b1111}
    if dialect == "postgres":  # the v2 shape stays readable, one row per applied writer
        assert len(rows(store, "instrument_ledger")) == 8
    store.close()


def test_the_ledger_view_still_accepts_v2_rows(pg_url: str, request: pytest.FixtureRequest,
                                               tmp_path: Path) -> None:
    """A hand-written v2 ledger row (execution, writer) sets that writer's bit."""
    store = make_store("postgres", request, tmp_path)
    rec = orchestrator(7)
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("insert into instrument_ledger (execution_id, writer) values (%s, 'stats')",
                     (str(rec.execution_id),))
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("insert into instrument_ledger (execution_id, writer) values "
                         "(%s, 'bogus')", (str(rec.execution_id),))
    assert store.apply([rec], ALL_WRITERS).applied == 1
    assert rows(store, "agent_stats") == []  # the stats effect counted as applied already
    assert len(rows(store, "agent_executions")) == 1
    store.close()


def test_a_dropped_ledger_is_rebuilt_by_migrate(
        dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Repair re-runs the file that owns a missing table and every later one."""
    from tests.stores.conftest import execute

    store = make_store(dialect, request, tmp_path)
    rec = orchestrator(3)
    store.apply([rec], ALL_WRITERS)
    execute(store, "DROP TABLE agent_stats")
    store.close()
    fresh = make_store(dialect, request, tmp_path)  # migrate() repairs
    assert fresh.apply([rec], ALL_WRITERS).duplicates == 1
    assert fresh.apply([orchestrator(4)], ALL_WRITERS).applied == 1
    assert [r["run_count"] for r in rows(fresh, "agent_stats")] == [1]
    fresh.close()


def test_concurrent_deliveries_with_different_writer_subsets_apply_each_effect_once(
        store: Store) -> None:
    """Every subset of the writers, delivered at once from several threads (on Postgres, over
    separate connections): each (execution, writer) effect lands exactly once."""
    import itertools
    import threading

    records = [orchestrator(i) for i in range(40)]
    subsets = [c for n in range(1, 5) for c in itertools.combinations(ALL_WRITERS, n)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(subsets))

    def deliver(writers: tuple[str, ...]) -> None:
        try:
            barrier.wait()
            batch = [r.model_copy(update={"writers": writers}) for r in records]
            store.apply(batch, ALL_WRITERS)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(s,)) for s in subsets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    n = len(records)
    assert _counts(store) == {"executions": n, "logs": n, "stats": n, "intensity": n}
    assert {r["writers"] for r in rows(store, "instrument_applied")} == {0b1111}
    assert store.apply(records, ALL_WRITERS).duplicates == n
