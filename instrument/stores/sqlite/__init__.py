"""The embedded SQLite store (the default)."""

from __future__ import annotations

from instrument.stores.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
