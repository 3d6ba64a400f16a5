"""Stores, selected by database URL: ``sqlite:///path``, ``postgresql://...``, ``supabase``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from instrument.errors import ConfigurationError
from instrument.stores.base import ApplyResult, ExecutionFilter, Store

if TYPE_CHECKING:
    from instrument.config import Settings

__all__ = ["ApplyResult", "ExecutionFilter", "Store", "open_store"]


def open_store(url: str, settings: Settings | None = None) -> Store:
    """Build the store for `url` without connecting (connections happen on first use)."""
    # Records that reach a store through the pipeline already obey the content policy: the
    # decorator drops the response unless the database may keep it (globally, or per executor
    # with capture_content=). A store opened without settings keeps its own safe default.
    capture_content = settings is not None
    if url.startswith("sqlite:///") or url == "sqlite://:memory:":
        from instrument.stores.sqlite.store import SQLiteStore

        return SQLiteStore(url, capture_content=capture_content)
    if url.startswith(("postgresql://", "postgres://")):
        from instrument.stores.postgres.store import PostgresStore

        return PostgresStore(url, capture_content=capture_content)
    if url == "supabase" or url.startswith("supabase://"):
        from instrument.stores.supabase.store import SupabaseStore

        return SupabaseStore.from_settings(url, settings)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ConfigurationError(
        f"unsupported database URL scheme {scheme!r} in {mask_url(url)!r}; use "
        "'sqlite:///path.db', 'postgresql://user@host:5432/db' or 'supabase' "
        "(set INSTRUMENT_DATABASE_URL or pass configure(database_url=...))"
    )


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (``user:pw@`` and ``?password=...``)."""
    head, sep, tail = url.partition("://")
    if sep and "@" in tail:
        creds, _, rest = tail.rpartition("@")
        if ":" in creds:
            tail = f"{creds.split(':', 1)[0]}:***@{rest}"
    masked = f"{head}{sep}{tail}"
    return re.sub(r"(?i)([?&](?:password|passwd|pwd)=)[^&#]*", r"\1***", masked)
