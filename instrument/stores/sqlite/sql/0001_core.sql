-- logged-execution schema v1 (SQLite): mirrors the PostgreSQL tables. UUIDs are text,
-- timestamps ISO 8601 text in UTC, JSON columns text. Applied by instrument/stores/migrations.py
-- in one BEGIN IMMEDIATE transaction; every statement is idempotent.

CREATE TABLE IF NOT EXISTS agent_executions (
    id TEXT PRIMARY KEY,
    agent_id TEXT,
    user_id TEXT,
    agent_name TEXT,
    session_id TEXT,
    execution_type TEXT NOT NULL DEFAULT 'manual',
    engine TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('completed', 'failed')),
    started_at TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    execution_duration_ms INTEGER,
    error_type TEXT,
    error_message TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    total_tokens INTEGER,
    model TEXT,
    provider TEXT,
    trace_id TEXT,
    span_id TEXT,
    logs TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS agent_executions_agent_started_idx
    ON agent_executions (agent_id, started_at DESC);
CREATE INDEX IF NOT EXISTS agent_executions_user_started_idx
    ON agent_executions (user_id, started_at DESC);
CREATE INDEX IF NOT EXISTS agent_executions_started_idx ON agent_executions (started_at DESC);

CREATE TABLE IF NOT EXISTS agent_logs (
    id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL UNIQUE,
    agent_id TEXT,
    user_id TEXT,
    run_output TEXT,
    full_output TEXT,
    status TEXT NOT NULL CHECK (status IN ('completed', 'failed')),
    status_message TEXT,
    run_time INTEGER,
    run_tokens INTEGER,
    user_credits_used INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS agent_logs_agent_created_idx ON agent_logs (agent_id, created_at DESC);
CREATE INDEX IF NOT EXISTS agent_logs_user_created_idx ON agent_logs (user_id, created_at DESC);

CREATE TABLE IF NOT EXISTS agent_stats (
    agent_id TEXT PRIMARY KEY,
    user_id TEXT,
    run_count INTEGER NOT NULL DEFAULT 0,
    success_count INTEGER NOT NULL DEFAULT 0,
    failure_count INTEGER NOT NULL DEFAULT 0,
    total_tokens INTEGER NOT NULL DEFAULT 0,
    token_run_count INTEGER NOT NULL DEFAULT 0,
    total_duration_ms INTEGER NOT NULL DEFAULT 0,
    last_run_at TEXT,
    last_run_status TEXT,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS agent_stats_user_idx ON agent_stats (user_id);

-- One row per (execution, built-in writer) applied: the idempotency ledger.
CREATE TABLE IF NOT EXISTS instrument_ledger (
    execution_id TEXT NOT NULL,
    writer TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (execution_id, writer)
) WITHOUT ROWID;
