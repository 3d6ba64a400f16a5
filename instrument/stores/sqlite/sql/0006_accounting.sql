-- 0006_accounting (SQLite): accounting (December 2026), as on PostgreSQL (see its 0006 file):
-- the record's new fields on agent_executions (cost_usd is TEXT holding the exact decimal
-- string: no float rounding) and agent_logs (tenant_id); status takes paused and refused;
-- agent_stats counts paused runs and refused executions apart; the per-agent tables' user_id
-- is the agent's owner (existing rows: set NULL, once); the usage_ledger writer (bit 16 of
-- instrument_applied.writers) and its table; budget_inflight for budget reservations.
--
-- SQLite cannot alter a CHECK constraint, and has no conditional DDL (ADD COLUMN cannot run
-- twice). So the existing tables are changed the way SQLite documents for changes that leave
-- the stored rows valid ("Making Other Kinds Of Table Schema Changes", lang_altertable.html):
-- their CREATE TABLE text in sqlite_schema is edited under PRAGMA writable_schema, guarded so
-- that a second run changes nothing. Widening a CHECK (every stored row satisfies the wider
-- one) and appending nullable (or defaulted) columns (what ADD COLUMN itself does to that
-- text; stored rows read the default) keep every row valid. Then the schema is reloaded for
-- this connection (writable_schema = RESET, and a table rename, which reparses the schema) and
-- the schema cookie advances (the DDL below) so other connections reload it too.
-- The v6 definitions of the altered tables follow first: they create a table that is missing
-- (a repair) and tell `instrument migrate` / `doctor` which columns v6 expects. Idempotent:
-- every statement can run again.

CREATE TABLE IF NOT EXISTS agent_executions (
    id TEXT PRIMARY KEY,
    agent_id TEXT,
    user_id TEXT,
    agent_name TEXT,
    session_id TEXT,
    execution_type TEXT NOT NULL DEFAULT 'manual',
    engine TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('completed', 'failed', 'paused', 'refused')),
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
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    tenant_id TEXT,
    owner_id TEXT,
    parent_execution_id TEXT,
    resumes_execution_id TEXT,
    tags TEXT,
    metadata TEXT,
    cost_usd TEXT,
    price_source TEXT,
    input TEXT,
    request_model TEXT,
    service_tier TEXT,
    cache_write_input_tokens INTEGER
);

CREATE TABLE IF NOT EXISTS agent_logs (
    id TEXT PRIMARY KEY,
    execution_id TEXT NOT NULL UNIQUE,
    agent_id TEXT,
    user_id TEXT,
    run_output TEXT,
    full_output TEXT,
    status TEXT NOT NULL CHECK (status IN ('completed', 'failed', 'paused', 'refused')),
    status_message TEXT,
    run_time INTEGER,
    run_tokens INTEGER,
    user_credits_used INTEGER,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    tenant_id TEXT
);

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
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    paused_count INTEGER NOT NULL DEFAULT 0,
    refused_count INTEGER NOT NULL DEFAULT 0
);

PRAGMA writable_schema = ON;

-- status takes paused and refused (only where the v1 check is there: an application's own
-- agent_logs table, adopted by v1, keeps whatever it has)
UPDATE sqlite_master
SET sql = replace(sql, 'CHECK (status IN (''completed'', ''failed''))',
                  'CHECK (status IN (''completed'', ''failed'', ''paused'', ''refused''))')
WHERE type = 'table' AND name IN ('agent_executions', 'agent_logs')
  AND instr(sql, 'CHECK (status IN (''completed'', ''failed''))') > 0;

-- the ledger of applied writers: usage_ledger is bit 16
UPDATE sqlite_master
SET sql = replace(sql, 'CHECK (writers BETWEEN 0 AND 15)', 'CHECK (writers BETWEEN 0 AND 31)')
WHERE type = 'table' AND name = 'instrument_applied'
  AND instr(sql, 'CHECK (writers BETWEEN 0 AND 15)') > 0;

-- the new columns, appended where none of them is there yet (a table whose text does not end
-- with its column list gets them from `instrument migrate`'s repair, with ADD COLUMN)
UPDATE sqlite_master
SET sql = rtrim(substr(rtrim(sql), 1, length(rtrim(sql)) - 1), char(10, 13, 32)) || ',
    tenant_id TEXT,
    owner_id TEXT,
    parent_execution_id TEXT,
    resumes_execution_id TEXT,
    tags TEXT,
    metadata TEXT,
    cost_usd TEXT,
    price_source TEXT,
    input TEXT,
    request_model TEXT,
    service_tier TEXT,
    cache_write_input_tokens INTEGER
)'
WHERE type = 'table' AND name = 'agent_executions' AND rtrim(sql) LIKE '%)'
  AND NOT EXISTS (SELECT 1 FROM pragma_table_info('agent_executions')
                  WHERE name IN ('tenant_id', 'owner_id', 'parent_execution_id',
                                 'resumes_execution_id', 'tags', 'metadata', 'cost_usd',
                                 'price_source', 'input', 'request_model', 'service_tier',
                                 'cache_write_input_tokens'));

