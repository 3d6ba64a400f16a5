"""Both stores on a fresh database: exact rows and sums, idempotence, writer subsets."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from instrument.stores import ApplyResult, ExecutionFilter, SchemaAdmin, open_store
from instrument.stores.postgres.store import PostgresStore
from instrument.stores.reference.executions import execution_row
from instrument.stores.reference.logs import log_row
from instrument.stores.sqlite.store import SQLiteStore
from tests.stores.conftest import Store, rows
from tests.stores.records import (
    ALL_WRITERS,
    agentkit,
    expected_stats,
    mapping,
    mixed_run,
    orchestrator,
    total,
)


def _as_utc(value: object) -> object:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC) if isinstance(value, datetime) else value


def _check_mixed_run(store: Store) -> None:
    records = mixed_run()
    by_id = {str(r.execution_id): r for r in records}

    execs = rows(store, "agent_executions")
    assert sorted(r["id"] for r in execs) == sorted(by_id)
    for row in execs:
        rec = by_id[row["id"]]
        assert row["engine"] == rec.engine
        assert row["status"] == ("completed" if rec.result.success else "failed")
        assert row["execution_type"] == rec.execution_type
        assert row["total_tokens"] == total(rec)
        assert row["execution_duration_ms"] == int(rec.duration_ms + 0.5)
        assert _as_utc(row["started_at"]) == rec.started_at
        assert row["error_type"] == (rec.result.error.type if rec.result.error else None)
        assert "response" not in row["logs"]  # content capture is off
        calls = rec.result.tool_calls
        assert row["logs"].get("tool_call_count") == (len(calls) if calls else None)
        if calls:
            assert set(row["logs"]["tool_calls"][0]) <= {
                "name", "plugin", "action", "call_id", "success", "duration_ms", "started_at",
                "error", "items_returned"}

    logs = rows(store, "agent_logs")
    assert sorted(r["execution_id"] for r in logs) == sorted(by_id)
    for row in logs:
        rec = by_id[row["execution_id"]]
        t = total(rec)
        assert row["run_tokens"] == t
        assert row["user_credits_used"] == (None if t is None else -(-t // 1000))
        assert row["run_time"] == int(rec.duration_ms + 0.5)
        summary = json.loads(row["run_output"])
        assert summary["success"] is rec.result.success
        assert summary["engine"] == rec.engine
        assert summary.get("tokens_used") == t
        assert list(row["full_output"]) == [f"{rec.engine}_metadata"]
        if not rec.result.success:
            assert row["status_message"].startswith(rec.result.error.type)  # type: ignore[union-attr]

    want = expected_stats(records)
    stats = {r["agent_id"]: r for r in rows(store, "agent_stats")}
    assert set(stats) == set(want)
    for agent, e in want.items():
        got = stats[agent]
        assert (got["run_count"], got["success_count"], got["failure_count"], got["total_tokens"],
                got["token_run_count"], got["total_duration_ms"]) == (
            e.run_count, e.success_count, e.failure_count, e.total_tokens, e.token_run_count,
            e.total_duration_ms), agent
    latest = max((r for r in records if r.agent_id == "agent-orch"), key=lambda r: r.completed_at)
    assert stats["agent-orch"]["last_run_status"] == latest.status
    assert _as_utc(stats["agent-orch"]["last_run_at"]) == latest.completed_at


def _check_intensity(store: Store, records: list) -> None:  # type: ignore[type-arg]
    want = expected_stats(records)
    got = {r["agent_id"]: r["total_executions"] for r in store.intensity_metrics()}
    assert got == {a: e.run_count for a, e in want.items()}


def test_mixed_run_leaves_exact_rows_and_sums(store: Store) -> None:
    records = mixed_run()
    assert store.apply(records, ALL_WRITERS) == ApplyResult(applied=len(records), duplicates=0)
    _check_mixed_run(store)
    _check_intensity(store, records)


def test_replaying_a_batch_three_times_changes_nothing(store: Store) -> None:
    records = mixed_run()
    store.apply(records, ALL_WRITERS)
    before = {t: rows(store, t) for t in ("agent_executions", "agent_logs", "agent_stats")}
    intensity_before = store.intensity_metrics()
    for _ in range(3):
        assert store.apply(records, ALL_WRITERS) == ApplyResult(0, len(records))
    # also duplicates inside one batch, mixed with new records
    extra = [orchestrator(50), orchestrator(50), agentkit(50)]
    assert store.apply([*records[:2], *extra], ALL_WRITERS) == ApplyResult(2, 3)
    store.apply(extra, ALL_WRITERS)
    after = {t: rows(store, t) for t in ("agent_executions", "agent_logs")}
    for table, now in after.items():
        assert all(r in now for r in before[table])
        assert len(now) == len(before[table]) + 2
    stats = {r["agent_id"]: r for r in rows(store, "agent_stats")}
    want = expected_stats([*records, orchestrator(50), agentkit(50)])
    assert {a: s["run_count"] for a, s in stats.items()} == {
        a: e.run_count for a, e in want.items()}
    assert intensity_before  # the intensity writer ran
    _check_intensity(store, [*records, orchestrator(50), agentkit(50)])


def test_python_rows_match_the_stored_rows(store: Store) -> None:
    """The Python row functions and the store (SQL on Postgres) produce identical rows."""
    records = mixed_run()
    store.apply(records, ALL_WRITERS)
    execs = {r["id"]: r for r in rows(store, "agent_executions")}
    logs = {r["execution_id"]: r for r in rows(store, "agent_logs")}
    for rec in records:
        eid = str(rec.execution_id)
        want = execution_row(rec, capture_content=False)
        got = {k: _as_utc(v) if k.endswith("_at") else v for k, v in execs[eid].items()}
        assert {k: got[k] for k in want} == want
        want_log = log_row(rec)
        assert {k: logs[eid][k] for k in want_log} == want_log


def test_response_text_is_stored_only_with_content_capture(
        dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from tests.stores.conftest import make_store

    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    rec = agentkit(7)
    plain = make_store(dialect, request, tmp_path / "a")
    plain.apply([rec], ALL_WRITERS)
    assert "response" not in rows(plain, "agent_executions")[0]["logs"]
    plain.close()
    captured: Store
    if isinstance(plain, PostgresStore):
        captured = PostgresStore(plain.url, capture_content=True)
        rec = agentkit(8)
    else:
        captured = make_store(dialect, request, tmp_path / "b", capture_content=True)
    captured.apply([rec], ALL_WRITERS)
    stored = {r["id"]: r for r in rows(captured, "agent_executions")}[str(rec.execution_id)]
    assert stored["logs"]["response"] == rec.result.response
    log = {r["execution_id"]: r for r in rows(captured, "agent_logs")}[str(rec.execution_id)]
    assert log["full_output"]["agentkit_metadata"]["response"] == rec.result.response
    captured.close()


@pytest.mark.parametrize("keep_content", [False, True])
def test_open_store_keeps_response_text_only_with_keep_content(
        dialect: str, keep_content: bool, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The same on every backend: ``open_store(url)`` drops the response text a record
    carries, ``open_store(url, keep_content=True)`` stores it (Supabase: tests/integration)."""
    url = (f"sqlite:///{tmp_path / 'open.db'}" if dialect == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    store = open_store(url, keep_content=True) if keep_content else open_store(url)
    assert isinstance(store, SQLiteStore | PostgresStore)
    assert isinstance(store, SchemaAdmin)
    try:
        store.migrate()
        rec = agentkit(9)
        secret = rec.result.response
        assert secret
        assert store.apply([rec], ALL_WRITERS) == ApplyResult(1, 0)
        execution = rows(store, "agent_executions")[0]
        log = rows(store, "agent_logs")[0]
    finally:
        store.close()
    stored = json.dumps([execution["logs"], log["full_output"]], default=str)
    if keep_content:
        assert execution["logs"]["response"] == secret
        assert log["full_output"]["agentkit_metadata"]["response"] == secret
    else:
        assert secret not in stored
        assert "response" not in execution["logs"]


def test_per_record_writer_subsets_are_honoured(store: Store) -> None:
    only_exec = orchestrator(1, writers=("executions",))
    only_stats = agentkit(1, writers=("stats", "my_webhook"))
    nothing = mapping(1, writers=())
    default = agentkit(2)
    result = store.apply([only_exec, only_stats, nothing, default], ("executions", "logs"))
    assert result == ApplyResult(4, 0)
    assert {r["id"] for r in rows(store, "agent_executions")} == {
        str(only_exec.execution_id), str(default.execution_id)}
    assert {r["execution_id"] for r in rows(store, "agent_logs")} == {str(default.execution_id)}
    assert [(r["agent_id"], r["run_count"]) for r in rows(store, "agent_stats")] == [
        ("agent-kit", 1)]
    assert store.intensity_metrics() == []

    # Re-delivered with more writers: only the writers not applied before take effect.
    again = [orchestrator(1, writers=("executions", "logs", "stats")), agentkit(2)]
    assert store.apply(again, ALL_WRITERS) == ApplyResult(2, 0)
    assert len(rows(store, "agent_executions")) == 2
    assert len(rows(store, "agent_logs")) == 2
    stats = {r["agent_id"]: r["run_count"] for r in rows(store, "agent_stats")}
    assert stats == {"agent-kit": 2, "agent-orch": 1}
    assert {r["agent_id"]: r["total_executions"] for r in store.intensity_metrics()} == {
        "agent-kit": 1}
    assert store.apply(again, ALL_WRITERS) == ApplyResult(0, 2)


def test_reads_for_the_cli(store: Store) -> None:
    store.apply(mixed_run(), ALL_WRITERS)
    recent = store.recent_executions(3)
    assert len(recent) == 3
    assert recent[0]["started_at"] >= recent[1]["started_at"] >= recent[2]["started_at"]
    assert isinstance(recent[0]["id"], str)
    assert isinstance(recent[0]["logs"], dict)
    failed = store.recent_executions(50, ExecutionFilter(status="failed"))
    assert {r["engine"] for r in failed} == {"orchestrator", "agentkit", "mapping"}
    assert all(r["status"] == "failed" for r in failed)
    only = store.recent_executions(50, ExecutionFilter(agent_id="agent-kit", engine="agentkit"))
    assert len(only) == 3
    assert [s["agent_id"] for s in store.agent_stats()] == ["agent-kit", "agent-map", "agent-orch"]
    assert store.schema_version() is not None
    assert [m["agent_id"] for m in store.intensity_metrics("agent-kit")] == ["agent-kit"]


def test_a_nul_character_does_not_cost_the_record(store: Store) -> None:
    """Postgres text cannot hold NUL: the store keeps the record with U+FFFD instead."""
    from instrument.record import ErrorInfo, ExecutionResult

    rec = mapping(5).model_copy(update={"result": ExecutionResult(
        success=False, error=ErrorInfo(type="E", message="bin\x00ary \\u0000 kept"),
        extras={"k\x00": "v\x00"})})
    assert store.apply([rec], ALL_WRITERS).applied == 1
    row = rows(store, "agent_executions")[0]
    nul = "\ufffd" if isinstance(store, PostgresStore) else "\x00"
    assert row["error_message"] == f"bin{nul}ary \\u0000 kept"
    assert row["logs"]["extras"] == {f"k{nul}": f"v{nul}"}


def test_the_stored_ais_config_reads_back(store: Store, dialect: str) -> None:
    import json

    from instrument.ais import AISConfig

    assert store.ais_config() == AISConfig()  # type: ignore[attr-defined]  # seeded defaults
    value = json.dumps(0.5)
    if dialect == "sqlite":
        import sqlite3

        with sqlite3.connect(store.path) as conn:  # type: ignore[attr-defined]
            conn.execute("UPDATE ais_config SET value = ? WHERE key = 'dynamic.percentile'",
                         (value,))
    else:
        import psycopg

        with psycopg.connect(store.url) as conn:  # type: ignore[attr-defined]
            conn.execute("update ais_config set value = %s::jsonb "
                         "where key = 'dynamic.percentile'", (value,))
    assert store.ais_config().dynamic_percentile == 0.5  # type: ignore[attr-defined]
