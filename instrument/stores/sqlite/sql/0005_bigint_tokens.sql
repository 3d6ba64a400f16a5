-- 0005_bigint_tokens (SQLite): no change. SQLite's INTEGER already holds 64-bit values; on
-- PostgreSQL, schema v5 widens the token columns from integer to bigint. This file keeps both
-- dialects at the same version, so `instrument doctor` and `instrument schema` report one
-- schema version whatever the store.
SELECT 1;
