"""Stores, selected by database URL: ``sqlite:///path``, ``postgresql://...``, ``supabase``.

:func:`open_store` takes plain values (no settings object). The protocols: :class:`Store`
(ingest, what the pipeline needs) and the optional :class:`SchemaAdmin`,
:class:`ExecutionQueries`, :class:`AISConfigSource` and :class:`BudgetSource`, which every
built-in store implements.
"""

from __future__ import annotations

from instrument.errors import ConfigurationError
from instrument.stores.base import (
    AISConfigSource,
    ApplyResult,
    BudgetSource,
    ExecutionFilter,
    ExecutionQueries,
    Reservation,
    SchemaAdmin,
    Spend,
    Store,
)
from instrument.stores.unusable import UnusableStore
from instrument.stores.urls import url_problem
from instrument.urls import mask_url

__all__ = [
    "AISConfigSource",
    "ApplyResult",
    "BudgetSource",
    "ExecutionFilter",
    "ExecutionQueries",
    "Reservation",
    "SchemaAdmin",
    "Spend",
    "Store",
    "UnusableStore",
    "mask_url",
    "open_store",
    "url_problem",
]


def open_store(url: str, *, keep_content: bool = False, supabase_url: str | None = None,
               supabase_key: str | None = None, connect_timeout_s: float = 5.0,
               statement_timeout_s: float = 30.0, network_timeout_s: float = 10.0) -> Store:
    """Build the store for `url` without connecting (connections happen on first use).

    `keep_content`: store the response text records carry (every backend alike). Records
    delivered by the pipeline already obey the content policy, so the runtime passes ``True``;
    a store opened for anything else keeps the safe default, ``False``.
    `supabase_url`/`supabase_key`: the project URL and service-role key, for ``supabase`` (a
    ``supabase://<host>`` URL names the project itself).
    Timeouts (network stores; see docs/configuration.md): `connect_timeout_s` to open a
    connection; `statement_timeout_s` for a batch on the server (``SET LOCAL
    statement_timeout`` on Postgres); `network_timeout_s` for TCP keepalives and
    ``tcp_user_timeout``. A connection that has not answered after the statement timeout plus
    the network timeout is dropped (Postgres), an HTTP request abandoned (Supabase), and the
    batch retried on a new one.
    """
    # Backends are imported on demand: a process loads only the one its URL names.
    if url.startswith("sqlite:///") or url == "sqlite://:memory:":
        from instrument.stores.sqlite.store import SQLiteStore

        return SQLiteStore(url, capture_content=keep_content)
    if url.startswith(("postgresql://", "postgres://")):
        from instrument.stores.postgres.store import PostgresStore

        return PostgresStore(url, capture_content=keep_content,
                             connect_timeout_s=connect_timeout_s,
                             statement_timeout_ms=round(statement_timeout_s * 1000),
                             network_timeout_s=network_timeout_s)
    if url == "supabase" or url.startswith("supabase://"):
        from instrument.stores.supabase.store import SupabaseStore, project_url

        return SupabaseStore(url=project_url(url, supabase_url), key=supabase_key,
                             capture_content=keep_content, connect_timeout_s=connect_timeout_s,
                             timeout_s=statement_timeout_s + network_timeout_s)
    problem = url_problem(url) or f"cannot open a store for {mask_url(url)!r}"
    raise ConfigurationError(
        f"{problem} (set INSTRUMENT_DATABASE_URL or pass configure(database_url=...))")
