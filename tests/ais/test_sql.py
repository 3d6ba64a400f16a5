"""Concurrent writers, configuration from the table, creation score and dynamic ranges on real
SQLite and PostgreSQL, each checked against the pure Python reference."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from instrument import ais
from instrument.record import ExecutionRecord
from instrument.stores.reference.intensity import agent_scores, stored_values
from instrument.stores.sqlite.intensity import (
    load_config_sqlite,
    save_config_sqlite,
    set_creation_score_sqlite,
)
from tests.ais.dbsupport import (
    COMPARED,
    aggregates_from_row,
    pg_apply,
    pg_migrated,
    rows,
    sqlite_apply,
    sqlite_connect,
    sqlite_migrated,
)
from tests.ais.histories import (
    assert_aggregates_close,
    assert_values_close,
    random_history,
)

CUSTOM = ais.AISConfig.from_mapping({
    "range.duration_ms": [0, 5000],
    "weight.token": 0.1, "weight.execution": 0.4, "weight.plugin": 0.2,
    "weight.workflow": 0.2, "weight.memory": 0.1,
    "blend.creation": 0.5, "blend.execution": 0.5,
    "min_executions_for_score": 2,
    "growth.tiers": [{"name": "watch", "threshold": 10, "adjustment": 0.5}],
    "creation.default_score": 4.0,
})


def _history(n: int, seed: int) -> list[ExecutionRecord]:
    return random_history(n, seed)


def _with_ids(history: list[ExecutionRecord]) -> list[ExecutionRecord]:
    """Distinct random ids/timestamps, so histories from `find` do not collide."""
    out = []
    for i, r in enumerate(history):
        out.append(r.model_copy(update={
            "execution_id": uuid.uuid4(),
            "completed_at": r.completed_at + timedelta(seconds=i % 5)}))
    return out


def _check(history: Sequence[ExecutionRecord], got: dict[str, dict[str, Any]],
           config: ais.AISConfig | None = None, creation: dict[str, float] | None = None
           ) -> None:
    want = ais.aggregate(history)
    assert set(got) >= set(want)
    for agent, row in got.items():
        agg = want.get(agent, ais.Aggregates())
        assert_aggregates_close(aggregates_from_row(row), agg)
        cs = (creation or {}).get(agent)
        assert_values_close(row, stored_values(agg, cs, config), COMPARED)


def _run_concurrently(parts: Sequence[Sequence[ExecutionRecord]],
                      apply_part: Callable[[int, Sequence[ExecutionRecord]], None]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(len(parts))

    def work(i: int) -> None:
        try:
            start.wait(timeout=30)
            apply_part(i, parts[i])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def _split(history: Sequence[ExecutionRecord], writers: int, batch: int
           ) -> list[list[list[ExecutionRecord]]]:
    parts = [list(history[i::writers]) for i in range(writers)]
    return [[p[j:j + batch] for j in range(0, len(p), batch)] for p in parts]


# -- SQLite -------------------------------------------------------------------------------------

def test_sqlite_concurrent_writers_equal_whole_history(tmp_path: Path) -> None:
    db = tmp_path / "ais.db"
    sqlite_migrated(db).close()
    history = _with_ids(_history(40, 1) + _history(40, 2) + _history(40, 3))
    parts = _split(history, 4, 3)

    def apply_part(i: int, batches: Sequence[Any]) -> None:
        conn = sqlite_connect(db)
        try:
            for b in batches:
                sqlite_apply(conn, b)
        finally:
            conn.close()

    _run_concurrently(parts, apply_part)
    conn = sqlite_connect(db)
    try:
        _check(history, rows(conn))
    finally:
        conn.close()


def test_sqlite_uses_the_ais_config_table(tmp_path: Path) -> None:
    conn = sqlite_migrated(tmp_path / "ais.db")
    try:
        assert load_config_sqlite(conn) == ais.AISConfig()
        conn.execute("BEGIN")
        save_config_sqlite(conn, CUSTOM)
        conn.execute("COMMIT")
        assert load_config_sqlite(conn) == CUSTOM
        history = _with_ids(_history(30, 4))
        for i in range(0, len(history), 7):
            sqlite_apply(conn, history[i:i + 7])
        _check(history, rows(conn), CUSTOM)
        assert {r["creation_score"] for r in rows(conn).values()} == {4.0}
    finally:
        conn.close()


def test_sqlite_creation_score(tmp_path: Path) -> None:
    conn = sqlite_migrated(tmp_path / "ais.db")
    try:
        history = [r for r in _with_ids(_history(30, 5)) if r.agent_id == "agent-a"]
        sqlite_apply(conn, history)
        conn.execute("BEGIN IMMEDIATE")
        set_creation_score_sqlite(conn, "agent-a", 8.5)
        set_creation_score_sqlite(conn, "agent-new", 2.0, user_id="u")
        conn.execute("COMMIT")
        got = rows(conn)
        _check(history, got, creation={"agent-a": 8.5, "agent-new": 2.0})
        assert got["agent-new"]["combined_score"] == 2.0
        assert got["agent-new"]["intensity_multiplier"] == pytest.approx(1.2)
        with pytest.raises(ValueError, match="11"):
            set_creation_score_sqlite(conn, "agent-a", 11)
        line = agent_scores(got["agent-a"])
        assert line["runs"] == len(history)
        assert line["combined_score"] == got["agent-a"]["combined_score"]
    finally:
        conn.close()


def test_sqlite_seed_equals_code_defaults(tmp_path: Path) -> None:
    conn = sqlite_migrated(tmp_path / "ais.db")
    try:
        seeded = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM ais_config")}
        assert seeded == ais.AISConfig().to_mapping()
    finally:
        conn.close()


# -- PostgreSQL ---------------------------------------------------------------------------------

@pytest.mark.postgres
def test_postgres_concurrent_writers_equal_whole_history(pg_url: str) -> None:
    pg_migrated(pg_url).close()
    history = _with_ids(_history(40, 1) + _history(40, 2) + _history(40, 3))
    parts = _split(history, 4, 3)

    def apply_part(i: int, batches: Sequence[Any]) -> None:
        import psycopg

        with psycopg.connect(pg_url, autocommit=True) as conn:
            for b in batches:
                pg_apply(conn, b)

    _run_concurrently(parts, apply_part)
    conn = pg_migrated(pg_url)
    try:
        _check(history, rows(conn))
    finally:
        conn.close()


@pytest.mark.postgres
def test_postgres_seed_config_creation_score_and_ranges(pg_url: str) -> None:
    from psycopg.types.json import Jsonb

    conn = pg_migrated(pg_url)
    try:
        seeded = dict(conn.execute("select key, value from ais_config").fetchall())
        assert seeded == ais.AISConfig().to_mapping()
        for key, value in CUSTOM.to_mapping().items():
            conn.execute("update ais_config set value = %s where key = %s", [Jsonb(value), key])
        history = _with_ids(_history(40, 6) + _history(30, 7))
        for i in range(0, len(history), 9):
            pg_apply(conn, history[i:i + 9])
        _check(history, rows(conn), CUSTOM)
        conn.execute("select instrument_set_creation_score('agent-a', 8.5)")
        conn.execute("select instrument_set_creation_score('agent-new', 2)")
        _check(history, rows(conn), CUSTOM, {"agent-a": 8.5, "agent-new": 2.0})
        with pytest.raises(Exception, match="between 0 and 10"):
            conn.execute("select instrument_set_creation_score('agent-a', 11)")
        # dynamic ranges: SQL and Python agree (percentile_cont over the same per-agent values)
        got = {k: (lo, hi) for k, lo, hi in
               conn.execute("select * from instrument_ais_dynamic_ranges()").fetchall()}
        want = ais.dynamic_ranges(ais.aggregate(history).values(), CUSTOM)
        assert want, "the fleet has enough executions for dynamic ranges"
        assert set(got) == set(want)
        for key, (lo, hi) in want.items():
            assert got[key][0] == pytest.approx(lo, abs=1e-9)
            assert got[key][1] == pytest.approx(hi, abs=1e-9)
    finally:
        conn.close()


@pytest.mark.postgres
def test_postgres_ingest_applies_intensity_exactly_once(pg_url: str) -> None:
    """Through the stores' instrument_ingest: redelivery changes nothing."""
    from psycopg.types.json import Jsonb

    conn = pg_migrated(pg_url)
    try:
        history = _with_ids(_history(30, 8))
        batch = Jsonb([r.to_json_dict() for r in history])
        conn.execute("select instrument_ingest(%s, array['intensity'])", [batch])
        conn.execute("select instrument_ingest(%s, array['intensity'])", [batch])
        _check(history, rows(conn))
    finally:
        conn.close()


def test_dynamic_ranges_from_stored_rows_equal_from_history(tmp_path: Path) -> None:
    conn = sqlite_migrated(tmp_path / "ais.db")
    try:
        history = _with_ids(_history(50, 9))
        sqlite_apply(conn, history)
        from_rows = ais.dynamic_ranges(rows(conn).values())
        from_history = ais.dynamic_ranges(ais.aggregate(history).values())
        assert from_rows
        assert from_rows.keys() == from_history.keys()
        for key, (lo, hi) in from_history.items():
            assert from_rows[key] == pytest.approx((lo, hi), abs=1e-9)
    finally:
        conn.close()
