"""The SQLite ingest fast paths compute exactly what the reference definitions compute."""

from __future__ import annotations

import functools
import json
import math
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import given, settings

from instrument import ais
from instrument.record import ExecutionRecord, StepCounts
from instrument.stores.reference.executions import (
    engine_details,
    execution_row,
    round_ms,
    strip_nulls_deep,
    total_tokens,
)
from instrument.stores.reference.intensity import IntensityBatch, batch_aggregates
from instrument.stores.reference.logs import credits_used, jsonb_text, log_row, run_output
from instrument.stores.reference.stats import StatsDelta, merge_deltas, stats_delta
from instrument.stores.sqlite.ingest import (
    PreparedBatch,
    _dumps,
    _encode_details,
    _exec_params,
    _full_output_text,
    _log_params,
    _logs_text,
    _record_params,
    _ts,
    _uuid7_text,
    _uuid7_texts,
)
from instrument.stores.sqlite.store import SQLiteStore
from tests.ais.histories import records as ais_records
from tests.ais.histories import unique_by_id
from tests.stores.records import ALL_WRITERS
from tests.stores.test_sql_parity import records as row_records


@settings(max_examples=300, deadline=None)
@given(st.lists(ais_records(agents=("agent-a",)), max_size=25).map(unique_by_id))
def test_batch_aggregates_is_exactly_add_in_order(history: list[ExecutionRecord]) -> None:
    deltas = [d for d in map(ais.IntensityDelta.from_record, history) if d is not None]
    want = functools.reduce(ais.Aggregates.add, deltas, ais.Aggregates())
    got = batch_aggregates(history)
    assert got == want  # bit-identical floats, not merely close
    assert math.copysign(1.0, got.total_duration_ms) == math.copysign(1.0, want.total_duration_ms)
    assert math.copysign(1.0, got.total_orchestration_ms) == math.copysign(
        1.0, want.total_orchestration_ms)


def _owned_or_refused(rec: ExecutionRecord) -> st.SearchStrategy[ExecutionRecord]:
    """`rec` as is, naming an owner (not its caller), or refused by a budget."""
    owned = rec.model_copy(update={"owner_id": f"owner-{rec.user_id}"})
    refused = rec.model_copy(update={"result": rec.result.model_copy(update={
        "refused": True, "success": False})})
    return st.sampled_from([rec, owned, refused])


@settings(max_examples=200, deadline=None)
@given(st.lists(ais_records().flatmap(_owned_or_refused), max_size=25).map(unique_by_id))
def test_intensity_batch_is_the_deltas_per_agent(history: list[ExecutionRecord]) -> None:
    per_agent: dict[str, list[ais.IntensityDelta]] = {}
    users: dict[str, str | None] = {}
    for rec in history:
        if rec.result.refused:  # not a run: nothing to score
            continue
        if (d := ais.IntensityDelta.from_record(rec)) is not None:
            per_agent.setdefault(d.agent_id, []).append(d)
            owner = rec.owner_id  # the row's user_id is the agent's owner, never the caller
            if owner is not None and (users.get(d.agent_id) or "\uffff") > owner:
                users[d.agent_id] = owner
    batch = IntensityBatch.of(history)
    assert dict(batch.aggregates) == {
        a: functools.reduce(ais.Aggregates.add, ds, ais.Aggregates())
        for a, ds in per_agent.items()}
    assert dict(batch.users) == users


def _reference_details(record: ExecutionRecord, *, capture_content: bool) -> dict[str, Any]:
    """engine_details as first written: the full JSON form, every null stripped."""
    res = json.loads(record.result.model_dump_json())
    calls = res.get("tool_calls")
    details: dict[str, Any] = strip_nulls_deep({
        "iterations": res.get("iterations"), "retries": res.get("retries"),
        "tool_call_count": len(calls) if isinstance(calls, list) else None,
        "tool_calls": calls, "tokens": res.get("tokens"), "steps": res.get("steps"),
        "workflow": res.get("workflow"), "memory": res.get("memory"),
        "orchestration_ms": res.get("orchestration_ms"), "extras": res.get("extras") or {},
        "response": res.get("response") if capture_content else None,
    })
    return details


