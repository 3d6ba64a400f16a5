"""The Supabase store: one ``instrument_ingest`` RPC per batch through the official client.

Writes go through PostgREST as a single call of the Postgres function
``instrument_ingest(records jsonb, default_writers text[]) returns jsonb`` (created by the
Postgres migration, ``instrument schema --dialect postgres``). The function applies all four
writers for the whole batch in one transaction and skips execution ids it has already applied,
so a retried batch changes nothing. Reads for the CLI are plain table selects.

The store needs a key that may call the function, i.e. the **service-role** key
(``SUPABASE_SERVICE_ROLE_KEY``); the tables have row level security, and the function is not
executable by ``anon``/``authenticated``.

A ``supabase.Client`` or ``supabase.AsyncClient`` you already have can be passed as ``client=``.
A sync client is used as is. An async client is driven from the store's own event-loop thread
(the pipeline calls the store from a worker thread): the store reuses the client's URL, headers
(API key, bearer token) and schema, but opens its own HTTP connections on that loop, so the
connections your application's event loop uses are never touched from another loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from instrument.ais import AISConfig
from instrument.errors import (
    ConfigurationError,
    RecordRejected,
    SchemaMismatch,
    StoreUnavailable,
)
from instrument.record import ExecutionRecord
from instrument.stores.base import (
    ApplyResult,
    BudgetPer,
    ExecutionFilter,
    Reservation,
    Spend,
    budget_column,
)
from instrument.stores.migrations import expected_version
from instrument.stores.postgres.payload import ingest_payload
from instrument.stores.sqlstate import classify as classify_sqlstate

__all__ = ["INGEST_FUNCTION", "SupabaseStore", "project_url"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The Postgres function that applies a batch (see instrument/stores/postgres/sql/).
INGEST_FUNCTION = "instrument_ingest"
#: The budget functions (schema v6), called over RPC like the ingest function.
SPEND_FUNCTION = "instrument_budget_spend"
RESERVE_FUNCTION = "instrument_budget_reserve"
SCHEMA_VERSION_TABLE = "instrument_schema_version"

#: Waiting for an answer (the statement timeout plus the network timeout, as for Postgres).
_DEFAULT_TIMEOUT_S = 40.0
_DEFAULT_CONNECT_TIMEOUT_S = 5.0

_MIGRATION_HINT = (
    "apply the logged-execution migration to your Supabase database: "
    "`instrument schema --dialect postgres > supabase/migrations/<timestamp>_logged_execution.sql` "
    "then `supabase db push` (or paste that SQL into the Supabase SQL editor), or run "
    "`instrument migrate --database-url postgresql://postgres:<password>@db.<project>.supabase.co"
    ":5432/postgres` with the direct database URL; see examples/supabase/README.md"
)
_KEY_HINT = (
    "set SUPABASE_SERVICE_ROLE_KEY to the project's service-role key (Project Settings -> API); "
    "the anon key and user tokens may not write the execution tables"
)

# PostgREST's own codes (PGRSTnnn), grouped by what the pipeline should do about them; a
# Postgres SQLSTATE it passes on is judged like the Postgres store's (stores/sqlstate.py).
_SCHEMA_CODES = {"PGRST200", "PGRST202", "PGRST203", "PGRST204", "PGRST205"}
_AUTH_CODES = {"PGRST300", "PGRST301", "PGRST302", "PGRST303", "401", "403"}
#: PostgREST cannot reach or use its database: connection, pool timeout, schema cache load.
_DOWN_CODES = {"PGRST000", "PGRST001", "PGRST002", "PGRST003"}
#: HTTP statuses of a non-PostgREST answer (a gateway's page) that refuse the request's body.
_BODY_STATUSES = {"400", "413", "414", "422"}


def project_url(database_url: str, supabase_url: str | None) -> str | None:
    """The project URL for a ``supabase`` database URL: `supabase_url` (``SUPABASE_URL``), or
    the host a ``supabase://<host>`` URL names (``https://`` unless it gives a scheme)."""
    if database_url.startswith("supabase://"):
        host = database_url[len("supabase://"):].strip("/")
        if host:
            return host if host.startswith(("http://", "https://")) else f"https://{host}"
    return supabase_url


