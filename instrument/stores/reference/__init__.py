"""The reference Python of the built-in writers' effects (record -> row or delta).

Each store must produce exactly these rows: the SQLite store inserts them (through its fast
path), the Postgres ingest function computes them in SQL from ``ExecutionRecord.to_json_dict()``.
Parity tests hold every store to this reference.
"""