@settings(max_examples=300, deadline=None)
@given(rec=row_records())
def test_shared_engine_details_give_the_same_rows(rec: ExecutionRecord) -> None:
    for capture in (False, True):
        assert json.dumps(engine_details(rec, capture_content=capture)) == json.dumps(
            _reference_details(rec, capture_content=capture))  # same keys in the same order
        details = engine_details(rec, capture_content=capture)
        assert execution_row(rec, capture_content=capture, details=details) == execution_row(
            rec, capture_content=capture)
        assert log_row(rec, capture_content=capture, details=details) == log_row(
            rec, capture_content=capture)
    summary = json.loads(run_output(rec))
    assert run_output(rec) == jsonb_text(summary)


def _without_extras(rec: ExecutionRecord) -> ExecutionRecord:
    """`rec` with empty extras: the shape engine_details reads from the attributes."""
    return rec.model_copy(update={"result": rec.result.model_copy(update={"extras": {}})})


@settings(max_examples=300, deadline=None)
@given(rec=row_records().map(_without_extras))
def test_engine_details_from_attributes_is_the_model_dump(rec: ExecutionRecord) -> None:
    for capture in (False, True):
        assert json.dumps(engine_details(rec, capture_content=capture)) == json.dumps(
            _reference_details(rec, capture_content=capture))  # same keys in the same order


def _reference_run_output(record: ExecutionRecord) -> str:
    """run_output as first written: a dict of the known values, in jsonb key order."""
    r = record.result
    steps = r.steps
    step_values = (
        (steps.completed, steps.failed, steps.skipped) if steps is not None else (None,) * 3)
    known_steps = [v for v in step_values if v is not None]
    summary = {
        "model": r.model, "engine": record.engine, "success": r.success,
        "provider": r.provider, "iterations": r.iterations,
        "tokens_used": total_tokens(r.tokens),
        "total_steps": sum(known_steps) if known_steps else None,
        "steps_failed": step_values[1], "steps_skipped": step_values[2],
        "steps_completed": step_values[0],
        "tool_calls_count": len(r.tool_calls) if r.tool_calls is not None else None,
        "execution_time_ms": round_ms(record.duration_ms),
    }
    return jsonb_text({k: v for k, v in summary.items() if v is not None})


@settings(max_examples=300, deadline=None)
@given(rec=row_records())
def test_run_output_text_is_the_reference_summary(rec: ExecutionRecord) -> None:
    assert run_output(rec) == _reference_run_output(rec)
    assert credits_used(total_tokens(rec.result.tokens)) == log_row(rec)["user_credits_used"]


@settings(max_examples=300, deadline=None)
@given(rec=row_records() | row_records().map(_without_extras))
def test_record_params_are_the_dumped_rows(rec: ExecutionRecord) -> None:
    """The insert parameters built from the record are those of the reference row dicts."""
    eid = str(rec.execution_id)
    measured = {"duration": round_ms(rec.duration_ms), "total": total_tokens(rec.result.tokens)}
    for capture in (False, True):
        want_exec = _exec_params(execution_row(rec, capture_content=capture))
        want_log = _log_params(log_row(rec, capture_content=capture), "log-id")
        assert _record_params(rec, eid, "log-id", to_exec=True, capture_content=capture,
                              **measured) == (want_exec, want_log)
        assert _record_params(rec, eid, None, to_exec=True, capture_content=capture,
                              **measured) == (want_exec, None)
        assert _record_params(rec, eid, "log-id", to_exec=False, capture_content=capture,
                              **measured) == (None, want_log)
        details = engine_details(rec, capture_content=capture)
        assert _encode_details(details) == _dumps(details)


@settings(max_examples=100, deadline=None)
@given(st.lists(row_records(), max_size=6))
def test_prepared_stats_deltas_are_stats_delta(recs: list[ExecutionRecord]) -> None:
    prepared = PreparedBatch(recs, ALL_WRITERS, capture_content=False)
    by_id = {str(r.execution_id): r for r in reversed(recs)}  # first wins
    want = [d for eid in sorted(by_id) if (d := stats_delta(by_id[eid])) is not None]
    assert list(prepared.deltas.values()) == want


