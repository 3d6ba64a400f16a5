"""The embedded default store: one SQLite file (stdlib ``sqlite3``, WAL mode).

Safe for several threads (one connection per process, used under a lock) and several processes
(WAL, ``busy_timeout``, and ``BEGIN IMMEDIATE`` so each batch takes the write lock up front
instead of failing on a lock upgrade). One transaction per batch: ledger check, the four
writers, commit. Aggregates are added in SQL (``x = x + excluded.x``).

Idempotency: ``instrument_applied`` holds one row per execution with the built-in writers
already applied as a bitmask, updated in the batch's transaction; a writer runs for a record
only if its bit is new.

Ingest cost: the rows and the per-agent intensity aggregates are built before the write lock is
taken (engine details once per record, shared by both rows; the log ids from one ``urandom``
read), then a batch is a fixed number of statements: one ledger select, four ``executemany``
(ledger upsert, executions, logs, stats merged per agent) and, for intensity, one upsert, one
read-back and one score update per agent. ``synchronous = FULL`` is kept: a committed batch
survives a power loss too, not only a crash of the application (the spool drops records once
the store has committed them). ``NORMAL`` would skip one fsync per commit, and measured no
faster here: on a growing file the time goes to the index pages that random execution ids
dirty (random-key B-trees) and to WAL checkpoints, not to that fsync. Hence the larger page
cache and checkpoint interval, the one-row-per-execution ledger (schema v3) and time-ordered
(UUIDv7) ``agent_logs.id`` values: per record, three B-tree insertions at random keys instead
of seven (four of them ledger rows).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from instrument.ais import AISConfig
from instrument.errors import RecordRejected, SchemaMismatch, StoreUnavailable
from instrument.record import ExecutionRecord
from instrument.stores import migrations
from instrument.stores.base import ApplyResult, ExecutionFilter
from instrument.stores.reference.executions import engine_details, round_ms, total_tokens
from instrument.stores.reference.intensity import IntensityBatch
from instrument.stores.reference.intensity import apply_sqlite as apply_intensity
from instrument.stores.reference.logs import credits_used, status_message, summary_text
from instrument.stores.reference.stats import StatsDelta, merge_deltas
from instrument.writers import BUILTIN_WRITERS

__all__ = ["SQLiteStore"]

_log = logging.getLogger(__name__)

_EXEC_COLUMNS = (
    "id", "agent_id", "user_id", "agent_name", "session_id", "execution_type", "engine",
    "status", "started_at", "completed_at", "execution_duration_ms", "error_type",
    "error_message", "input_tokens", "output_tokens", "total_tokens", "model", "provider",
    "trace_id", "span_id", "logs",
)
_LOG_COLUMNS = (
    "id", "execution_id", "agent_id", "user_id", "run_output", "full_output", "status",
    "status_message", "run_time", "run_tokens", "user_credits_used",
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
    total_duration_ms, last_run_at, last_run_status, updated_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
ON CONFLICT (agent_id) DO UPDATE SET
    user_id = coalesce(s.user_id, excluded.user_id),
    run_count = s.run_count + excluded.run_count,
    success_count = s.success_count + excluded.success_count,
    failure_count = s.failure_count + excluded.failure_count,
    total_tokens = s.total_tokens + excluded.total_tokens,
    token_run_count = s.token_run_count + excluded.token_run_count,
    total_duration_ms = s.total_duration_ms + excluded.total_duration_ms,
    last_run_status = CASE
        WHEN s.last_run_at IS NULL OR excluded.last_run_at >= s.last_run_at
        THEN excluded.last_run_status ELSE s.last_run_status END,
    last_run_at = max(coalesce(s.last_run_at, ''), excluded.last_run_at),
    updated_at = excluded.updated_at
"""
_TIME_COLUMNS = frozenset(
    {"started_at", "completed_at", "created_at", "last_run_at", "updated_at", "applied_at"}
)
_JSON_COLUMNS = frozenset({"logs", "full_output"})
_BUILTIN = frozenset(BUILTIN_WRITERS)
#: Page cache per connection, KiB (``PRAGMA cache_size`` takes a negative KiB count).
_CACHE_KIB = 32 * 1024
#: WAL size (pages) that triggers an automatic checkpoint at commit.
_WAL_CHECKPOINT_PAGES = 4000
#: A built-in writer's bit in ``instrument_applied.writers`` (the same on every store).
_BIT = {"executions": 1, "logs": 2, "stats": 4, "intensity": 8}


def _mask(writers: frozenset[str]) -> int:
    """The ledger bitmask of a set of built-in writer names."""
    bits = 0
    for w in writers:
        bits |= _BIT[w]
    return bits


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


def _parse_ts(value: object) -> object:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


