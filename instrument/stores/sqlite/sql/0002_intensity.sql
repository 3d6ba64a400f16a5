-- 0002_intensity (SQLite): AIS aggregates and scores per agent, and the AIS configuration.
-- Aggregates are sums/counts/maxima/sets updated as x = x + delta by
-- instrument/writers/intensity.py:apply_sqlite inside the store's batch transaction; the
-- derived means and scores are recomputed from them (instrument/ais.py) in that transaction.
-- Sets are JSON arrays (sorted, distinct). NULL maxima mean "never measured".

CREATE TABLE IF NOT EXISTS agent_intensity_metrics (
    agent_id TEXT PRIMARY KEY,
    user_id TEXT,
    -- runs
    total_executions INTEGER NOT NULL DEFAULT 0,
    successful_executions INTEGER NOT NULL DEFAULT 0,
    failed_executions INTEGER NOT NULL DEFAULT 0,
    n_retry_runs INTEGER NOT NULL DEFAULT 0,
    total_retries INTEGER NOT NULL DEFAULT 0,
    retried_executions INTEGER NOT NULL DEFAULT 0,
    recovered_executions INTEGER NOT NULL DEFAULT 0,
    -- tokens
    n_token_runs INTEGER NOT NULL DEFAULT 0,
    total_tokens_used INTEGER NOT NULL DEFAULT 0,
    peak_tokens_single_run INTEGER,
    n_io_runs INTEGER NOT NULL DEFAULT 0,
    total_input_tokens INTEGER NOT NULL DEFAULT 0,
    total_output_tokens INTEGER NOT NULL DEFAULT 0,
    -- duration
    total_duration_ms REAL NOT NULL DEFAULT 0,
    peak_execution_duration_ms REAL,
    -- iterations
    n_iteration_runs INTEGER NOT NULL DEFAULT 0,
    total_iterations INTEGER NOT NULL DEFAULT 0,
    -- tools
    n_tool_runs INTEGER NOT NULL DEFAULT 0,
    total_tool_calls INTEGER NOT NULL DEFAULT 0,
    plugins TEXT NOT NULL DEFAULT '[]',
    -- orchestration
    n_orchestration_runs INTEGER NOT NULL DEFAULT 0,
    total_orchestration_ms REAL NOT NULL DEFAULT 0,
    -- workflow (maxima)
    max_workflow_steps INTEGER,
    max_branches INTEGER,
    max_loops INTEGER,
    max_parallel INTEGER,
    -- memory
    n_memory_runs INTEGER NOT NULL DEFAULT 0,
    total_memory_tokens INTEGER NOT NULL DEFAULT 0,
    n_memory_entry_runs INTEGER NOT NULL DEFAULT 0,
    total_memory_entries INTEGER NOT NULL DEFAULT 0,
    n_memory_type_runs INTEGER NOT NULL DEFAULT 0,
    memory_types TEXT NOT NULL DEFAULT '[]',
    -- growth: the latest run with measured input/output tokens, arg-max by (completed_at, id)
    latest_completed_at TEXT,
    latest_execution_id TEXT,
    latest_output_tokens INTEGER,
    -- derived (recomputed from the aggregates above; stored for reading)
    success_rate REAL,
    mean_retries_per_run REAL,
    retried_share REAL,
    avg_tokens_per_run REAL,
    avg_input_tokens_per_run REAL,
    avg_output_tokens_per_run REAL,
    output_input_ratio REAL,
    avg_execution_duration_ms REAL,
    avg_iterations_per_run REAL,
    unique_plugins_used INTEGER,
    avg_tool_calls_per_run REAL,
    avg_orchestration_ms REAL,
    avg_memory_tokens_per_run REAL,
    memory_token_ratio REAL,
    memory_type_count INTEGER,
    avg_memory_entries REAL,
    output_token_baseline REAL,
    output_token_growth_rate REAL,
    output_token_alert_level TEXT NOT NULL DEFAULT 'none',
    -- scores (NULL component = no measured data, excluded from execution_score)
    token_complexity_score REAL,
    execution_complexity_score REAL,
    plugin_complexity_score REAL,
    workflow_complexity_score REAL,
    memory_complexity_score REAL,
    execution_score REAL,
    creation_score REAL NOT NULL DEFAULT 5.0,
    combined_score REAL NOT NULL DEFAULT 5.0,
    intensity_multiplier REAL NOT NULL DEFAULT 1.5,
    last_calculated_at TEXT,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX IF NOT EXISTS agent_intensity_metrics_user_id_idx
    ON agent_intensity_metrics (user_id);

-- Key/value (JSON) AIS configuration: the same keys and defaults as instrument.ais.AISConfig.
CREATE TABLE IF NOT EXISTS ais_config (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

INSERT OR IGNORE INTO ais_config (key, value) VALUES
    ('range.io_ratio', '[0.5, 3.0]'),
    ('range.iterations', '[1.0, 10.0]'),
    ('range.duration_ms', '[0.0, 30000.0]'),
    ('range.failure_rate', '[0.0, 50.0]'),
    ('range.retries_per_run', '[0.0, 3.0]'),
    ('range.unique_plugins', '[0.0, 10.0]'),
    ('range.tool_calls_per_run', '[0.0, 8.0]'),
    ('range.orchestration_ms', '[0.0, 5000.0]'),
    ('range.workflow_steps', '[0.0, 20.0]'),
    ('range.branches', '[0.0, 10.0]'),
    ('range.loops', '[0.0, 50.0]'),
    ('range.parallel', '[0.0, 5.0]'),
    ('range.memory_ratio', '[0.0, 0.9]'),
    ('range.memory_types', '[0.0, 3.0]'),
    ('range.memory_entries', '[0.0, 20.0]'),
    ('range.creation_workflow_steps', '[0.0, 10.0]'),
    ('range.creation_plugins', '[0.0, 5.0]'),
    ('range.creation_io_fields', '[0.0, 8.0]'),
    ('weight.token', '0.3'),
    ('weight.execution', '0.25'),
    ('weight.plugin', '0.2'),
    ('weight.workflow', '0.15'),
    ('weight.memory', '0.1'),
    ('weight.execution.iterations', '0.35'),
    ('weight.execution.duration_ms', '0.3'),
    ('weight.execution.failure_rate', '0.2'),
    ('weight.execution.retries_per_run', '0.15'),
    ('weight.plugin.unique_plugins', '0.4'),
    ('weight.plugin.tool_calls_per_run', '0.35'),
    ('weight.plugin.orchestration_ms', '0.25'),
    ('weight.workflow.workflow_steps', '0.4'),
    ('weight.workflow.branches', '0.25'),
    ('weight.workflow.loops', '0.2'),
    ('weight.workflow.parallel', '0.15'),
    ('weight.memory.memory_ratio', '0.5'),
    ('weight.memory.memory_types', '0.3'),
    ('weight.memory.memory_entries', '0.2'),
    ('weight.creation.creation_workflow_steps', '0.5'),
    ('weight.creation.creation_plugins', '0.3'),
    ('weight.creation.creation_io_fields', '0.2'),
    ('blend.creation', '0.3'),
    ('blend.execution', '0.7'),
    ('token.efficiency_factor', '0.7'),
    ('growth.tiers', '[{"name": "monitor", "threshold": 25.0, "adjustment": 0.2}, {"name": "rescore", "threshold": 50.0, "adjustment": 0.75}, {"name": "upgrade", "threshold": 100.0, "adjustment": 1.25}]'),
    ('quality.success_rate_below', '80.0'),
    ('quality.success_bonus', '0.3'),
    ('quality.retried_share_above', '30.0'),
    ('quality.retried_bonus', '0.2'),
    ('min_executions_for_score', '5'),
    ('creation.default_score', '5.0'),
    ('creation.schedule_bonus', '1.0'),
    ('creation.event_bonus', '2.0'),
    ('dynamic.min_fleet_executions', '10'),
    ('dynamic.percentile', '0.95');
