"""The SQLite ingest fast path: a batch's rows, built from the records before the write lock.

The rows are those of the reference (:mod:`instrument.stores.reference`) built straight from the
record fields: engine details encoded once per record and shared by both rows, the log ids from
one ``urandom`` read (property tests hold the fast path to the reference). Then a batch is a
fixed number of statements (:func:`apply_prepared`): one ledger select, six ``executemany``
(ledger upsert, executions, logs, stats merged per agent, usage_ledger merged per row, the
batch's budget reservations deleted) and, for intensity, one upsert, one read-back and one
score update per agent.

Idempotency: ``instrument_applied`` holds one row per execution with the built-in writers
already applied as a bitmask, updated in the batch's transaction; a writer runs for a record
only if its bit is new.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from instrument.record import ExecutionRecord
from instrument.stores.base import ApplyResult
from instrument.stores.reference.executions import (
    engine_details,
    json_finite,
    round_ms,
    total_tokens,
)
from instrument.stores.reference.intensity import IntensityBatch
from instrument.stores.reference.logs import credits_used, status_message, summary_text
from instrument.stores.reference.stats import StatsDelta, merge_deltas
from instrument.stores.sqlite.intensity import apply_sqlite as apply_intensity
from instrument.stores.sqlite.ledger import UPSERT_LEDGER, LedgerRow, ledger_params, ledger_values
from instrument.writers import BUILTIN_WRITERS

__all__ = ["DECIMAL_COLUMNS", "JSON_COLUMNS", "TIME_COLUMNS", "PreparedBatch", "apply_prepared",
           "decimal_text"]

_EXEC_COLUMNS = (
    "id", "agent_id", "user_id", "agent_name", "session_id", "execution_type", "engine",
    "status", "started_at", "completed_at", "execution_duration_ms", "error_type",
    "error_message", "input_tokens", "output_tokens", "total_tokens", "model", "provider",
    "trace_id", "span_id", "logs",
    # schema v6
    "tenant_id", "owner_id", "parent_execution_id", "resumes_execution_id", "tags", "metadata",
    "cost_usd", "price_source", "input", "request_model", "service_tier",
    "cache_write_input_tokens",
)
_LOG_COLUMNS = (
    "id", "execution_id", "agent_id", "user_id", "run_output", "full_output", "status",
    "status_message", "run_time", "run_tokens", "user_credits_used", "tenant_id",
)
_INSERT_EXEC = (
    f"INSERT INTO agent_executions ({', '.join(_EXEC_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _EXEC_COLUMNS)}) ON CONFLICT (id) DO NOTHING"
)
_INSERT_LOG = (
    f"INSERT INTO agent_logs ({', '.join(_LOG_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _LOG_COLUMNS)}) ON CONFLICT (execution_id) DO NOTHING"
)
_UPSERT_STATS = """
INSERT INTO agent_stats AS s (
    agent_id, user_id, run_count, success_count, failure_count, total_tokens, token_run_count,
    total_duration_ms, last_run_at, last_run_status, paused_count, refused_count, updated_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
ON CONFLICT (agent_id) DO UPDATE SET
    user_id = coalesce(s.user_id, excluded.user_id),
    run_count = s.run_count + excluded.run_count,
    success_count = s.success_count + excluded.success_count,
    failure_count = s.failure_count + excluded.failure_count,
    total_tokens = s.total_tokens + excluded.total_tokens,
    token_run_count = s.token_run_count + excluded.token_run_count,
    total_duration_ms = s.total_duration_ms + excluded.total_duration_ms,
    paused_count = s.paused_count + excluded.paused_count,
    refused_count = s.refused_count + excluded.refused_count,
    last_run_status = CASE
        WHEN s.last_run_at IS NULL OR excluded.last_run_at >= s.last_run_at
        THEN excluded.last_run_status ELSE s.last_run_status END,
    last_run_at = CASE
        WHEN excluded.last_run_at IS NULL THEN s.last_run_at
        WHEN s.last_run_at IS NULL THEN excluded.last_run_at
        ELSE max(s.last_run_at, excluded.last_run_at) END,
    updated_at = excluded.updated_at
"""
#: Columns SQLite stores as text: timestamps, and JSON documents.
TIME_COLUMNS = frozenset(
    {"started_at", "completed_at", "created_at", "last_run_at", "updated_at", "applied_at",
     "expires_at"}
)
JSON_COLUMNS = frozenset({"logs", "full_output", "tags", "metadata"})
#: Columns SQLite stores as the exact decimal string (read back as ``Decimal``).
DECIMAL_COLUMNS = frozenset({"cost_usd"})
_BUILTIN = frozenset(BUILTIN_WRITERS)
#: A built-in writer's bit in ``instrument_applied.writers`` (the same on every store).
_BIT = {"executions": 1, "logs": 2, "stats": 4, "intensity": 8, "usage_ledger": 16}


def _mask(writers: frozenset[str]) -> int:
    """The ledger bitmask of a set of built-in writer names."""
    bits = 0
    for w in writers:
        bits |= _BIT[w]
    return bits


def decimal_text(value: Decimal | None) -> str | None:
    """A decimal as SQLite stores it: plain notation (never ``1E-7``), every digit kept."""
    return None if value is None else format(value, "f")


def _ts(value: datetime) -> str:
    """Fixed-width UTC text, so SQLite's text comparison orders like the datetimes."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    if value.year >= 1000:  # isoformat is the same text, faster; strftime's %Y is not padded
        return value.isoformat(timespec="microseconds")
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


#: ``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``, built once.
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: ``_dumps`` of a ``str`` (what it calls for one).
encode_basestring = json.encoder.encode_basestring
try:
    from _json import make_encoder as _make_encoder
except ImportError:  # an interpreter without json's C accelerator
    _make_encoder = None  # type: ignore[assignment, misc]
#: json's C encoder with ``_dumps``'s settings, made once (``JSONEncoder.encode`` makes one per
#: call); no cycle check: it only encodes engine details, fresh trees of JSON values.
_details_encoder = None if _make_encoder is None else _make_encoder(
    None, json.JSONEncoder().default, encode_basestring, None, ":", ",", False, False, True)


def _encode_details(details: dict[str, Any]) -> str:
    """``_dumps(details)``, for the engine details dict."""
    if _details_encoder is None:
        return _dumps(details)
    return "".join(_details_encoder(details, 0))


_EXEC_VALUES = itemgetter(*_EXEC_COLUMNS)
_LOG_VALUES = itemgetter(*_LOG_COLUMNS[1:])  # ``id`` is generated here
_EXEC_TIMES = tuple(i for i, c in enumerate(_EXEC_COLUMNS) if c in TIME_COLUMNS)
_EXEC_JSON = tuple(i for i, c in enumerate(_EXEC_COLUMNS) if c in JSON_COLUMNS)
#: ``logs`` is JSON text always; ``tags`` and ``metadata`` are NULL when the record has none.
_EXEC_LOGS = _EXEC_COLUMNS.index("logs")
_EXEC_COST = _EXEC_COLUMNS.index("cost_usd")
_LOG_JSON = tuple(i for i, c in enumerate(_LOG_COLUMNS) if c in JSON_COLUMNS)


#: Hex digit -> the digit a UUID has there after setting the RFC 9562 variant bits (10xx).
_VARIANT = {f"{i:x}": "89ab"[i & 3] for i in range(16)}


def _uuid7_text(unix_ms: int, raw: bytes) -> str:
    """A version-7 UUID as text: `unix_ms` (48 bits), then 74 bits of `raw` (10 bytes)."""
    t = f"{unix_ms & 0xFFFF_FFFF_FFFF:012x}"
    h = raw.hex()
    return f"{t[:8]}-{t[8:12]}-7{h[:3]}-{_VARIANT[h[3]]}{h[4:7]}-{h[7:19]}"


def _uuid7_texts(n: int) -> list[str]:
    """`n` version-7 UUIDs as text (time-ordered, RFC 9562), from one clock read and urandom.

    ``agent_logs.id`` only has to be unique; a time-ordered id makes its primary-key index grow
    at the right edge instead of dirtying a random page of it per row (one B-tree fewer with
    random keys per record: less to write at each commit).
    """
    unix_ms = time.time_ns() // 1_000_000
    raw = os.urandom(10 * n)
    return [_uuid7_text(unix_ms, raw[i : i + 10]) for i in range(0, 10 * n, 10)]


def _exec_params(row: dict[str, Any], logs_text: str | None = None) -> tuple[object, ...]:
    """An ``execution_row`` as ``_INSERT_EXEC`` parameters (timestamps as text, JSON dumped).

    `logs_text`, when given, is ``_dumps(row["logs"])`` already (see :func:`_logs_text`).
    The reference for :func:`_record_params` (which builds the same tuple from the record).
    """
    values = list(_EXEC_VALUES(row))
    for i in _EXEC_TIMES:
        values[i] = _ts(values[i])
    for i in _EXEC_JSON:
        if values[i] is not None:
            values[i] = _dumps(values[i])
    if logs_text is not None:
        values[_EXEC_LOGS] = logs_text
    values[_EXEC_COST] = decimal_text(values[_EXEC_COST])
    return tuple(values)


def _log_params(row: dict[str, Any], log_id: str, full_output_text: str | None = None
                ) -> tuple[object, ...]:
    """A ``log_row`` as ``_INSERT_LOG`` parameters, with its new ``id``.

    `full_output_text`, when given, is ``_dumps(row["full_output"])`` already.
    """
    values = [log_id, *_LOG_VALUES(row)]
    for i in _LOG_JSON:
        values[i] = _dumps(values[i]) if full_output_text is None else full_output_text
    return tuple(values)


def _members(details_text: str) -> str:
    """The members of a JSON object text, with a leading comma (``""`` for ``{}``)."""
    return "" if details_text == "{}" else "," + details_text[1:-1]


def _string(value: object) -> str:
    """``_dumps(value)``; for a ``str`` (nearly always) json's C string encoder directly."""
    return encode_basestring(value) if type(value) is str else _dumps(value)


def _logs_text(name: object, details_text: str) -> str:
    """``_dumps({"name": name, **details})`` from ``details_text = _dumps(details)``.

    The engine details are the bulk of both JSON documents of a record; encoded once, they are
    spliced into both (the same text ``json.dumps`` gives: keys in the same order).
    """
    return '{"name":' + _string(name) + _members(details_text) + "}"


def _full_output_text(record: ExecutionRecord, eid: str, details_text: str) -> str:
    """``_dumps(log_row(record, details=details)["full_output"])`` from the details' text."""
    r = record.result
    head = '"execution_id":' + _string(eid)
    if r.model is not None:
        head += ',"model":' + _string(r.model)
    if r.provider is not None:
        head += ',"provider":' + _string(r.provider)
    return ("{" + _string(f"{record.engine}_metadata") + ":{" + head + _members(details_text)
            + "}}")


def _record_params(record: ExecutionRecord, eid: str, log_id: str | None, *, to_exec: bool,
                   capture_content: bool, duration: int | None, total: int | None
                   ) -> tuple[tuple[object, ...] | None, tuple[object, ...] | None]:
    """``_INSERT_EXEC`` and ``_INSERT_LOG`` parameters of a record, straight from its fields.

    The same tuples as ``_exec_params(execution_row(...))`` and ``_log_params(log_row(...))``
    (a property test holds them together) without the intermediate row dicts: each shared
    value is computed once (`duration` is ``round_ms(record.duration_ms)``, `total` the
    record's ``total_tokens``, and the engine details' text). ``None`` for a row the record
    does not want (`to_exec` false, or no `log_id`).
    """
    r = record.result
    details_text = _encode_details(engine_details(record, capture_content=capture_content))
    status = r.status
    exec_params: tuple[object, ...] | None = None
    log_params: tuple[object, ...] | None = None
    if to_exec:
        error = r.error
        tokens = r.tokens
        exec_params = (
            eid, record.agent_id, record.user_id, record.agent_name, record.session_id,
            record.execution_type, record.engine, status, _ts(record.started_at),
            _ts(record.completed_at), duration,
            error.type if error is not None else None,
            error.message if error is not None else None,
            tokens.input_tokens if tokens is not None else None,
            tokens.output_tokens if tokens is not None else None,
            total, r.model, r.provider, record.trace_id, record.span_id,
            _logs_text(record.name, details_text),
            record.tenant_id, record.owner_id,
            None if (parent := record.parent_execution_id) is None else str(parent),
            None if (resumes := record.resumes_execution_id) is None else str(resumes),
            None if record.tags is None else _dumps(list(record.tags)),
            None if record.metadata is None else _dumps(json_finite(record.metadata)),
            decimal_text(r.cost_usd), r.price_source,
            r.input if capture_content else None, r.request_model, r.service_tier,
            tokens.cache_write_input_tokens if tokens is not None else None,
        )
    if log_id is not None:
        log_params = (
            log_id, eid, record.agent_id, record.user_id, summary_text(record, total, duration),
            _full_output_text(record, eid, details_text), status, status_message(record),
            duration, total, credits_used(total), record.tenant_id,
        )
    return exec_params, log_params


class PreparedBatch:
    """A batch's rows for the writers each record wants, before the ledger is consulted.

    Records are deduplicated by execution id (first wins) and kept in execution-id order, the
    order of every insert (and of the float additions of the intensity aggregates).
    """

    __slots__ = ("deltas", "eids", "exec_params", "intensity", "intensity_batch", "ledger",
                 "log_params", "size", "wanted")

    def __init__(self, records: Sequence[ExecutionRecord], default_writers: Collection[str],
                 *, capture_content: bool) -> None:
        by_id: dict[str, ExecutionRecord] = {}
        for record in records:
            by_id.setdefault(str(record.execution_id), record)
        self.size = len(records)
        self.eids = eids = sorted(by_id)
        defaults = _BUILTIN.intersection(default_writers)
        self.wanted: dict[str, frozenset[str]] = {
            eid: defaults if (w := by_id[eid].writers) is None else _BUILTIN.intersection(w)
            for eid in eids
        }
        # Keyed by execution id, in eid order: no (eid, row) pair per record (fewer objects
        # for the garbage collector to track and promote while the batch is being built).
        self.exec_params: dict[str, tuple[object, ...]] = {}
        self.log_params: dict[str, tuple[object, ...]] = {}
        self.deltas: dict[str, StatsDelta] = {}
        self.intensity: dict[str, ExecutionRecord] = {}
        self.ledger: dict[str, LedgerRow] = {}
        log_ids = iter(_uuid7_texts(sum(1 for eid in eids if "logs" in self.wanted[eid])))
        for eid in eids:
            writers = self.wanted[eid]
            if not writers:
                continue
            record = by_id[eid]
            r = record.result
            duration = round_ms(record.duration_ms)
            total = total_tokens(r.tokens)
            to_exec = "executions" in writers
            to_logs = "logs" in writers
            if to_exec or to_logs:
                exec_row, log_row = _record_params(
                    record, eid, next(log_ids) if to_logs else None, to_exec=to_exec,
                    capture_content=capture_content, duration=duration, total=total)
                if exec_row is not None:
                    self.exec_params[eid] = exec_row
                if log_row is not None:
                    self.log_params[eid] = log_row
            status = r.status
            if "stats" in writers and record.agent_id is not None:
                # stats_delta(record), from the values computed once above
                owner = record.owner_id
                owner_at = None if owner is None else (record.completed_at, eid)
                if status == "refused":
                    self.deltas[eid] = StatsDelta(record.agent_id, owner, 0, 0, 0, 0, 0, 0,
                                                  None, None, eid, 0, 1, owner_at)
                else:
                    self.deltas[eid] = StatsDelta(
                        record.agent_id, owner, 1, int(status == "completed"),
                        int(status == "failed"), total or 0, 0 if total is None else 1,
                        duration or 0, record.completed_at, status, eid,
                        int(status == "paused"), 0, owner_at)
            if "intensity" in writers and status != "refused":
                self.intensity[eid] = record
            if "usage_ledger" in writers:
                self.ledger[eid] = ((record.tenant_id or "", record.user_id or "",
                                     record.agent_id or "", _ts(record.started_at)[:10]),
                                    ledger_values(record, total))
        self.intensity_batch = IntensityBatch.of(self.intensity.values())


def apply_prepared(conn: sqlite3.Connection, batch: PreparedBatch) -> ApplyResult:
    """Apply `batch` in the caller's open transaction: ledger check, the rows the ledger has not
    seen yet, intensity. Never commits."""
    eids, wanted = batch.eids, batch.wanted
    # The ledger: one row per execution, its applied writers as a bitmask (migration 0003).
    done: dict[str, int] = dict(
        conn.execute(
            "SELECT execution_id, writers FROM instrument_applied "
            "WHERE execution_id IN (SELECT value FROM json_each(?))",
            (_dumps(eids),),
        ).fetchall()
    )
    new = wanted if not done else {
        eid: frozenset(w for w in writers if not done.get(eid, 0) & _BIT[w])
        for eid, writers in wanted.items()
    }
    conn.executemany(
        "INSERT INTO instrument_applied (execution_id, writers, added) VALUES (?1, ?2, ?2) "
        "ON CONFLICT (execution_id) DO UPDATE SET writers = writers | excluded.writers, "
        "added = excluded.added",
        [(eid, bits) for eid in eids if (bits := _mask(new[eid]))],
    )
    if done:  # a redelivery: only what the ledger has not seen yet
        exec_params: Collection[tuple[object, ...]] = [
            p for eid, p in batch.exec_params.items() if "executions" in new[eid]]
        log_params: Collection[tuple[object, ...]] = [
            p for eid, p in batch.log_params.items() if "logs" in new[eid]]
        deltas: Collection[StatsDelta] = [
            d for eid, d in batch.deltas.items() if "stats" in new[eid]]
        intensity = IntensityBatch.of(
            r for eid, r in batch.intensity.items() if "intensity" in new[eid])
        ledger: Collection[LedgerRow] = [
            kd for eid, kd in batch.ledger.items() if "usage_ledger" in new[eid]]
    else:
        exec_params = batch.exec_params.values()
        log_params = batch.log_params.values()
        deltas = batch.deltas.values()
        intensity = batch.intensity_batch
        ledger = batch.ledger.values()
    conn.executemany(_INSERT_EXEC, exec_params)
    conn.executemany(_INSERT_LOG, log_params)
    conn.executemany(
        _UPSERT_STATS,
        [
            (d.agent_id, d.user_id, d.run_count, d.success_count, d.failure_count,
             d.total_tokens, d.token_run_count, d.total_duration_ms,
             None if d.last_run_at is None else _ts(d.last_run_at), d.last_run_status,
             d.paused_count, d.refused_count)
            for d in merge_deltas(deltas)
        ],
    )
    if ledger:
        conn.executemany(UPSERT_LEDGER, ledger_params(ledger))
    if intensity.aggregates:
        apply_intensity(conn, intensity)  # AIS aggregates + scores, in this transaction
    # a budget reservation ends when its execution's record lands (duplicates included)
    conn.execute("DELETE FROM budget_inflight WHERE execution_id IN "
                 "(SELECT value FROM json_each(?))", (_dumps(eids),))
    applied = sum(1 for eid in eids if new[eid] or not wanted[eid])
    return ApplyResult(applied=applied, duplicates=batch.size - applied)

