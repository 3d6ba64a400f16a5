"""Reads the operator commands need beyond :class:`~instrument.stores.ExecutionQueries`.

``instrument show`` looks up one execution by its id or the first characters of it (what
``tail`` prints) and its ``agent_logs`` rows; ``instrument stats --by`` reads ``usage_ledger``
over a range of days. Each built-in store answers through its own read path (SQLite and
PostgreSQL: the store's bounded, schema-checked select; Supabase: a PostgREST query), so
timeouts and error messages are the store's. A third-party store raises
:class:`~instrument.errors.ConfigurationError` naming what it lacks.

An id prefix becomes a range of the primary key (``id >= '925323bc-0000-…' and id <=
'925323bc-ffff-…'``): every backend answers it from the index.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any

from instrument.errors import ConfigurationError
from instrument.stores.base import Store

__all__ = ["execution_rows", "id_bounds", "ledger_rows", "log_rows", "price_rows"]

_HEX = re.compile(r"^[0-9a-f]{1,32}$")
#: PostgREST returns at most this many rows per request by default: read pages of it
_PAGE = 1000


def id_bounds(text: str) -> tuple[str, str]:
    """The lowest and highest UUID (hyphenated, lower case) that start with `text`.

    Raises ValueError when `text` is not the start of a UUID (hex digits, hyphens)."""
    digits = text.strip().lower().replace("-", "")
    if not _HEX.match(digits):
        raise ValueError(f"{text!r} is not an execution id or the start of one (hex digits, "
                         "as `instrument tail` prints them)")

    def uuid(hex32: str) -> str:
        return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"

    return uuid(digits.ljust(32, "0")), uuid(digits.ljust(32, "f"))


def _reader(store: Store, what: str) -> tuple[str, Callable[..., Any]]:
    """The dialect and the store's own read function (``_select`` or ``_execute``)."""
    name = "_execute" if store.dialect == "supabase" else "_select"
    read = getattr(store, name, None)
    if store.dialect not in ("sqlite", "postgres", "supabase") or not callable(read):
        raise ConfigurationError(
            f"the store for {store.display_url} ({type(store).__name__}) cannot {what}: only "
            "the built-in SQLite, PostgreSQL and Supabase stores can")
    return store.dialect, read


def execution_rows(store: Store, id_or_prefix: str, limit: int = 10) -> list[dict[str, Any]]:
    """``agent_executions`` rows whose id starts with `id_or_prefix` (at most `limit`)."""
    low, high = id_bounds(id_or_prefix)
    dialect, read = _reader(store, "look up an execution")
    if dialect == "supabase":
        return list(read(lambda c: c.table("agent_executions").select("*").gte("id", low)
                         .lte("id", high).order("id").limit(limit)).data or [])
    mark = "?" if dialect == "sqlite" else "%s"
    table = "agent_executions" if dialect == "sqlite" else "public.agent_executions"
    return list(read(f"select * from {table} where id >= {mark} and id <= {mark} "
                     f"order by id limit {int(limit)}", (low, high)))


def log_rows(store: Store, execution_id: str) -> list[dict[str, Any]]:
    """The ``agent_logs`` rows of one execution."""
    dialect, read = _reader(store, "read agent_logs")
    if dialect == "supabase":
        return list(read(lambda c: c.table("agent_logs").select("*")
                         .eq("execution_id", execution_id)).data or [])
    mark = "?" if dialect == "sqlite" else "%s"
    table = "agent_logs" if dialect == "sqlite" else "public.agent_logs"
    return list(read(f"select * from {table} where execution_id = {mark}", (execution_id,)))


def ledger_rows(store: Store, first: date | None = None, end: date | None = None
                ) -> list[dict[str, Any]]:
    """``usage_ledger`` rows with ``first <= day < end`` (either bound optional)."""
    dialect, read = _reader(store, "read usage_ledger")
    if dialect == "supabase":
        rows: list[dict[str, Any]] = []
        while True:
            def build(c: Any, offset: int = len(rows)) -> Any:
                q = c.table("usage_ledger").select("*")
                if first is not None:
                    q = q.gte("day", first.isoformat())
                if end is not None:
                    q = q.lt("day", end.isoformat())
                return q.order("day").order("tenant_id").order("user_id").order("agent_id") \
                    .range(offset, offset + _PAGE - 1)

            page = list(read(build).data or [])
            rows.extend(page)
            if len(page) < _PAGE:
                return rows
    mark = "?" if dialect == "sqlite" else "%s"
    clauses, params = [], []
    if first is not None:
        clauses.append(f"day >= {mark}")
        params.append(first.isoformat() if dialect == "sqlite" else first)
    if end is not None:
        clauses.append(f"day < {mark}")
        params.append(end.isoformat() if dialect == "sqlite" else end)
    table = "usage_ledger" if dialect == "sqlite" else "public.usage_ledger"
    where = f" where {' and '.join(clauses)}" if clauses else ""
    return list(read(f"select * from {table}{where} order by day, tenant_id, user_id, "
                     "agent_id", tuple(params)))


_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")


def price_rows(store: Store, table: str) -> list[dict[str, Any]]:
    """Every row of the user's price table (``prices="table:NAME"``): ``model``, the price
    columns and an optional ``version``. `table` is an identifier (checked again here)."""
    if not _TABLE.match(table):
        raise ValueError(f"{table!r} is not a table name")
    dialect, read = _reader(store, "read a price table")
    if dialect == "supabase":
        name = table.rsplit(".", 1)[-1]
        return list(read(lambda c: c.table(name).select("*")).data or [])
    return list(read(f"select * from {table}"))
