"""The SQL paths (SQLite writer, PostgreSQL functions) agree with ais.py to 1e-9."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instrument.record import ExecutionRecord
from tests.ais.dbsupport import (
    COMPARED,
    aggregates_from_row,
    expected_rows,
    pg_apply,
    pg_migrated,
    rows,
    sqlite_apply,
    sqlite_migrated,
)
from tests.ais.histories import assert_aggregates_close, assert_values_close, histories

DB_SETTINGS = settings(max_examples=30, deadline=None,
                       suppress_health_check=[HealthCheck.function_scoped_fixture])


def _batches(history: Sequence[ExecutionRecord], data: st.DataObject
             ) -> list[list[ExecutionRecord]]:
    shuffled = data.draw(st.permutations(history))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(history)), max_size=6)))
    return [list(shuffled[i:j]) for i, j in zip([0, *cuts], [*cuts, len(history)], strict=True)]


def _assert_rows_match(history: Sequence[ExecutionRecord], got: dict[str, dict[str, Any]]
                       ) -> None:
    want = expected_rows(history)
    assert set(got) == set(want)
    for agent, row in got.items():
        assert_aggregates_close(aggregates_from_row(row), want[agent]["aggregates"])
        assert_values_close(row, want[agent], COMPARED)


def test_sqlite_matches_python(tmp_path: Path) -> None:
    conn = sqlite_migrated(tmp_path / "ais.db")

    @DB_SETTINGS
    @given(histories, st.data())
    def check(history: list[ExecutionRecord], data: st.DataObject) -> None:
        conn.execute("DELETE FROM agent_intensity_metrics")
        for batch in _batches(history, data):
            sqlite_apply(conn, batch)
        _assert_rows_match(history, rows(conn))

    try:
        check()
    finally:
        conn.close()


@pytest.mark.postgres
def test_postgres_matches_python(pg_url: str) -> None:
    conn = pg_migrated(pg_url)

    @DB_SETTINGS
    @given(histories, st.data())
    def check(history: list[ExecutionRecord], data: st.DataObject) -> None:
        conn.execute("delete from agent_intensity_metrics")
        for batch in _batches(history, data):
            pg_apply(conn, batch)
        _assert_rows_match(history, rows(conn))

    try:
        check()
    finally:
        conn.close()
