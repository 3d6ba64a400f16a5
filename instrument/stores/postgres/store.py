"""PostgreSQL store: psycopg 3 and a psycopg_pool ConnectionPool, opened on first use.

A batch is ONE round trip: ``begin; set local statement_timeout; select
instrument_ingest(records, default_writers); commit`` sent as one pipeline. The server-side
function applies every enabled writer for the whole batch in that transaction, gated by the
idempotency ledger, with aggregates added in SQL. The Supabase store calls the same function
over RPC. Every wait is bounded (:mod:`instrument.stores.postgres.timeouts`), and errors are
judged by evidence (:mod:`instrument.stores.sqlstate`): what the server raised executing the
batch rejects a record of it (bisected by the pipeline); only connection-level failures are
"unavailable".
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
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
from instrument.stores.postgres.errors import FIX_URL, MIGRATE, brief, first_line, single, translate
from instrument.stores.postgres.payload import ingest_json, ingest_payload
from instrument.stores.postgres.timeouts import Deadline, libpq_options
from instrument.stores.sqlstate import RETRY_STATES
from instrument.urls import mask_url

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresStore", "ingest_json", "ingest_payload"]

_log = logging.getLogger(__name__)

_INGEST = b"select public.instrument_ingest(%s::jsonb, %s::text[])"
_SPEND = b"select public.instrument_budget_spend(%s, %s, %s)"
_RESERVE = b"select public.instrument_budget_reserve(%s, %s, %s, %s, %s, %s, %s)"
_FILTER_COLUMNS = ("agent_id", "user_id", "status", "engine", "tenant_id",
                   "parent_execution_id")


def _import_psycopg() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(
            "the PostgreSQL store needs psycopg 3 and psycopg-pool: "
            "pip install 'logged-execution[postgres]'"
        ) from exc


class PostgresStore:
    """The built-in writers on PostgreSQL. Connects lazily; safe across threads and forks."""

    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        capture_content: bool = False,
        auto_migrate: bool = False,
        pool_max_size: int = 4,
        connect_timeout_s: float = 5.0,
        statement_timeout_ms: int = 30_000,
        network_timeout_s: float = 10.0,
    ) -> None:
        """`connect_timeout_s`: opening a connection; `statement_timeout_ms`: a batch on the
        server (``SET LOCAL``); `network_timeout_s`: keepalives and ``tcp_user_timeout``, and
        the client-side deadline (statement plus network timeout) after which a connection
        that stopped answering is dropped. See :mod:`instrument.stores.postgres.timeouts`."""
        _import_psycopg()
        from psycopg.conninfo import conninfo_to_dict

        self.url = url
        self.display_url = mask_url(url)
        try:
            params = conninfo_to_dict(url)
        except Exception as exc:  # psycopg raises ProgrammingError for any malformed URL
            raise ConfigurationError(
                f"invalid PostgreSQL URL {self.display_url!r}: {exc}; fix {FIX_URL}, "
                "e.g. postgresql://user:password@host:5432/dbname"
            ) from exc
        port = str(params.get("port", "5432"))
        if not all(p.strip().isdigit() for p in port.split(",")):
            raise ConfigurationError(
                f"invalid port {port!r} in PostgreSQL URL {self.display_url!r}; fix {FIX_URL}, "
                "e.g. postgresql://user:password@host:5432/dbname"
            )
        self._host = f"{params.get('host', 'localhost')}:{port}"
        self._dbname = str(params.get("dbname", params.get("user", "")))
        self.capture_content = capture_content
        #: Apply migrations on first use instead of raising SchemaMismatch.
        self.auto_migrate = auto_migrate
        self.pool_max_size = pool_max_size
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms
        self.network_timeout_s = network_timeout_s
        self._libpq = libpq_options(params, connect_timeout_s=connect_timeout_s,
                                    network_timeout_s=network_timeout_s)
        self._set_timeout = f"set local statement_timeout = {int(statement_timeout_ms)}".encode()
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Any] | None = None
        self._pid = os.getpid()
        self._schema_ok = False

    # -- connections ------------------------------------------------------------------------

    @property
    def deadline_s(self) -> float:
        """How long one use of a connection may take before it is dropped (client side)."""
        return self.statement_timeout_ms / 1000 + self.network_timeout_s

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            # No server-side prepared statements and no startup "options": both break behind
            # PgBouncer in transaction mode. The statement timeout is SET LOCAL per batch.
            "prepare_threshold": None,
            "application_name": "logged-execution",
            **self._libpq,
        }

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        """The pool's liveness check on checkout, bounded: a silent peer must not hang it."""
        with Deadline(conn, self.network_timeout_s):
            conn.execute(b"")

    def _probe(self) -> None:
        """Connect once, directly, so a failure says why (the pool only says "timeout")."""
        import psycopg

        try:
            with psycopg.connect(self.url, **self._connect_kwargs()):
                pass
        except psycopg.Error as exc:
            raise self._translate(exc, "connect", ()) from exc

    def _get_pool(self) -> ConnectionPool[Any]:
        if self._pid != os.getpid():  # pool threads and sockets do not survive a fork
            self._pid = os.getpid()
            self._lock = threading.Lock()
            self._pool = None
            self._schema_ok = False
        with self._lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                self._probe()
                pool: ConnectionPool[Any] = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=max(1, self.pool_max_size),
                    kwargs=self._connect_kwargs(),
                    check=self._check,
                    timeout=self.connect_timeout_s,
                    name="logged-execution",
                    open=False,
                )
                pool.open(wait=False)
                self._pool = pool
            return self._pool

    def _checkout(self, pool: ConnectionPool[Any]) -> psycopg.Connection[Any]:
        """A pooled connection; fails within ~0.5 s when the server refuses connections."""
        from psycopg_pool import PoolTimeout

        first = min(0.5, self.connect_timeout_s)
        try:
            return cast("psycopg.Connection[Any]", pool.getconn(timeout=first))
        except PoolTimeout:
            pass
        self._probe()  # raises the real reason (refused, auth, ...) when the server is unusable
        try:
            return cast("psycopg.Connection[Any]",
                        pool.getconn(timeout=max(0.1, self.connect_timeout_s - first)))
        except PoolTimeout as exc:
            raise StoreUnavailable(
                f"no free PostgreSQL connection to {self.display_url} within "
                f"{self.connect_timeout_s:g} s (pool of {self.pool_max_size}); retrying later"
            ) from exc

    @contextmanager
    def _connection(self, statement: str, records: Sequence[ExecutionRecord] = (),
                    deadline_s: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection for `statement` (named in errors), dropped after `deadline_s`."""
        import psycopg

        pool = self._get_pool()
        conn = self._checkout(pool)
        try:
            with Deadline(conn, deadline_s) as deadline:
                try:
                    yield conn
                except psycopg.Error as exc:
                    if deadline.expired:
                        raise StoreUnavailable(
                            f"PostgreSQL at {self._host} did not answer {statement} within "
                            f"{deadline_s:g} s (statement timeout + network timeout); the "
                            "connection was dropped and the batch will be retried on a new one"
                        ) from exc
                    raise self._translate(exc, statement, records) from exc
        finally:
            pool.putconn(conn)  # a broken connection is discarded, a failed transaction reset

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        if self._schema_ok:
            return
        import psycopg

        try:
            self._check_schema(conn)
        except psycopg.Error as exc:
            raise self._translate(exc, "the schema check", ()) from exc

    def _check_schema(self, conn: psycopg.Connection[Any]) -> None:
        expected = migrations.expected_version("postgres")
        version = migrations.postgres_schema_version(conn)
        if version is not None and version > expected:
            raise SchemaMismatch(
                f"PostgreSQL database {self.display_url} has schema v{version}, newer than "
                f"this logged-execution expects (v{expected}): upgrade logged-execution"
            )
        missing = migrations.missing_columns(
            "postgres",
            migrations.postgres_columns(conn, list(migrations.expected_columns("postgres"))),
        )
        absent = sorted(set(migrations.expected_functions()) - migrations.postgres_functions(conn))
        if version != expected or missing or absent:
            if not self.auto_migrate:
                raise SchemaMismatch(self._schema_problem(version, expected, missing, absent))
            _log.info("migrating %s to schema v%d", self.display_url, expected)
            migrations.migrate_postgres(conn)
        self._schema_ok = True

    def _schema_problem(
        self,
        version: int | None,
        expected: int,
        missing: list[tuple[str, str | None]],
        absent_functions: list[str],
    ) -> str:
        if version is None:
            state = "has no logged-execution schema"
        elif version < expected:
            state = f"has schema v{version}, expected v{expected}"
        else:
            parts = [f"table {t}" if c is None else f"column {t}.{c}" for t, c in missing]
            parts += [f"function {f}()" for f in absent_functions]
            state = f"(schema v{version}) is missing " + ", ".join(parts)
        return f"PostgreSQL database {self.display_url} {state}: {MIGRATE}"

    # -- Store protocol -------------------------------------------------------------------------

    def migrate(self) -> int:
        import psycopg

        # no deadline: a migration may rewrite large tables (keepalives still apply)
        with self._connection("instrument migrate") as conn:
            try:
                version = migrations.migrate_postgres(conn)
            except psycopg.Error as exc:
                error = self._translate(exc, "instrument migrate", ())
                if isinstance(error, StoreUnavailable):
                    raise error from exc
                # Not "run migrate" (we are migrating): say what failed; nothing was applied.
                raise SchemaMismatch(
                    f"`instrument migrate` failed on {self.display_url} and was rolled back: "
                    f"{brief(exc)}"
                ) from exc
        self._schema_ok = True
        return version

    def schema_version(self) -> int | None:
        import psycopg

        with self._connection("the schema version query", deadline_s=self.deadline_s) as conn:
            try:
                return migrations.postgres_schema_version(conn)
            except psycopg.Error as exc:
                raise self._translate(exc, "the schema version query", ()) from exc

    def apply(
        self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
    ) -> ApplyResult:
        if not records:
            return ApplyResult(0, 0)
        import psycopg

        statement = f"instrument_ingest(batch of {len(records)})"
        try:
            payload = ingest_json(records, capture_content=self.capture_content)
        except (ValueError, OverflowError) as exc:  # e.g. a lone surrogate: the record's fault
            raise RecordRejected(
                f"a record of {statement} was rejected: it cannot be encoded as JSON "
                f"({first_line(exc)})",
                execution_id=single(records)) from exc
        writers = sorted(default_writers)
        with self._connection(statement, records, self.deadline_s) as conn:
            self._ensure_schema(conn)
            for attempt in range(3):
                try:
                    row = self._ingest(conn, payload, writers)
                    break
                except psycopg.Error as exc:
                    if exc.sqlstate in RETRY_STATES and attempt < 2:
                        _log.info("retrying %s after %s", statement, exc.sqlstate)
                        continue
                    raise
        result = row[0] if row else {}
        return ApplyResult(applied=int(result["applied"]), duplicates=int(result["duplicates"]))

    def _ingest(self, conn: psycopg.Connection[Any], payload: str,
                writers: list[str]) -> tuple[Any, ...] | None:
        """One round trip: begin, SET LOCAL the statement timeout, ingest, commit (a pipeline:
        one Sync). On a server error the rest is skipped and the transaction rolled back."""
        import psycopg
        from psycopg.pq import TransactionStatus

        try:
            with conn.pipeline():
                conn.execute(b"begin")
                conn.execute(self._set_timeout)
                cursor = conn.execute(_INGEST, (payload, writers))
                conn.execute(b"commit")
            return cursor.fetchone()
        except psycopg.Error:
            if not conn.broken and conn.info.transaction_status != TransactionStatus.IDLE:
                # broad: the rollback of a failed batch may fail too; the pool resets it then
                with contextlib.suppress(Exception):
                    conn.execute(b"rollback")
            raise

    def _select(self, query: Any, params: Sequence[object] = (), *,
                what: str = "a read") -> list[dict[str, Any]]:
        from psycopg.rows import dict_row

        with self._connection(what, deadline_s=self.deadline_s) as conn:
            self._ensure_schema(conn)
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(query, tuple(params))
                rows = cur.fetchall()
        return [{k: str(v) if isinstance(v, UUID) else v for k, v in r.items()} for r in rows]

    def recent_executions(
        self, limit: int = 20, where: ExecutionFilter | None = None
    ) -> list[dict[str, Any]]:
        from psycopg import sql

        clauses: list[sql.Composable] = []
        params: list[object] = []
        if where is not None:
            for column in _FILTER_COLUMNS:
                value = getattr(where, column)
                if value is not None:
                    clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                    params.append(value)
            if where.tag is not None:
                clauses.append(sql.SQL("tags ? %s"))
                params.append(where.tag)
            for column, op in (("since", ">="), ("until", "<")):
                bound = getattr(where, column)
                if bound is not None:
                    clauses.append(sql.SQL(f"started_at {op} %s"))
                    params.append(_utc(bound))
        query: sql.Composable = sql.SQL("select * from public.agent_executions")
        if clauses:
            query = query + sql.SQL(" where ") + sql.SQL(" and ").join(clauses)
        query = query + sql.SQL(" order by started_at desc, id limit %s")
        params.append(int(limit))
        return self._select(query, params, what="the agent_executions read")

    def agent_stats(self) -> list[dict[str, Any]]:
        return self._select("select * from public.agent_stats order by agent_id",
                            what="the agent_stats read")

    def ais_config(self) -> AISConfig:
        """The AIS configuration stored in this database (``ais_config``)."""
        rows = self._select("select key, value from public.ais_config",
                            what="the ais_config read")
        return AISConfig.from_rows((r["key"], r["value"]) for r in rows)

    def intensity_metrics(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        what = "the agent_intensity_metrics read"
        if agent_id is None:
            return self._select(
                "select * from public.agent_intensity_metrics order by agent_id", what=what)
        return self._select(
            "select * from public.agent_intensity_metrics where agent_id = %s", (agent_id,),
            what=what)

    # -- budgets (BudgetSource) --------------------------------------------------------------

    def _call(self, query: bytes, params: Sequence[object], what: str) -> Any:
        """One function call in its own transaction (autocommit), bounded; its value."""
        with self._connection(what, deadline_s=self.deadline_s) as conn:
            self._ensure_schema(conn)
            row = conn.execute(query, tuple(params)).fetchone()
        return None if row is None else row[0]

    def spend(self, per: BudgetPer, key: str, since: datetime) -> Spend:
        """Committed spend of `key` since `since`: ``instrument_budget_spend`` (whole UTC days
        from usage_ledger, a rolling window's first partial day from agent_executions)."""
        budget_column(per)
        out = self._call(_SPEND, (per, key, _utc(since)), "the budget spend read")
        return Spend(usd=Decimal(out["usd"]), tokens=int(out["tokens"]), runs=int(out["runs"]))

    def reserve(self, per: BudgetPer, key: str, since: datetime, limit_usd: Decimal | None,
                limit_tokens: int | None, execution_id: UUID, ttl_s: float) -> Reservation:
        """``instrument_budget_reserve``: one statement, serialized per key by an advisory
        transaction lock."""
        budget_column(per)
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s!r}")
        out = self._call(_RESERVE, (per, key, _utc(since), limit_usd, limit_tokens,
                                    execution_id, float(ttl_s)), "the budget reservation")
        return Reservation(allowed=bool(out["allowed"]), spent_usd=Decimal(out["spent_usd"]),
                           spent_tokens=int(out["spent_tokens"]),
                           in_flight=int(out["in_flight"]))

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._schema_ok = False
        if pool is not None and self._pid == os.getpid():
            pool.close()

    # -- errors -----------------------------------------------------------------------------

    def _translate(
        self, exc: BaseException, statement: str, records: Sequence[ExecutionRecord]
    ) -> StoreUnavailable | SchemaMismatch | RecordRejected:
        error = translate(exc, statement, records, host=self._host,
                          display_url=self.display_url, dbname=self._dbname)
        if isinstance(error, SchemaMismatch):
            self._schema_ok = False  # check the schema again (and name what is missing) next time
        return error


def _utc(value: datetime) -> datetime:
    """`value` with a timezone (a naive datetime is read as UTC, as records' are)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value
