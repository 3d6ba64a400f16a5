"""The reference Python of the built-in writers' effects (record -> row or delta).

Pure functions the SQL must match: each store must produce exactly these rows. The SQLite store
builds them through its fast path (:mod:`instrument.stores.sqlite.ingest`,
:mod:`instrument.stores.sqlite.intensity`), the Postgres ingest function computes them in SQL
from ``ExecutionRecord.to_json_dict()``. Parity tests hold every store to this reference; no
module here touches a database.
"""
