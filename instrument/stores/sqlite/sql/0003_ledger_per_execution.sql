-- 0003_ledger_per_execution (SQLite): one idempotency-ledger row per execution, as on Postgres.
-- instrument_applied holds the applied built-in writers of an execution as a bitmask
-- (1 executions, 2 logs, 4 stats, 8 intensity); the store ORs a delivery's new bits in inside
-- its BEGIN IMMEDIATE batch transaction and applies only those. The v2 ledger
-- (instrument_ledger, one row per execution and writer) is folded into it and dropped, so
-- executions recorded before the upgrade stay protected against re-delivery. (SQLite has no
-- conditional DDL, so unlike Postgres there is no instrument_ledger view: a script that turns
-- a table into a view of the same name could not run twice.) Idempotent: every statement can
-- run again.

CREATE TABLE IF NOT EXISTS instrument_applied (
    execution_id TEXT PRIMARY KEY,
    writers INTEGER NOT NULL CHECK (writers BETWEEN 0 AND 15),
    added INTEGER NOT NULL DEFAULT 0,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;

-- So that the fold below also runs where the v2 table is gone (a re-run).
CREATE TABLE IF NOT EXISTS instrument_ledger (
    execution_id TEXT NOT NULL,
    writer TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (execution_id, writer)
) WITHOUT ROWID;

INSERT INTO instrument_applied (execution_id, writers, added, applied_at)
SELECT l.execution_id,
       sum(DISTINCT CASE l.writer WHEN 'executions' THEN 1 WHEN 'logs' THEN 2
                                  WHEN 'stats' THEN 4 WHEN 'intensity' THEN 8 ELSE 0 END),
       0,
       min(l.applied_at)
FROM instrument_ledger AS l
WHERE true
GROUP BY l.execution_id
ON CONFLICT (execution_id) DO UPDATE SET writers = writers | excluded.writers;

DROP TABLE IF EXISTS instrument_ledger;
