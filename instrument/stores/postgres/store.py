"""PostgreSQL store: psycopg 3 and a psycopg_pool ConnectionPool, opened on first use.

A batch is ONE round trip: ``select instrument_ingest(records, default_writers)``, a server-side
function (migration 0001) that applies every enabled writer for the whole batch in the
statement's single transaction, gated by the idempotency ledger, with aggregates added in SQL.
The Supabase store calls the same function over RPC.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from pydantic import TypeAdapter

from instrument.ais import AISConfig
from instrument.errors import ConfigurationError, RecordRejected, SchemaMismatch, StoreUnavailable
from instrument.record import ExecutionRecord
from instrument.stores import migrations
from instrument.stores.base import ApplyResult, ExecutionFilter
from instrument.urls import mask_url

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

__all__ = ["PostgresStore", "ingest_json", "ingest_payload"]

_log = logging.getLogger(__name__)

_FIX_URL = "INSTRUMENT_DATABASE_URL (or configure(database_url=...) / --database-url)"
_MIGRATE = (
    "run `instrument migrate` against this database (INSTRUMENT_DATABASE_URL or --database-url)"
)
#: SQLSTATEs meaning "the schema is not what we expect".
_SCHEMA_STATES = {"42P01", "42883", "42703", "3F000", "42704"}
#: Transient conflicts worth retrying at once (none expected: locks are taken in key order).
_RETRY_STATES = {"40P01", "40001"}
_FILTER_COLUMNS = ("agent_id", "user_id", "status", "engine")
#: An escaped NUL (``\u0000``) in JSON text, not preceded by an escaped backslash.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def ingest_payload(record: ExecutionRecord, *, capture_content: bool) -> dict[str, Any]:
    """The JSON ``instrument_ingest`` receives for `record` (response text only on capture)."""
    data = record.to_json_dict()
    if not capture_content and data["result"].get("response") is not None:
        data["result"] = {**data["result"], "response": None}
    return data


def ingest_json(records: Sequence[ExecutionRecord], *, capture_content: bool) -> str:
    """The ``records`` argument of ``instrument_ingest`` as JSON text (pydantic, in one call).

    Same content as a list of :func:`ingest_payload`, minus null-valued fields (and, without
    capture, the ``response`` key), which the SQL reads exactly as nulls: about a third less
    text to encode, send and parse. NUL characters, which Postgres cannot store, become U+FFFD.
    """
    # An exclude set costs pydantic about a quarter of the encoding time: pass one only when a
    # response must be dropped (a None response is already left out by exclude_none).
    exclude = None
    if not capture_content and any(r.result.response is not None for r in records):
        exclude = {"__all__": {"result": {"response"}}}
    text = _records_adapter().dump_json(list(records), exclude=exclude,
                                        exclude_none=True).decode()
    # Postgres text and jsonb cannot hold NUL: keep the record, with U+FFFD in its place.
    return _JSON_NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


@cache
def _records_adapter() -> TypeAdapter[list[ExecutionRecord]]:
    return TypeAdapter(list[ExecutionRecord])


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
    ) -> None:
        _import_psycopg()
        from psycopg.conninfo import conninfo_to_dict

        self.url = url
        self.display_url = mask_url(url)
        try:
            params = conninfo_to_dict(url)
        except Exception as exc:  # psycopg raises ProgrammingError for any malformed URL
            raise ConfigurationError(
                f"invalid PostgreSQL URL {self.display_url!r}: {exc}; fix {_FIX_URL}, "
                "e.g. postgresql://user:password@host:5432/dbname"
            ) from exc
        port = str(params.get("port", "5432"))
        if not all(p.strip().isdigit() for p in port.split(",")):
            raise ConfigurationError(
                f"invalid port {port!r} in PostgreSQL URL {self.display_url!r}; fix {_FIX_URL}, "
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
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Any] | None = None
        self._pid = os.getpid()
        self._schema_ok = False

    # -- connections ------------------------------------------------------------------------

    def _connect_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": max(1, round(self.connect_timeout_s)),
            # No server-side prepared statements and no startup "options": both break behind
            # PgBouncer in transaction mode. The statement timeout is SET per connection.
            "prepare_threshold": None,
            "application_name": "logged-execution",
        }

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        """Per new pooled connection: bound every statement (a hung batch must not block)."""
        conn.execute(f"set statement_timeout = {int(self.statement_timeout_ms)}".encode())

    def _probe(self) -> None:
        """Connect once, directly, so a failure says why (the pool only says "timeout")."""
        import psycopg

        try:
            with psycopg.connect(self.url, **self._connect_kwargs()):
                pass
        except psycopg.Error as exc:
            raise self._translate(exc, ()) from exc

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
                    configure=self._configure,
                    check=ConnectionPool.check_connection,
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
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        import psycopg

        pool = self._get_pool()
        conn = self._checkout(pool)
        try:
            yield conn
        except psycopg.Error as exc:
            raise self._translate(exc, ()) from exc
        finally:
            pool.putconn(conn)

    def _ensure_schema(self, conn: psycopg.Connection[Any]) -> None:
        if self._schema_ok:
            return
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
        return f"PostgreSQL database {self.display_url} {state}: {_MIGRATE}"

    # -- Store protocol -------------------------------------------------------------------------

    def migrate(self) -> int:
        import psycopg

        with self._connection() as conn:
            try:
                version = migrations.migrate_postgres(conn)
            except psycopg.Error as exc:
                error = self._translate(exc, ())
                if isinstance(error, StoreUnavailable):
                    raise error from exc
                # Not "run migrate" (we are migrating): say what failed; nothing was applied.
                raise SchemaMismatch(
                    f"`instrument migrate` failed on {self.display_url} and was rolled back: "
                    f"{exc.sqlstate}: {' '.join(str(exc).split())}"
                ) from exc
        self._schema_ok = True
        return version

    def schema_version(self) -> int | None:
        import psycopg

        with self._connection() as conn:
            try:
                return migrations.postgres_schema_version(conn)
            except psycopg.Error as exc:
                raise self._translate(exc, ()) from exc

    def apply(
        self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
    ) -> ApplyResult:
        if not records:
            return ApplyResult(0, 0)
        import psycopg

        payload = ingest_json(records, capture_content=self.capture_content)
        writers = sorted(default_writers)
        with self._connection() as conn:
            for attempt in range(3):
                try:
                    self._ensure_schema(conn)
                    row = conn.execute(
                        "select public.instrument_ingest(%s::jsonb, %s::text[])",
                        (payload, writers),
                    ).fetchone()
                    break
                except psycopg.Error as exc:
                    if exc.sqlstate in _RETRY_STATES and attempt < 2:
                        _log.info("retrying a batch after %s", exc.sqlstate)
                        continue
                    raise self._translate(exc, records) from exc
        result = row[0] if row else {}
        return ApplyResult(applied=int(result["applied"]), duplicates=int(result["duplicates"]))

    def _select(self, query: Any, params: Sequence[object] = ()) -> list[dict[str, Any]]:
        import psycopg
        from psycopg.rows import dict_row

        with self._connection() as conn:
            try:
                self._ensure_schema(conn)
                with conn.cursor(row_factory=dict_row) as cur:
                    cur.execute(query, tuple(params))
                    rows = cur.fetchall()
            except psycopg.Error as exc:
                raise self._translate(exc, ()) from exc
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
        query: sql.Composable = sql.SQL("select * from public.agent_executions")
        if clauses:
            query = query + sql.SQL(" where ") + sql.SQL(" and ").join(clauses)
        query = query + sql.SQL(" order by started_at desc, id limit %s")
        params.append(int(limit))
        return self._select(query, params)

    def agent_stats(self) -> list[dict[str, Any]]:
        return self._select("select * from public.agent_stats order by agent_id")

    def ais_config(self) -> AISConfig:
        """The AIS configuration stored in this database (``ais_config``)."""
        rows = self._select("select key, value from public.ais_config")
        return AISConfig.from_rows((r["key"], r["value"]) for r in rows)

    def intensity_metrics(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        if agent_id is None:
            return self._select("select * from public.agent_intensity_metrics order by agent_id")
        return self._select(
            "select * from public.agent_intensity_metrics where agent_id = %s", (agent_id,)
        )

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
            self._schema_ok = False
        if pool is not None and self._pid == os.getpid():
            pool.close()

    # -- errors -----------------------------------------------------------------------------

    def _translate(
        self, exc: BaseException, records: Sequence[ExecutionRecord]
    ) -> StoreUnavailable | SchemaMismatch | RecordRejected:
        import psycopg

        state = getattr(exc, "sqlstate", None)
        message = " ".join(str(exc).split())
        low = message.lower()
        if state in _SCHEMA_STATES:
            self._schema_ok = False
            return SchemaMismatch(
                f"PostgreSQL database {self.display_url}: {message}: the logged-execution "
                f"schema is missing or incomplete; {_MIGRATE}"
            )
        if state is not None and state[:2] in ("22", "23"):
            single = str(records[0].execution_id) if len(records) == 1 else None
            return RecordRejected(
                f"PostgreSQL refused a record of the batch ({state}: {message})",
                execution_id=single,
            )
        if state in ("28P01", "28000") or "password authentication failed" in low or (
            "role" in low and "does not exist" in low
        ):
            return StoreUnavailable(
                f"PostgreSQL at {self._host} rejected the credentials of {self.display_url} "
                f"({message}); fix the user/password in {_FIX_URL}"
            )
        if state == "3D000" or ("database" in low and "does not exist" in low):
            return StoreUnavailable(
                f"database {self._dbname!r} does not exist on PostgreSQL at {self._host}; "
                f"create it (createdb {self._dbname}) or fix the database name in {_FIX_URL}"
            )
        if state == "42501":
            return StoreUnavailable(
                f"the PostgreSQL user of {self.display_url} lacks a privilege ({message}); "
                f"connect as the schema owner or service_role via {_FIX_URL}"
            )
        if isinstance(exc, psycopg.OperationalError) or (state or "").startswith(("08", "57")):
            hint = (
                f"is PostgreSQL running at {self._host}? Check host and port in {_FIX_URL}"
                if "refused" in low or "timeout" in low or "could not" in low
                else "the batch will be retried"
            )
            return StoreUnavailable(
                f"PostgreSQL at {self._host} is unavailable ({message}); {hint}"
            )
        return StoreUnavailable(f"PostgreSQL error on {self.display_url} ({state}: {message})")