@settings(max_examples=300, deadline=None)
@given(rec=row_records())
def test_spliced_json_documents_are_the_dumped_rows(rec: ExecutionRecord) -> None:
    """The details are encoded once and spliced into both documents: the same text."""
    for capture in (False, True):
        details = engine_details(rec, capture_content=capture)
        text = _dumps(details)
        row = execution_row(rec, capture_content=capture, details=details)
        assert _logs_text(rec.name, text) == _dumps(row["logs"])
        log = log_row(rec, capture_content=capture, details=details)
        assert _full_output_text(rec, str(rec.execution_id), text) == _dumps(log["full_output"])
    assert _logs_text("x", "{}") == _dumps({"name": "x"})


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**17, 10**17).map(float))
def test_round_ms_fast_path_matches_decimal_rounding(value: float) -> None:
    if not math.isfinite(value):
        assert round_ms(value) is None
        return
    try:
        want: int | None = int(Decimal(repr(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    except ArithmeticError:
        want = None
    if want is None:
        try:
            round_ms(value)
        except ArithmeticError:
            return
        raise AssertionError("round_ms must refuse what the Decimal path refuses")
    assert round_ms(value) == want


_ZONES: list[tzinfo | None] = [None, UTC, *(timezone(timedelta(hours=h)) for h in (-5, 2, 13))]


@given(st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9999, 12, 30),
                    timezones=st.sampled_from(_ZONES)))
def test_timestamp_text_is_the_fixed_width_strftime_form(value: datetime) -> None:
    # isoformat for years >= 1000; strftime itself below (its %Y is not zero-padded there)
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value
    utc = aware.astimezone(UTC)
    assert _ts(value) == utc.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def test_compact_json_is_json_dumps() -> None:
    value = {"a": [1, None, 2.5, "ü\"\\"], "b": {"c": True}, "d": float("nan")}
    assert _dumps(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_uuid7_text_is_a_version_7_uuid_with_the_time_in_front() -> None:
    for raw in (bytes(10), b"\xff" * 10, *(os.urandom(10) for _ in range(500))):
        for ms in (0, 1_764_000_000_000, 2**48 - 1):
            text = _uuid7_text(ms, raw)
            u = uuid.UUID(text)
            assert str(u) == text
            assert (u.version, u.variant) == (7, uuid.RFC_4122)
            assert u.int >> 80 == ms
            # 74 random bits of `raw`, in order: its first 12, then bits 14..75
            bits = int.from_bytes(raw, "big")
            assert (u.int >> 64) & 0xFFF == bits >> 68
            assert u.int & (2**62 - 1) == (bits >> 4) & (2**62 - 1)
    texts = _uuid7_texts(300)
    assert len(set(texts)) == 300
    assert all(uuid.UUID(t).version == 7 for t in texts)
    assert _uuid7_texts(1)[0][:13] >= texts[0][:13]  # the time prefix does not go backwards


def _reference_merge(deltas: list[StatsDelta]) -> list[StatsDelta]:
    """merge_deltas as first written: pairwise, a new delta per merge."""
    def later(a: StatsDelta, b: StatsDelta) -> StatsDelta:
        if b.last_run_at is None:  # no run (only refused executions): never the latest
            return a
        if a.last_run_at is None:
            return b
        return b if (b.last_run_at, b.last_execution_id) > (a.last_run_at,
                                                             a.last_execution_id) else a

    merged: dict[str, StatsDelta] = {}
    for d in deltas:
        prev = merged.get(d.agent_id)
        if prev is None:
            merged[d.agent_id] = d
            continue
        latest = later(prev, d)
        owners = [x for x in (prev, d) if x.owner_at is not None]
        owner = max(owners, key=lambda x: x.owner_at or (_T, "")) if owners else None
        merged[d.agent_id] = StatsDelta(
            d.agent_id, owner.user_id if owner else None, prev.run_count + d.run_count,
            prev.success_count + d.success_count, prev.failure_count + d.failure_count,
            prev.total_tokens + d.total_tokens, prev.token_run_count + d.token_run_count,
            prev.total_duration_ms + d.total_duration_ms, latest.last_run_at,
            latest.last_run_status, latest.last_execution_id,
            prev.paused_count + d.paused_count, prev.refused_count + d.refused_count,
            owner.owner_at if owner else None)
    return [merged[k] for k in sorted(merged)]


_T = datetime(2026, 1, 1, tzinfo=UTC)


@st.composite
def deltas(draw: st.DrawFn) -> StatsDelta:
    """A run (completed, failed or paused) or a refused execution; maybe naming an owner."""
    agent = draw(st.sampled_from(["a", "b", "c"]))
    owner = draw(st.none() | st.sampled_from(["u1", "u2", "u3"]))
    # few instants and ids, so ties on (last_run_at, last_execution_id) are common
    at = _T + timedelta(seconds=draw(st.integers(0, 3)))
    eid = draw(st.sampled_from(["e1", "e2", "e3"]))
    owner_at = None if owner is None else (at, eid)
    status = draw(st.sampled_from(["completed", "failed", "paused", "refused"]))
    if status == "refused":
        return StatsDelta(agent, owner, 0, 0, 0, 0, 0, 0, None, None, eid, 0, 1, owner_at)
    measured = draw(st.booleans())
    return StatsDelta(
        agent, owner, 1, int(status == "completed"), int(status == "failed"),
        draw(st.integers(0, 10**6)) if measured else 0, int(measured),
        draw(st.integers(0, 10**6)), at, status, eid, int(status == "paused"), 0, owner_at)


@settings(max_examples=300, deadline=None)
@given(st.lists(deltas(), max_size=12))
def test_merge_deltas_matches_the_pairwise_merge(ds: list[StatsDelta]) -> None:
    assert merge_deltas(ds) == _reference_merge(ds)


def test_run_output_writes_every_key_in_jsonb_order() -> None:
    from tests.stores.records import agentkit

    full = agentkit(1)
    full = full.model_copy(update={"result": full.result.model_copy(update={
        "steps": StepCounts(completed=2, failed=1, skipped=0)})})
    text = run_output(full)
    assert len(json.loads(text)) == 12
    assert text == jsonb_text(json.loads(text))


def _tables(store: SQLiteStore) -> dict[str, list[tuple[Any, ...]]]:
    volatile = {"id", "created_at", "updated_at", "last_calculated_at", "applied_at"}
    conn = store._connection()
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table in ("agent_executions", "agent_logs", "agent_stats", "instrument_applied",
                  "agent_intensity_metrics"):
        cur = conn.execute(f"SELECT * FROM {table}")
        names = [d[0] for d in cur.description]
        keep = [i for i, n in enumerate(names) if n not in volatile or (table == "agent_executions"
                and n == "id")]
        out[table] = sorted(tuple(row[i] for i in keep) for row in cur.fetchall())
    return out


def test_a_batch_mixing_new_and_applied_records_applies_only_the_new(tmp_path: Path) -> None:
    from tests.stores.records import agentkit, orchestrator

    first = [agentkit(i, writers=("stats", "intensity") if i % 2 else None) for i in range(6)]
    second = [orchestrator(i) for i in range(5)] + [agentkit(i) for i in range(6, 9)]
    mixed = SQLiteStore(f"sqlite:///{tmp_path / 'mixed.db'}")
    apart = SQLiteStore(f"sqlite:///{tmp_path / 'apart.db'}")
    try:
        mixed.apply(first, ALL_WRITERS)
        # every record of `first` again, now wanting all writers: only the missing ones apply
        result = mixed.apply([*second, *(agentkit(i) for i in range(6))], ALL_WRITERS)
        assert (result.applied, result.duplicates) == (11, 3)
        apart.apply(first, ALL_WRITERS)
        apart.apply(second, ALL_WRITERS)
        apart.apply([agentkit(i) for i in range(1, 6, 2)], ("executions", "logs"))
        assert _tables(mixed) == _tables(apart)
    finally:
        mixed.close()
        apart.close()
