"""Built-in writers (record -> row/delta) and the custom-writer protocol.

The row functions are pure: the SQLite store inserts their output, and the Postgres ingest
function (``instrument/stores/sql/postgres/0001_core.sql``) computes the same rows in SQL from
``ExecutionRecord.to_json_dict()``. A test holds the two paths to the same result.
"""

from __future__ import annotations

from instrument.writers.base import BUILTIN_WRITERS, Writer

__all__ = ["BUILTIN_WRITERS", "Writer"]
