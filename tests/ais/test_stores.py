"""The intensity writer through the real stores: exactly once per execution_id, and RLS."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from instrument.record import ExecutionRecord
from instrument.stores import open_store
from tests.ais.dbsupport import COMPARED, aggregates_from_row, expected_rows, pg_migrated
from tests.ais.histories import assert_aggregates_close, assert_values_close, random_history


def _fresh(n: int, seed: int) -> list[ExecutionRecord]:
    return [r.model_copy(update={"execution_id": uuid.uuid4()}) for r in random_history(n, seed)]


def _check(history: list[ExecutionRecord], got: dict[str, dict[str, Any]]) -> None:
    want = expected_rows(history)
    assert set(got) == set(want)
    for agent, row in got.items():
        assert_aggregates_close(aggregates_from_row(row), want[agent]["aggregates"])
        assert_values_close(row, want[agent], COMPARED)


def test_sqlite_store_applies_intensity_once(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        store.migrate()
        history = _fresh(60, 11)
        store.apply(history[:40], ["intensity"])
        store.apply(history[20:], ["intensity"])  # 20 re-delivered
        store.apply(history, ["intensity"])  # all re-delivered
        _check(history, {r["agent_id"]: r for r in store.intensity_metrics()})
    finally:
        store.close()


@pytest.mark.postgres
def test_postgres_store_applies_intensity_once(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        store.migrate()
        history = _fresh(60, 12)
        store.apply(history[:40], ["intensity"])
        store.apply(history[20:], ["intensity"])
        store.apply(history, ["intensity"])
        _check(history, {r["agent_id"]: r for r in store.intensity_metrics()})
    finally:
        store.close()


def _as_authenticated(conn: Any, statement: str) -> None:
    with conn.transaction():
        conn.execute("set local role authenticated")
        conn.execute(statement)


@pytest.mark.postgres
def test_postgres_rls_users_read_only_their_agents(pg_url: str) -> None:
    import psycopg

    conn = pg_migrated(pg_url)
    try:
        conn.execute("select instrument_set_creation_score('mine', 3)")
        conn.execute("select instrument_set_creation_score('theirs', 4)")
        me, other = uuid.uuid4(), uuid.uuid4()
        conn.execute("update agent_intensity_metrics set user_id = %s where agent_id = 'mine'",
                     [str(me)])
        conn.execute("update agent_intensity_metrics set user_id = %s where agent_id = 'theirs'",
                     [str(other)])
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)",
                         [f'{{"sub": "{me}"}}'])
            seen = [r[0] for r in conn.execute("select agent_id from agent_intensity_metrics")]
            assert seen == ["mine"]
            assert conn.execute("select count(*) from ais_config").fetchone() == (54,)
        for statement in (
            "update agent_intensity_metrics set creation_score = 9",
            "insert into agent_intensity_metrics (agent_id) values ('x')",
            "update ais_config set value = '1'",
            "select instrument_apply_intensity('[]'::jsonb)",
            "select instrument_set_creation_score('mine', 9)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                _as_authenticated(conn, statement)
        with conn.transaction():
            conn.execute("set local role service_role")
            conn.execute("select instrument_set_creation_score('mine', 9)")
        assert conn.execute("select creation_score from agent_intensity_metrics "
                            "where agent_id = 'mine'").fetchone() == (9.0,)
    finally:
        conn.close()
