-- 0004_ingest_reads_once (SQLite): no change. On PostgreSQL, schema v4 rewrites the
-- server-side ingest function so that it reads a batch once; the SQLite store builds its rows
-- in Python and has no such function. This file keeps both dialects at the same version, so
-- `instrument doctor` and `instrument schema` report one schema version whatever the store.
SELECT 1;
