"""`instrument prune --older-than 30d`: old executions and their log rows go, in bounded
batches, on SQLite, PostgreSQL and Supabase; the aggregates and the usage ledger stay exactly
as they were, and a late replay of a pruned record changes nothing (issue 18 item 15)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from instrument.cli import EXIT_OK, EXIT_PROBLEM
from instrument.record import ExecutionRecord
from instrument.stores.lookups import ledger_rows, log_rows
from tests.cli.conftest import Run, assert_one_line_error
from tests.cli.fleet import WRITERS, Loaded, loaded, open_loaded
from tests.integration.supabase_support import make_record

__all__ = ["loaded"]  # the fixture, imported


def _recent(n: int) -> list[ExecutionRecord]:
    """Runs from yesterday: what a 30-day retention keeps."""
    start = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    offset = int((datetime.now(UTC) - timedelta(days=1) - start).total_seconds())
    return [make_record("agent-1", user_id="user-a", tenant_id="acme", offset_s=offset + i)
            for i in range(n)]


def _aggregates(url: str) -> dict[str, Any]:
    store = open_loaded(url)
    try:
        def norm(rows: list[dict[str, Any]]) -> list[str]:
            return sorted(repr(sorted((k, str(v)) for k, v in r.items())) for r in rows)

        return {"stats": norm(store.agent_stats()),  # type: ignore[attr-defined]
                "intensity": norm(store.intensity_metrics()),  # type: ignore[attr-defined]
                "ledger": norm(ledger_rows(store))}
    finally:
        store.close()


def _left(url: str) -> tuple[list[str], int]:
    store = open_loaded(url)
    try:
        rows = store.recent_executions(100)  # type: ignore[attr-defined]
        ids = sorted(str(r["id"]) for r in rows)
        return ids, sum(len(log_rows(store, i)) for i in ids)
    finally:
        store.close()


def test_prune_deletes_old_rows_in_batches_and_keeps_the_aggregates(
        run: Run, loaded: Loaded) -> None:
    url, old = loaded
    recent = _recent(2)
    store = open_loaded(url)
    try:
        store.apply(recent, WRITERS)
    finally:
        store.close()
    before = _aggregates(url)

    dry = run("prune", "--older-than", "30d", "--dry-run", "--database-url", url)
    assert dry.code == EXIT_OK, dry.err
    assert "Would delete 4 execution(s) started and 4 agent_logs row(s)" in dry.out
    assert len(_left(url)[0]) == 6  # nothing deleted

    got = run("prune", "--older-than", "30d", "--batch-size", "3", "--database-url", url)
    assert got.code == EXIT_OK, got.err
    assert "Deleted 4 execution(s) started and 4 agent_logs row(s)" in got.out
    assert "in 2 batch(es) of at most 3" in got.out  # 3 + 1 executions, with their logs
    assert _left(url) == (sorted(str(r.execution_id) for r in recent), 2)
    assert _aggregates(url) == before  # agent_stats, intensity and the ledger untouched

    again = run("prune", "--older-than", "30d", "--database-url", url)
    assert "Deleted 0 execution(s) started and 0 agent_logs row(s)" in again.out
    # a late replay of a pruned record (a spool found on an old laptop) changes nothing
    store = open_loaded(url)
    try:
        result = store.apply([old["parent"]], WRITERS)
    finally:
        store.close()
    assert (result.applied, result.duplicates) == (0, 1)
    assert _aggregates(url) == before


def test_prune_needs_an_age_and_an_existing_database(run: Run, db_url: str) -> None:
    assert run("prune").code == 2  # --older-than is required
    assert run("prune", "--older-than", "2026-01-01").code == 2  # an age, not a date
    assert_one_line_error(run("prune", "--older-than", "30d"), EXIT_PROBLEM, "no database at")
