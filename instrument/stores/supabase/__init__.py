"""The Supabase store (supabase-py): the Postgres ingest function through one rpc per batch."""

from __future__ import annotations

from instrument.stores.supabase.store import SupabaseStore

__all__ = ["SupabaseStore"]