class SupabaseStore:
    """Store backed by a Supabase project (PostgREST + the SDK's Postgres migration).

    Build it with ``open_store("supabase", supabase_url=..., supabase_key=...)`` (what
    ``configure(database_url="supabase")`` does) or directly: ``SupabaseStore(url=..., key=...)``
    or ``SupabaseStore(client=existing_client)``. No connection is made until the first call.
    Response text is sent to the database only with ``capture_content=True``.
    """

    dialect = "supabase"

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        client: Any = None,
        schema: str = "public",
        timeout_s: float = _DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = _DEFAULT_CONNECT_TIMEOUT_S,
        capture_content: bool = False,
    ) -> None:
        """`timeout_s`: the longest wait for an answer (HTTP read/write/pool), after which the
        request is dropped and the batch retried; `connect_timeout_s`: opening a connection."""
        if client is None and (not url or not key):
            missing = [n for n, v in (("SUPABASE_URL", url),
                                      ("SUPABASE_SERVICE_ROLE_KEY", key)) if not v]
            raise ConfigurationError(
                f"the Supabase store needs {' and '.join(missing)}: set "
                "SUPABASE_URL (https://<project>.supabase.co) and SUPABASE_SERVICE_ROLE_KEY "
                "(or SUPABASE_KEY), or pass an existing supabase client"
            )
        if url is not None:
            if not url.startswith(("http://", "https://")):
                raise ConfigurationError(
                    f"SUPABASE_URL={url!r} is not an http(s) URL; use "
                    "https://<project>.supabase.co"
                )
            # The project URL is wanted; the REST endpoint is a common copy-paste instead.
            url = url.rstrip("/").removesuffix("/rest/v1").rstrip("/")
        self._url = url
        self._key = key
        self._schema = schema
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._capture_content = capture_content
        self._lock = threading.Lock()
        self._sync_client: Any = None
        self._owns_client = False
        self._async_source: Any = None
        self._async_postgrest: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        if client is not None:
            self._adopt(client)
        shown = url or str(getattr(client, "supabase_url", "")).rstrip("/") or "?"
        self.display_url = f"supabase ({shown})"

    # --- clients --------------------------------------------------------------------------

    def _adopt(self, client: Any) -> None:
        try:
            from supabase import AsyncClient, Client
        except ImportError as exc:  # pragma: no cover - the extra is missing
            raise ConfigurationError(
                "the Supabase store needs the supabase package: pip install "
                "'logged-execution[supabase]'") from exc
        if isinstance(client, Client):
            self._sync_client = client
        elif isinstance(client, AsyncClient):
            self._async_source = client
        else:
            raise ConfigurationError(
                f"client={type(client).__name__} is not a supabase Client or AsyncClient "
                "(create one with supabase.create_client or supabase.acreate_client)")

    def _client(self) -> Any:
        """The sync client, created on first use."""
        with self._lock:
            if self._sync_client is None:
                try:
                    from supabase import ClientOptions, create_client
                except ImportError as exc:  # pragma: no cover
                    raise ConfigurationError(
                        "the Supabase store needs the supabase package: pip install "
                        "'logged-execution[supabase]'") from exc
                import httpx

                assert self._url is not None
                assert self._key is not None
                http = httpx.Client(timeout=self._http_timeout(), follow_redirects=True)
                options = ClientOptions(
                    schema=self._schema,
                    auto_refresh_token=False,
                    persist_session=False,
                    postgrest_client_retry=False,  # the pipeline retries whole batches
                    httpx_client=http,
                )
                try:
                    self._sync_client = create_client(self._url, self._key, options=options)
                except Exception as exc:  # the client validates URL/key; say which variable
                    http.close()
                    raise ConfigurationError(
                        f"cannot create the Supabase client for {self._url!r}: {exc}; check "
                        "SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY") from exc
                self._owns_client = True
            return self._sync_client

    def _run_async(self, make: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``make(postgrest)`` on the store's event-loop thread and wait for it."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, daemon=True,
                                          name="instrument-supabase-loop")
                thread.start()
                self._loop, self._loop_thread = loop, thread
            loop = self._loop

        async def call() -> T:
            if self._async_postgrest is None:
                self._async_postgrest = self._derive_async_postgrest()
            return await make(self._async_postgrest)

        future = asyncio.run_coroutine_threadsafe(call(), loop)
        return future.result(timeout=self._timeout_s * 2)

    def _http_timeout(self) -> Any:
        import httpx

        return httpx.Timeout(self._timeout_s, connect=self._connect_timeout_s)

    def _derive_async_postgrest(self) -> Any:
        import httpx
        from postgrest import AsyncPostgrestClient

        src = self._async_source
        return AsyncPostgrestClient(
            str(src.rest_url),
            schema=src.options.schema,
            headers=dict(src.options.headers),
            http_client=httpx.AsyncClient(timeout=self._http_timeout(),
                                          follow_redirects=True),
            retry_enabled=False,
        )

    def _execute(self, build: Callable[[Any], Any], statement: str = "a read",
                 records: Sequence[ExecutionRecord] = ()) -> Any:
        """Build a request from the client (sync) or postgrest client (async) and run it;
        `statement` names it in errors, `records` are what it applies (for RecordRejected)."""
        try:
            if self._async_source is not None:
                async def run(pg: Any) -> Any:
                    coro: Coroutine[Any, Any, Any] = build(pg).execute()
                    return await coro

                return self._run_async(run)
            return build(self._client()).execute()
        except (ConfigurationError, StoreUnavailable, SchemaMismatch, RecordRejected):
            raise
        except Exception as exc:  # classify every client/transport failure for the pipeline
            raise _classify(exc, self.display_url, statement, records) from exc

    # --- Store protocol -----------------------------------------------------------------

    def migrate(self) -> int:
        """PostgREST cannot run DDL: succeed only when the schema is already applied."""
        current = self.schema_version()
        expected = expected_version("postgres")
        if current is not None and current >= expected:
            return current
        state = "is not applied" if current is None else (
            f"is at version {current}, this SDK needs {expected}")
        raise SchemaMismatch(
            f"the logged-execution schema on {self.display_url} {state}, and the Supabase API "
            f"cannot run DDL; {_MIGRATION_HINT}")

    def schema_version(self) -> int | None:
        try:
            resp = self._execute(
                lambda c: c.table(SCHEMA_VERSION_TABLE).select("version")
                .order("version", desc=True).limit(1))
        except SchemaMismatch:
            return None
        rows = resp.data or []
        if not rows:
            return None
        return int(rows[0]["version"])

    def apply(
        self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
    ) -> ApplyResult:
        """Apply the batch with ONE ``instrument_ingest`` call (one transaction)."""
        if not records:
            return ApplyResult(applied=0, duplicates=0)
        params = {
            "records": [self._payload(r) for r in records],
            "default_writers": list(default_writers),
        }
        resp = self._execute(lambda c: c.rpc(INGEST_FUNCTION, params),
                             f"{INGEST_FUNCTION}(batch of {len(records)})", records)
        return _apply_result(resp.data, len(records))

    def _payload(self, record: ExecutionRecord) -> dict[str, Any]:
        """The record as sent to ``instrument_ingest``: response and input text only with
        content capture (the same payload as the Postgres store's)."""
        return ingest_payload(record, capture_content=self._capture_content)

    def recent_executions(
        self, limit: int = 20, where: ExecutionFilter | None = None
    ) -> list[dict[str, Any]]:
        def build(c: Any) -> Any:
            q = c.table("agent_executions").select("*")
            if where is not None:
                for column in ("agent_id", "user_id", "status", "engine", "tenant_id",
                               "parent_execution_id"):
                    value = getattr(where, column)
                    if value is not None:
                        q = q.eq(column, value)
                if where.tag is not None:  # tags is jsonb: PostgREST's cs takes JSON there
                    q = q.filter("tags", "cs", json.dumps([where.tag]))
                if where.since is not None:
                    q = q.gte("started_at", _utc(where.since).isoformat())
                if where.until is not None:
                    q = q.lt("started_at", _utc(where.until).isoformat())
            return q.order("started_at", desc=True).limit(limit)

        return list(self._execute(build).data or [])

    def agent_stats(self) -> list[dict[str, Any]]:
        return list(self._execute(
            lambda c: c.table("agent_stats").select("*").order("agent_id")).data or [])

    def ais_config(self) -> AISConfig:
        """The AIS configuration stored in the project (``ais_config``)."""
        rows = self._execute(lambda c: c.table("ais_config").select("key,value")).data or []
        return AISConfig.from_rows((r["key"], r["value"]) for r in rows)

    def intensity_metrics(self, agent_id: str | None = None) -> list[dict[str, Any]]:
        def build(c: Any) -> Any:
            q = c.table("agent_intensity_metrics").select("*")
            if agent_id is not None:
                q = q.eq("agent_id", agent_id)
            return q.order("agent_id")

        return list(self._execute(build).data or [])

    # --- budgets (BudgetSource) -------------------------------------------------------------

    def spend(self, per: BudgetPer, key: str, since: datetime) -> Spend:
        """Committed spend of `key` since `since`: one ``instrument_budget_spend`` RPC."""
        budget_column(per)
        args = {"p_per": per, "p_key": key, "p_since": _utc(since).isoformat()}
        out = _one(self._execute(lambda c: c.rpc(SPEND_FUNCTION, args),
                                 f"{SPEND_FUNCTION}()").data)
        return Spend(usd=Decimal(str(out["usd"])), tokens=int(out["tokens"]),
                     runs=int(out["runs"]))

    def reserve(self, per: BudgetPer, key: str, since: datetime, limit_usd: Decimal | None,
                limit_tokens: int | None, execution_id: UUID, ttl_s: float) -> Reservation:
        """One ``instrument_budget_reserve`` RPC (one transaction on the server, serialized
        per key by an advisory lock)."""
        budget_column(per)
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s!r}")
        args = {"p_per": per, "p_key": key, "p_since": _utc(since).isoformat(),
                "p_limit_usd": None if limit_usd is None else str(limit_usd),
                "p_limit_tokens": limit_tokens, "p_execution_id": str(execution_id),
                "p_ttl_s": float(ttl_s)}
        out = _one(self._execute(lambda c: c.rpc(RESERVE_FUNCTION, args),
                                 f"{RESERVE_FUNCTION}()").data)
        return Reservation(allowed=bool(out["allowed"]),
                           spent_usd=Decimal(str(out["spent_usd"])),
                           spent_tokens=int(out["spent_tokens"]),
                           in_flight=int(out["in_flight"]))

    def close(self) -> None:
        with self._lock:
            client, owns = self._sync_client, self._owns_client
            if owns:
                self._sync_client = None
                self._owns_client = False
            loop, thread = self._loop, self._loop_thread
            self._loop = self._loop_thread = None
            pg, self._async_postgrest = self._async_postgrest, None
        if owns and client is not None:
            http = client.options.httpx_client
            if http is not None:
                http.close()
        if loop is not None:
            if pg is not None:
                closing = asyncio.run_coroutine_threadsafe(pg.session.aclose(), loop)
                try:
                    closing.result(timeout=5)
                except Exception:  # closing is best effort; the loop stops either way
                    logger.debug("closing the async Supabase session failed", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(5)
            if not loop.is_running():
                loop.close()


def _utc(value: datetime) -> datetime:
    """`value` with a timezone (a naive datetime is read as UTC, as records' are)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _one(data: Any) -> dict[str, Any]:
    """A function's JSON object answer (PostgREST may wrap it in a one-element list)."""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if not isinstance(data, dict):
        raise StoreUnavailable(f"unexpected answer {data!r} from a budget function; check that "
                               "the logged-execution schema v6 is applied")
    return data


def _apply_result(data: Any, batch: int) -> ApplyResult:
    """Read the function's ``{"applied": n, "duplicates": m}`` answer (tolerating variants)."""
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict):
        applied = data.get("applied", data.get("inserted"))
        dup = data.get("duplicates", data.get("skipped"))
        if isinstance(applied, int):
            return ApplyResult(applied=applied,
                               duplicates=dup if isinstance(dup, int) else batch - applied)
    if isinstance(data, int):
        return ApplyResult(applied=data, duplicates=batch - data)
    logger.debug("unexpected %s answer %r; counting the batch as applied", INGEST_FUNCTION, data)
    return ApplyResult(applied=batch, duplicates=0)