_EXEC_VALUES = itemgetter(*_EXEC_COLUMNS)
_LOG_VALUES = itemgetter(*_LOG_COLUMNS[1:])  # ``id`` is generated here
_EXEC_TIMES = tuple(i for i, c in enumerate(_EXEC_COLUMNS) if c in _TIME_COLUMNS)
_EXEC_JSON = tuple(i for i, c in enumerate(_EXEC_COLUMNS) if c in _JSON_COLUMNS)
_LOG_JSON = tuple(i for i, c in enumerate(_LOG_COLUMNS) if c in _JSON_COLUMNS)


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
        values[i] = _dumps(values[i]) if logs_text is None else logs_text
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
    status = "completed" if r.success else "failed"
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
        )
    if log_id is not None:
        log_params = (
            log_id, eid, record.agent_id, record.user_id, summary_text(record, total, duration),
            _full_output_text(record, eid, details_text), status, status_message(record),
            duration, total, credits_used(total),
        )
    return exec_params, log_params


def _row_dict(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (name, *_), raw in zip(cursor.description, row, strict=True):
        value = raw
        if name in _TIME_COLUMNS:
            value = _parse_ts(raw)
        elif name in _JSON_COLUMNS and isinstance(raw, str):
            value = json.loads(raw)
        out[name] = value
    return out


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``; memory."""
    if url in ("sqlite://:memory:", "sqlite:///:memory:"):
        return ":memory:"
    if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
        from instrument.errors import ConfigurationError

        raise ConfigurationError(
            f"invalid SQLite URL {url!r}: use 'sqlite:///relative/path.db' or "
            "'sqlite:////absolute/path.db' (set INSTRUMENT_DATABASE_URL)"
        )
    return url[len("sqlite:///") :]


class _Prepared:
    """A batch's rows for every writer each record wants, before the ledger is consulted.

    Records are deduplicated by execution id (first wins) and kept in execution-id order, the
    order of every insert (and of the float additions of the intensity aggregates).
    """

    __slots__ = ("deltas", "eids", "exec_params", "intensity", "intensity_batch", "log_params",
                 "size", "wanted")

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
            if "stats" in writers and record.agent_id is not None:
                # stats_delta(record), from the values computed once above
                ok = r.success
                self.deltas[eid] = StatsDelta(
                    record.agent_id, record.user_id, 1, 1 if ok else 0, 0 if ok else 1,
                    total or 0, 0 if total is None else 1, duration or 0, record.completed_at,
                    "completed" if ok else "failed", eid)
            if "intensity" in writers:
                self.intensity[eid] = record
        self.intensity_batch = IntensityBatch.of(self.intensity.values())


class SQLiteStore:
    """The built-in writers on one SQLite file. Connects lazily, on first use."""

    dialect = "sqlite"

    def __init__(
        self,
        url: str,
        *,
        capture_content: bool = False,
        auto_migrate: bool = True,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = sqlite_path(url)
        self.display_url = url
        self.capture_content = capture_content
        #: Create/upgrade the schema on first use (the embedded default needs no setup step).
        self.auto_migrate = auto_migrate
        self.busy_timeout_s = busy_timeout_s
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._schema_ok = False

    # -- connection ---------------------------------------------------------------------------

    def _after_fork(self) -> None:
        # A connection (or a lock held by another thread) must not cross a fork: drop both.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._conn = None
            self._schema_ok = False

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._translate(exc, ()) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            if self.path != ":memory:":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            # Random execution ids dirty pages all over three indexes; a batch re-reads and
            # re-writes them. A 32 MiB page cache (default 2 MiB) keeps them in memory, and a
            # checkpoint every 4,000 WAL pages (default 1,000) writes a page dirtied by several
            # batches back once: ~15% more records/s on a 60k-row file, same durability.
            conn.execute(f"PRAGMA cache_size = {-_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc, ()) from exc
        self._conn = conn
        return conn

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        if self._schema_ok:
            return
        expected = migrations.expected_version("sqlite")
        version = migrations.sqlite_schema_version(conn)
        if version is not None and version > expected:
            raise SchemaMismatch(
                f"SQLite database {self.path} has schema v{version}, newer than this "
                f"logged-execution expects (v{expected}): upgrade logged-execution"
            )
        missing = migrations.missing_columns(
            "sqlite", migrations.sqlite_columns(conn, list(migrations.expected_columns("sqlite")))
        )
        if version != expected or missing:
            if not self.auto_migrate:
                raise SchemaMismatch(self._schema_problem(version, expected, missing))
            _log.info("migrating SQLite database %s to schema v%d", self.path, expected)
            migrations.migrate_sqlite(conn)
        self._schema_ok = True

    def _schema_problem(
        self, version: int | None, expected: int, missing: list[tuple[str, str | None]]
    ) -> str:
        where = f"SQLite database {self.path}"
        if version is None:
            state = "has no logged-execution schema"
        elif version < expected:
            state = f"has schema v{version}, expected v{expected}"
        else:
            state = "is missing " + ", ".join(
                f"table {t}" if c is None else f"column {t}.{c}" for t, c in missing
            )
        return f"{where} {state}: run `instrument migrate --database-url {self.display_url}`"

    # -- Store protocol -------------------------------------------------------------------------

    def migrate(self) -> int:
        self._after_fork()
        with self._lock:
            conn = self._connection()
            try:
                version = migrations.migrate_sqlite(conn)
            except sqlite3.Error as exc:
                raise self._translate(exc, ()) from exc
            self._schema_ok = True
            return version

    def schema_version(self) -> int | None:
        self._after_fork()
        with self._lock:
            conn = self._connection()
            try:
                return migrations.sqlite_schema_version(conn)
            except sqlite3.Error as exc:
                raise self._translate(exc, ()) from exc

    def apply(
        self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
    ) -> ApplyResult:
        if not records:
            return ApplyResult(0, 0)
        # Rows are pure functions of the records: build them before taking the write lock, so
        # other writers (threads, processes) wait only for the SQL.
        try:
            prepared = _Prepared(records, default_writers, capture_content=self.capture_content)
        except OverflowError as exc:  # e.g. a timestamp that has no UTC form: a poison record
            raise self._translate(exc, records) from exc
        self._after_fork()
        with self._lock:
            conn = self._connection()
            try:
                self._ensure_schema(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = self._apply(conn, prepared)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OverflowError) as exc:
                raise self._translate(exc, records) from exc
            return result

    def _apply(self, conn: sqlite3.Connection, batch: _Prepared) -> ApplyResult:
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
        else:
            exec_params = batch.exec_params.values()
            log_params = batch.log_params.values()
            deltas = batch.deltas.values()
            intensity = batch.intensity_batch
        conn.executemany(_INSERT_EXEC, exec_params)
        conn.executemany(_INSERT_LOG, log_params)
        conn.executemany(
            _UPSERT_STATS,
            [
                (d.agent_id, d.user_id, d.run_count, d.success_count, d.failure_count,
                 d.total_tokens, d.token_run_count, d.total_duration_ms, _ts(d.last_run_at),
                 d.last_run_status)
                for d in merge_deltas(deltas)
            ],
        )
        if intensity.aggregates:
            apply_intensity(conn, intensity)  # AIS aggregates + scores, in this transaction
        applied = sum(1 for eid in eids if new[eid] or not wanted[eid])
        return ApplyResult(applied=applied, duplicates=batch.size - applied)

    def _select(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        self._after_fork()
        with self._lock:
            conn = self._connection()
            try:
                self._ensure_schema(conn)
                cursor = conn.execute(sql, tuple(params))
                return [_row_dict(cursor, row) for row in cursor.fetchall()]
            except sqlite3.Error as exc:
                raise self._translate(exc, ()) from exc

    def recent_executions(
        self, limit: int = 20, where: ExecutionFilter | None = None
    ) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[object] = []
        if where is not None:
            for column in ("agent_id", "user_id", "status", "engine"):
                value = getattr(where, column)
                if value is not None:
                    clauses.append(f"{column} = ?")
                    params.append(value)
        sql = "SELECT * FROM agent_executions"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY started_at DESC, id LIMIT ?"
        params.append(int(limit))
        return self._select(sql, params)

    def agent_stats(self) -> list[dict[str, Any]]:
        return self._select("SELECT * FROM agent_stats ORDER BY agent_id")

    def ais_config(self) -> AISConfig:
        """The AIS configuration stored in this database (``ais_config``)."""
        rows = self._select("SELECT key, value FROM ais_config")
        return AISConfig.from_rows((r["key"], r["value"]) for r in rows)

    def intensity_metrics(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        if agent_id is None:
            return self._select("SELECT * FROM agent_intensity_metrics ORDER BY agent_id")
        return self._select(
            "SELECT * FROM agent_intensity_metrics WHERE agent_id = ? ORDER BY agent_id",
            (agent_id,),
        )

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._schema_ok = False
            if conn is not None and self._pid == os.getpid():
                conn.close()

    # -- errors -----------------------------------------------------------------------------

    def _translate(
        self, exc: BaseException, records: Sequence[ExecutionRecord]
    ) -> SchemaMismatch | StoreUnavailable | RecordRejected:
        message = str(exc)
        low = message.lower()
        single = str(records[0].execution_id) if len(records) == 1 else None
        if isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError, OverflowError)) or (
            isinstance(exc, sqlite3.InterfaceError) and "binding" in low
        ) or "too big" in low:
            return RecordRejected(
                f"SQLite refused a record of the batch ({message})", execution_id=single
            )
        if any(s in low for s in ("no such table", "no such column", "has no column named",
                                  "no such function")):
            self._schema_ok = False  # check the schema again (and name what is missing) next time
            return SchemaMismatch(
                f"SQLite database {self.path}: {message}: the schema is missing or incomplete; "
                f"run `instrument migrate --database-url {self.display_url}`"
            )
        if "locked" in low or "busy" in low:
            return StoreUnavailable(
                f"SQLite database {self.path} stayed locked by another writer for more than "
                f"{self.busy_timeout_s:g} s; the batch will be retried"
            )
        if "unable to open" in low or "not a database" in low or "readonly" in low:
            return StoreUnavailable(
                f"cannot use SQLite database {self.path!r}: {message}; check that the directory "
                "exists and is writable and that the file is a SQLite database, or point "
                "INSTRUMENT_DATABASE_URL at another file"
            )
        return StoreUnavailable(f"SQLite database {self.path}: {message}")
