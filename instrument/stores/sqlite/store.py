"""The embedded default store: one SQLite file (stdlib ``sqlite3``, WAL mode).

The file is created readable by its owner only (0600, like the spool that holds the same
records); SQLite gives its ``-wal`` and ``-shm`` files the database file's mode.

Safe for several threads (one connection per process, used under a lock) and several processes
(WAL, ``busy_timeout``, and ``BEGIN IMMEDIATE`` so each batch takes the write lock up front
instead of failing on a lock upgrade). One transaction per batch: ledger check, the four
writers, commit (:mod:`instrument.stores.sqlite.ingest` builds the rows before the lock and
applies them; :mod:`instrument.stores.sqlite.intensity` adds the AIS aggregates in SQL).

``synchronous = FULL`` is kept: a committed batch survives a power loss too, not only a crash of
the application (the spool drops records once the store has committed them). ``NORMAL`` would
skip one fsync per commit, and measured no faster here: on a growing file the time goes to the
index pages that random execution ids dirty (random-key B-trees) and to WAL checkpoints, not to
that fsync. Hence the larger page cache and checkpoint interval, the one-row-per-execution
ledger (schema v3) and time-ordered (UUIDv7) ``agent_logs.id`` values: per record, three B-tree
insertions at random keys instead of seven (four of them ledger rows).
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
from decimal import Decimal
from typing import Any
from uuid import UUID

from instrument.ais import AISConfig
from instrument.errors import ConfigurationError, RecordRejected, SchemaMismatch, StoreUnavailable
from instrument.record import ExecutionRecord
from instrument.stores import migrations
from instrument.stores.base import (
    ApplyResult,
    BudgetPer,
    ExecutionFilter,
    Reservation,
    Spend,
    budget_column,
)
from instrument.stores.sqlite import money
from instrument.stores.sqlite.budget import reserve_sqlite, spend_sqlite, utc
from instrument.stores.sqlite.ingest import (
    DECIMAL_COLUMNS,
    JSON_COLUMNS,
    TIME_COLUMNS,
    PreparedBatch,
    apply_prepared,
)

__all__ = ["SQLiteStore", "sqlite_path"]

_log = logging.getLogger(__name__)

#: Page cache per connection, KiB (``PRAGMA cache_size`` takes a negative KiB count).
_CACHE_KIB = 32 * 1024
#: WAL size (pages) that triggers an automatic checkpoint at commit.
_WAL_CHECKPOINT_PAGES = 4000
#: Mode of a database file the store creates (umask may only narrow it).
FILE_MODE = 0o600
#: SQLite result codes (``sqlite_errorname``, primary part) that say nothing about the data:
#: the file is locked, unreadable, full, read-only, damaged or gone; retried later.
_UNAVAILABLE_CODES = frozenset({
    "SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN",
    "SQLITE_READONLY", "SQLITE_NOTADB", "SQLITE_CORRUPT", "SQLITE_NOMEM", "SQLITE_PROTOCOL",
    "SQLITE_INTERRUPT", "SQLITE_PERM", "SQLITE_AUTH", "SQLITE_NOLFS", "SQLITE_ABORT",
})


def _parse_ts(value: object) -> object:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return value


def _row_dict(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for (name, *_), raw in zip(cursor.description, row, strict=True):
        value = raw
        if name in TIME_COLUMNS:
            value = _parse_ts(raw)
        elif name in JSON_COLUMNS and isinstance(raw, str):
            value = json.loads(raw)
        elif name in DECIMAL_COLUMNS and raw is not None:
            value = Decimal(str(raw))
        out[name] = value
    return out


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``; memory."""
    if url in ("sqlite://:memory:", "sqlite:///:memory:"):
        return ":memory:"
    if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
        raise ConfigurationError(
            f"invalid SQLite URL {url!r}: use 'sqlite:///relative/path.db' or "
            "'sqlite:////absolute/path.db' (set INSTRUMENT_DATABASE_URL)"
        )
    return url[len("sqlite:///") :]


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

    def _create_private(self) -> None:
        """Create the database file 0600 before SQLite would create it 0644 (umask aside)."""
        if self.path == ":memory:" or os.path.exists(self.path):
            return
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE)
        except FileExistsError:  # another process created it first: keep its file
            return
        except OSError as exc:
            raise self._translate(sqlite3.OperationalError(f"unable to open database file: "
                                                           f"{exc.strerror}"), "open", ()) from exc
        os.close(fd)  # an empty file is an empty SQLite database

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        self._create_private()
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise self._translate(exc, "open", ()) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            if self.path != ":memory:":
                _set_wal(conn, self.busy_timeout_s)
            conn.execute("PRAGMA synchronous = FULL")
            # Random execution ids dirty pages all over three indexes; a batch re-reads and
            # re-writes them. A 32 MiB page cache (default 2 MiB) keeps them in memory, and a
            # checkpoint every 4,000 WAL pages (default 1,000) writes a page dirtied by several
            # batches back once: ~15% more records/s on a 60k-row file, same durability.
            conn.execute(f"PRAGMA cache_size = {-_CACHE_KIB}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_WAL_CHECKPOINT_PAGES}")
            # exact decimal sums of the cost columns (the ledger writer and budgets use them)
            money.register(conn)
            # schema v6 widens CHECK constraints by editing sqlite_schema (see its file); a
            # build that turns on SQLite's defensive mode by default would refuse that
            defensive = getattr(sqlite3, "SQLITE_DBCONFIG_DEFENSIVE", None)
            if defensive is not None and hasattr(conn, "setconfig"):
                conn.setconfig(defensive, False)
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc, "open", ()) from exc
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
                raise self._translate(exc, "instrument migrate", ()) from exc
            self._schema_ok = True
            return version

    def schema_version(self) -> int | None:
        self._after_fork()
        with self._lock:
            conn = self._connection()
            try:
                return migrations.sqlite_schema_version(conn)
            except sqlite3.Error as exc:
                raise self._translate(exc, "the schema version query", ()) from exc

    def apply(
        self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
    ) -> ApplyResult:
        if not records:
            return ApplyResult(0, 0)
        statement = f"ingest(batch of {len(records)})"
        # Rows are pure functions of the records: build them before taking the write lock, so
        # other threads and processes wait only for the SQL.
        try:
            prepared = PreparedBatch(records, default_writers, capture_content=self.capture_content)
        except (OverflowError, ValueError) as exc:  # e.g. a time with no UTC form: the record's
            raise self._translate(exc, statement, records) from exc
        self._after_fork()
        with self._lock:
            conn = self._connection()
            try:
                self._ensure_schema(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = apply_prepared(conn, prepared)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except (sqlite3.Error, OverflowError, UnicodeError) as exc:
                # UnicodeError: a lone surrogate cannot be bound (utf-8): the record's fault
                raise self._translate(exc, statement, records) from exc
            return result

    def _select(self, sql: str, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        self._after_fork()
        with self._lock:
            conn = self._connection()
            try:
                self._ensure_schema(conn)
                cursor = conn.execute(sql, tuple(params))
                return [_row_dict(cursor, row) for row in cursor.fetchall()]
            except (sqlite3.Error, UnicodeError) as exc:
                raise self._translate(exc, "a read", ()) from exc

    def recent_executions(
        self, limit: int = 20, where: ExecutionFilter | None = None
    ) -> list[dict[str, Any]]:
        clauses: list[str] = []
        params: list[object] = []
        if where is not None:
            for column in ("agent_id", "user_id", "status", "engine", "tenant_id",
                           "parent_execution_id"):
                value = getattr(where, column)
                if value is not None:
                    clauses.append(f"{column} = ?")
                    params.append(value)
            if where.tag is not None:
                clauses.append("EXISTS (SELECT 1 FROM json_each(agent_executions.tags) "
                               "WHERE value = ?)")
                params.append(where.tag)
            for column, op in (("since", ">="), ("until", "<")):
                bound = getattr(where, column)
                if bound is not None:
                    clauses.append(f"started_at {op} ?")
                    params.append(utc(bound).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"))
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

    # -- budgets (BudgetSource) --------------------------------------------------------------

    def spend(self, per: BudgetPer, key: str, since: datetime) -> Spend:
        """Committed spend of `key` since `since` (:mod:`instrument.stores.sqlite.budget`)."""
        budget_column(per)
        self._after_fork()
        with self._lock:
            conn = self._connection()
            try:
                self._ensure_schema(conn)
                return spend_sqlite(conn, per, key, since)
            except sqlite3.Error as exc:
                raise self._translate(exc, "the budget spend read", ()) from exc

    def reserve(self, per: BudgetPer, key: str, since: datetime, limit_usd: Decimal | None,
                limit_tokens: int | None, execution_id: UUID, ttl_s: float) -> Reservation:
        """Atomically (``BEGIN IMMEDIATE``): spend below both limits -> `execution_id` in
        flight (:mod:`instrument.stores.sqlite.budget`)."""
        budget_column(per)
        self._after_fork()
        with self._lock:
            conn = self._connection()
            try:
                self._ensure_schema(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    reservation = reserve_sqlite(conn, per, key, since, limit_usd,
                                                 limit_tokens, execution_id, ttl_s)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._translate(exc, "the budget reservation", ()) from exc
            return reservation

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._schema_ok = False
            if conn is not None and self._pid == os.getpid():
                conn.close()

    # -- errors -----------------------------------------------------------------------------

    def _translate(
        self, exc: BaseException, statement: str, records: Sequence[ExecutionRecord]
    ) -> SchemaMismatch | StoreUnavailable | RecordRejected:
        """By evidence: what SQLite raised executing `statement` for `records` rejects a record
        of them (the pipeline bisects); a locked, unreadable, full or read-only file is
        "unavailable" (retried). The message names the statement, never its SQL."""
        message = " ".join(str(exc).split())[:300]
        low = message.lower()
        code = str(getattr(exc, "sqlite_errorname", "") or "")
        primary = code.split("_", 2)[:2]
        if any(s in low for s in ("no such table", "no such column", "has no column named",
                                  "no such function")):
            self._schema_ok = False  # check the schema again (and name what is missing) next time
            return SchemaMismatch(
                f"SQLite database {self.path}: {statement} failed ({message}): the schema is "
                f"missing or incomplete; run `instrument migrate --database-url "
                f"{self.display_url}`"
            )
        if "_".join(primary) in ("SQLITE_BUSY", "SQLITE_LOCKED") or (
            not code and ("locked" in low or "busy" in low)
        ):
            return StoreUnavailable(
                f"SQLite database {self.path} stayed locked by another writer for more than "
                f"{self.busy_timeout_s:g} s; the batch will be retried"
            )
        if "_".join(primary) in _UNAVAILABLE_CODES or (not code and any(
            s in low for s in ("unable to open", "not a database", "readonly", "disk i/o")
        )):
            return StoreUnavailable(
                f"cannot use SQLite database {self.path!r} for {statement}: {message}; check "
                "that the directory exists and is writable, that the disk has room and that the "
                "file is a SQLite database, or point INSTRUMENT_DATABASE_URL at another file"
            )
        # evidence about the data: SQLite's engine answered with an error code for our
        # statement, or the driver could not bind a value of the record
        data_error = bool(code) or isinstance(
            exc, (OverflowError, ValueError, sqlite3.DataError, sqlite3.IntegrityError)
        ) or (isinstance(exc, (sqlite3.InterfaceError, sqlite3.ProgrammingError))
              and "binding" in low)
        if records and data_error:
            single = str(records[0].execution_id) if len(records) == 1 else None
            return RecordRejected(
                f"SQLite rejected a record of {statement} ({type(exc).__name__}: {message}); "
                "the batch is split until the record is found and quarantined with this error",
                execution_id=single,
            )
        return StoreUnavailable(f"SQLite database {self.path}: {statement} failed ({message})")


def _set_wal(conn: sqlite3.Connection, wait_s: float) -> None:
    """``PRAGMA journal_mode = WAL``, retried while another process holds the file: SQLite
    answers "database is locked" at once, without its busy handler, when a process is
    creating or migrating a fresh file in rollback-journal mode. Waits at most `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)