UPDATE sqlite_master
SET sql = rtrim(substr(rtrim(sql), 1, length(rtrim(sql)) - 1), char(10, 13, 32)) || ',
    tenant_id TEXT
)'
WHERE type = 'table' AND name = 'agent_logs' AND rtrim(sql) LIKE '%)'
  AND NOT EXISTS (SELECT 1 FROM pragma_table_info('agent_logs') WHERE name = 'tenant_id');

UPDATE sqlite_master
SET sql = rtrim(substr(rtrim(sql), 1, length(rtrim(sql)) - 1), char(10, 13, 32)) || ',
    paused_count INTEGER NOT NULL DEFAULT 0,
    refused_count INTEGER NOT NULL DEFAULT 0
)'
WHERE type = 'table' AND name = 'agent_stats' AND rtrim(sql) LIKE '%)'
  AND NOT EXISTS (SELECT 1 FROM pragma_table_info('agent_stats')
                  WHERE name IN ('paused_count', 'refused_count'));

PRAGMA writable_schema = RESET;

-- Reload the edited schema in this connection (a rename reparses it, also where RESET is not
-- known) and advance the schema cookie, so every other connection reloads it as well.
DROP TABLE IF EXISTS instrument_schema_reload;
DROP TABLE IF EXISTS instrument_schema_reloaded;
CREATE TABLE instrument_schema_reload (x INTEGER);
ALTER TABLE instrument_schema_reload RENAME TO instrument_schema_reloaded;
DROP TABLE instrument_schema_reloaded;

-- The indexes of v1 (for a table re-created above) and the CLI's new filters.
CREATE INDEX IF NOT EXISTS agent_executions_agent_started_idx
    ON agent_executions (agent_id, started_at DESC);
CREATE INDEX IF NOT EXISTS agent_executions_user_started_idx
    ON agent_executions (user_id, started_at DESC);
CREATE INDEX IF NOT EXISTS agent_executions_started_idx ON agent_executions (started_at DESC);
CREATE INDEX IF NOT EXISTS agent_executions_parent_idx
    ON agent_executions (parent_execution_id) WHERE parent_execution_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS agent_executions_tenant_started_idx
    ON agent_executions (tenant_id, started_at DESC) WHERE tenant_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS agent_logs_agent_created_idx ON agent_logs (agent_id, created_at DESC);
CREATE INDEX IF NOT EXISTS agent_logs_user_created_idx ON agent_logs (user_id, created_at DESC);
CREATE INDEX IF NOT EXISTS agent_logs_tenant_created_idx
    ON agent_logs (tenant_id, created_at DESC) WHERE tenant_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS agent_stats_user_idx ON agent_stats (user_id);

-- Once, when v6 is first applied: the per-agent rows' user_id was whichever user ran the agent
-- first, so it showed other users' runs to that user. The next run naming an owner sets it.
UPDATE agent_stats SET user_id = NULL
WHERE user_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM instrument_schema_version WHERE version >= 6);
UPDATE agent_intensity_metrics SET user_id = NULL
WHERE user_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM instrument_schema_version WHERE version >= 6);

-- usage_ledger: per (tenant, user, agent, UTC day of started_at as YYYY-MM-DD); '' for an
-- absent key. Token and cost sums are sums of the measured values (NULL until a run of the row
-- measured one); cost_usd is the exact decimal string (added by the store in Python's decimal
-- arithmetic, under the write lock); unpriced_runs counts runs without a cost; runs =
-- completed + failed + paused; refused executions are counted apart.
CREATE TABLE IF NOT EXISTS usage_ledger (
    tenant_id TEXT NOT NULL DEFAULT '',
    user_id TEXT NOT NULL DEFAULT '',
    agent_id TEXT NOT NULL DEFAULT '',
    day TEXT NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    successes INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    paused INTEGER NOT NULL DEFAULT 0,
    refused INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cached_input_tokens INTEGER,
    reasoning_tokens INTEGER,
    cache_write_input_tokens INTEGER,
    total_tokens INTEGER,
    cost_usd TEXT,
    unpriced_runs INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (tenant_id, user_id, agent_id, day)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_ledger_tenant_day_idx ON usage_ledger (tenant_id, day);
CREATE INDEX IF NOT EXISTS usage_ledger_user_day_idx ON usage_ledger (user_id, day);
CREATE INDEX IF NOT EXISTS usage_ledger_agent_day_idx ON usage_ledger (agent_id, day);

-- budget_inflight: runs a budget reservation let start, until their record lands (the ingest
-- deletes the row in its transaction) or the row expires.
CREATE TABLE IF NOT EXISTS budget_inflight (
    execution_id TEXT NOT NULL,
    per TEXT NOT NULL CHECK (per IN ('user', 'tenant', 'agent')),
    key TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    expires_at TEXT NOT NULL,
    PRIMARY KEY (execution_id, per, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS budget_inflight_key_idx ON budget_inflight (per, key, expires_at);
