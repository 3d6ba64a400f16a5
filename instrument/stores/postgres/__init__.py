"""The PostgreSQL store (psycopg 3): one ingest function call per batch."""

from __future__ import annotations

from instrument.stores.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