def _classify(exc: Exception, where: str, statement: str = "a read",
              records: Sequence[ExecutionRecord] = ()) -> Exception:
    """Map a supabase/postgrest/httpx failure to StoreUnavailable/SchemaMismatch/RecordRejected.

    By evidence: an error Postgres raised executing our rpc (its SQLSTATE, passed on by
    PostgREST) or PostgREST's refusal of the request body rejects a record of the batch; no
    answer, a gateway's 5xx page and PostgREST's "cannot reach the database" codes are
    unavailable; keys and schema say so.
    """
    import httpx
    from postgrest.exceptions import APIError

    if isinstance(exc, httpx.TimeoutException):
        return StoreUnavailable(f"{where} did not answer {statement} in time "
                                f"({type(exc).__name__}); the batch is retried")
    if isinstance(exc, httpx.HTTPError):
        return StoreUnavailable(
            f"cannot reach {where}: {type(exc).__name__}: {exc}; check SUPABASE_URL and the "
            "network (the batch is retried)")
    if isinstance(exc, TimeoutError):
        return StoreUnavailable(f"{where} did not answer {statement} in time; the batch is "
                                "retried")
    if isinstance(exc, UnicodeError | ValueError) and records:  # the body cannot be encoded
        return _rejected(where, statement, records, f"{type(exc).__name__}: {exc}"[:300])
    if not isinstance(exc, APIError):
        return StoreUnavailable(f"{where} failed: {type(exc).__name__}: {exc}"[:500])

    code = (exc.code or "").strip()
    message = " ".join((exc.message or "").split())[:300]
    detail = f"{code + ': ' if code else ''}{message}"
    if exc.details and isinstance(exc.details, str) and not exc.details.lstrip().startswith("<"):
        detail += f" ({' '.join(exc.details.split())[:300]})"
    sqlstate = code if len(code) == 5 else None  # PGRSTnnn are 8 long, HTTP statuses 3
    verdict = classify_sqlstate(sqlstate) if sqlstate else None
    if code in _AUTH_CODES or verdict in ("credentials", "privilege") or (
            not code and "api key" in message.lower()):
        return StoreUnavailable(f"{where} refused the credentials ({detail}); {_KEY_HINT}")
    if code in _SCHEMA_CODES or verdict == "schema":
        return SchemaMismatch(
            f"{where} is missing part of the logged-execution schema ({detail}); "
            f"{_MIGRATION_HINT}")
    if code == "404":
        return StoreUnavailable(
            f"{where} answered 404 ({detail}); check that SUPABASE_URL is the project URL "
            "(https://<project>.supabase.co), without /rest/v1")
    rejected = verdict == "rejected" or code in _BODY_STATUSES or (
        code.startswith("PGRST1"))  # PostgREST refused the request body
    if rejected and records:
        return _rejected(where, statement, records, detail)
    if rejected:
        return StoreUnavailable(f"{where} rejected {statement} ({detail})")
    if code in _DOWN_CODES or verdict in ("unavailable", "retry", "no_database"):
        return StoreUnavailable(f"{where} is unavailable: {statement} failed ({detail}); the "
                                "batch is retried")
    # Anything else (a gateway's 5xx or 429 page, an unknown code): keep the records and retry.
    return StoreUnavailable(f"{where} failed: {statement} ({detail}); the batch is retried")


def _rejected(where: str, statement: str, records: Sequence[ExecutionRecord],
              detail: str) -> RecordRejected:
    single = str(records[0].execution_id) if len(records) == 1 else None
    return RecordRejected(
        f"{where} rejected a record of {statement} ({detail}); the batch is split until the "
        "record is found and quarantined with this error", execution_id=single)
