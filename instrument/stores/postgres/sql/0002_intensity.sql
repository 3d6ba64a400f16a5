-- logged-execution schema v2 (PostgreSQL / Supabase): the intensity writer (AIS).
-- agent_intensity_metrics keeps per-agent sums, counts, maxima, distinct sets (text[]) and the
-- latest measured run; every update is x = x + delta / greatest / set union in one atomic
-- upsert, then the derived means and scores are recomputed in SQL from the updated row, in the
-- same transaction, with the numbers in ais_config. The scoring mirrors instrument/ais.py
-- (tests/ais proves parity to 1e-9). Idempotent: every statement can run again.
-- Requires 0001_core (roles, auth.uid()); instrument_ingest calls instrument_apply_intensity
-- for the records whose intensity writer is enabled and not yet applied (ledger).

create table if not exists public.agent_intensity_metrics (
    agent_id text primary key,
    user_id text,
    -- runs
    total_executions bigint not null default 0,
    successful_executions bigint not null default 0,
    failed_executions bigint not null default 0,
    n_retry_runs bigint not null default 0,
    total_retries bigint not null default 0,
    retried_executions bigint not null default 0,
    recovered_executions bigint not null default 0,
    -- tokens
    n_token_runs bigint not null default 0,
    total_tokens_used bigint not null default 0,
    peak_tokens_single_run bigint,
    n_io_runs bigint not null default 0,
    total_input_tokens bigint not null default 0,
    total_output_tokens bigint not null default 0,
    -- duration
    total_duration_ms double precision not null default 0,
    peak_execution_duration_ms double precision,
    -- iterations
    n_iteration_runs bigint not null default 0,
    total_iterations bigint not null default 0,
    -- tools
    n_tool_runs bigint not null default 0,
    total_tool_calls bigint not null default 0,
    plugins text[] not null default '{}',
    -- orchestration
    n_orchestration_runs bigint not null default 0,
    total_orchestration_ms double precision not null default 0,
    -- workflow (maxima)
    max_workflow_steps bigint,
    max_branches bigint,
    max_loops bigint,
    max_parallel bigint,
    -- memory
    n_memory_runs bigint not null default 0,
    total_memory_tokens bigint not null default 0,
    n_memory_entry_runs bigint not null default 0,
    total_memory_entries bigint not null default 0,
    n_memory_type_runs bigint not null default 0,
    memory_types text[] not null default '{}',
    -- growth: the latest run with measured input/output tokens, arg-max by (completed_at, id)
    latest_completed_at timestamptz,
    latest_execution_id text collate "C",
    latest_output_tokens bigint,
    -- derived (recomputed from the aggregates above; stored for reading)
    success_rate double precision,
    mean_retries_per_run double precision,
    retried_share double precision,
    avg_tokens_per_run double precision,
    avg_input_tokens_per_run double precision,
    avg_output_tokens_per_run double precision,
    output_input_ratio double precision,
    avg_execution_duration_ms double precision,
    avg_iterations_per_run double precision,
    unique_plugins_used bigint,
    avg_tool_calls_per_run double precision,
    avg_orchestration_ms double precision,
    avg_memory_tokens_per_run double precision,
    memory_token_ratio double precision,
    memory_type_count bigint,
    avg_memory_entries double precision,
    output_token_baseline double precision,
    output_token_growth_rate double precision,
    output_token_alert_level text not null default 'none',
    -- scores (NULL component = no measured data, excluded from execution_score)
    token_complexity_score double precision,
    execution_complexity_score double precision,
    plugin_complexity_score double precision,
    workflow_complexity_score double precision,
    memory_complexity_score double precision,
    execution_score double precision,
    creation_score double precision not null default 5.0
        check (creation_score >= 0 and creation_score <= 10),
    combined_score double precision not null default 5.0,
    intensity_multiplier double precision not null default 1.5,
    last_calculated_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index if not exists agent_intensity_metrics_user_idx
    on public.agent_intensity_metrics (user_id);

-- Key/value (JSON) AIS configuration: the same keys and defaults as instrument.ais.AISConfig
-- (tests/ais checks the seed against the code). The scoring function below reads it, so Python
-- and SQL use the same numbers. After changing it, call instrument_ais_rescore(null).
create table if not exists public.ais_config (
    key text primary key,
    value jsonb not null,
    updated_at timestamptz not null default now()
);

insert into public.ais_config (key, value) values
    ('range.io_ratio', '[0.5, 3.0]'::jsonb),
    ('range.iterations', '[1.0, 10.0]'::jsonb),
    ('range.duration_ms', '[0.0, 30000.0]'::jsonb),
    ('range.failure_rate', '[0.0, 50.0]'::jsonb),
    ('range.retries_per_run', '[0.0, 3.0]'::jsonb),
    ('range.unique_plugins', '[0.0, 10.0]'::jsonb),
    ('range.tool_calls_per_run', '[0.0, 8.0]'::jsonb),
    ('range.orchestration_ms', '[0.0, 5000.0]'::jsonb),
    ('range.workflow_steps', '[0.0, 20.0]'::jsonb),
    ('range.branches', '[0.0, 10.0]'::jsonb),
    ('range.loops', '[0.0, 50.0]'::jsonb),
    ('range.parallel', '[0.0, 5.0]'::jsonb),
    ('range.memory_ratio', '[0.0, 0.9]'::jsonb),
    ('range.memory_types', '[0.0, 3.0]'::jsonb),
    ('range.memory_entries', '[0.0, 20.0]'::jsonb),
    ('range.creation_workflow_steps', '[0.0, 10.0]'::jsonb),
    ('range.creation_plugins', '[0.0, 5.0]'::jsonb),
    ('range.creation_io_fields', '[0.0, 8.0]'::jsonb),
    ('weight.token', '0.3'::jsonb),
    ('weight.execution', '0.25'::jsonb),
    ('weight.plugin', '0.2'::jsonb),
    ('weight.workflow', '0.15'::jsonb),
    ('weight.memory', '0.1'::jsonb),
    ('weight.execution.iterations', '0.35'::jsonb),
    ('weight.execution.duration_ms', '0.3'::jsonb),
    ('weight.execution.failure_rate', '0.2'::jsonb),
    ('weight.execution.retries_per_run', '0.15'::jsonb),
    ('weight.plugin.unique_plugins', '0.4'::jsonb),
    ('weight.plugin.tool_calls_per_run', '0.35'::jsonb),
    ('weight.plugin.orchestration_ms', '0.25'::jsonb),
    ('weight.workflow.workflow_steps', '0.4'::jsonb),
    ('weight.workflow.branches', '0.25'::jsonb),
    ('weight.workflow.loops', '0.2'::jsonb),
    ('weight.workflow.parallel', '0.15'::jsonb),
    ('weight.memory.memory_ratio', '0.5'::jsonb),
    ('weight.memory.memory_types', '0.3'::jsonb),
    ('weight.memory.memory_entries', '0.2'::jsonb),
    ('weight.creation.creation_workflow_steps', '0.5'::jsonb),
    ('weight.creation.creation_plugins', '0.3'::jsonb),
    ('weight.creation.creation_io_fields', '0.2'::jsonb),
    ('blend.creation', '0.3'::jsonb),
    ('blend.execution', '0.7'::jsonb),
    ('token.efficiency_factor', '0.7'::jsonb),
    ('growth.tiers', '[{"name": "monitor", "threshold": 25.0, "adjustment": 0.2}, {"name": "rescore", "threshold": 50.0, "adjustment": 0.75}, {"name": "upgrade", "threshold": 100.0, "adjustment": 1.25}]'::jsonb),
    ('quality.success_rate_below', '80.0'::jsonb),
    ('quality.success_bonus', '0.3'::jsonb),
    ('quality.retried_share_above', '30.0'::jsonb),
    ('quality.retried_bonus', '0.2'::jsonb),
    ('min_executions_for_score', '5'::jsonb),
    ('creation.default_score', '5.0'::jsonb),
    ('creation.schedule_bonus', '1.0'::jsonb),
    ('creation.event_bonus', '2.0'::jsonb),
    ('dynamic.min_fleet_executions', '10'::jsonb),
    ('dynamic.percentile', '0.95'::jsonb)
on conflict (key) do nothing;

-- Row level security, as for the core tables: users read their own agents' rows; only
-- service_role (and the security definer functions below) write. The configuration is global
-- and readable by authenticated users.
do $$
declare
    t text;
begin
    foreach t in array array['agent_intensity_metrics', 'ais_config'] loop
        execute format('alter table public.%I enable row level security', t);
        execute format('revoke all on table public.%I from public, anon, authenticated', t);
        execute format('grant select on table public.%I to authenticated', t);
        execute format('grant select, insert, update, delete on table public.%I to service_role', t);
        execute format('drop policy if exists %I on public.%I', t || '_service_role_all', t);
        execute format(
            'create policy %I on public.%I for all to service_role using (true) with check (true)',
            t || '_service_role_all', t);
    end loop;
    drop policy if exists agent_intensity_metrics_select_own on public.agent_intensity_metrics;
    create policy agent_intensity_metrics_select_own on public.agent_intensity_metrics
        for select to authenticated using (user_id = (select auth.uid())::text);
    drop policy if exists ais_config_select_all on public.ais_config;
    create policy ais_config_select_all on public.ais_config
        for select to authenticated using (true);
end
$$;

-- ---- pure helpers (mirror instrument/ais.py) ------------------------------------------------
-- Single expressions over built-ins with no SET clause, so the planner inlines them into the
-- calling statement (a SET clause would cost a function call per row); the calling functions
-- fix the search_path.

create or replace function public.instrument_ais_clamp10(v double precision)
    returns double precision
    language sql immutable
    -- least/greatest ignore nulls, so null (unmeasured) must be passed through explicitly
    as $$ select case when v is not null then least(greatest(v, 0::float8), 10::float8) end $$;

-- A millisecond value from the record JSON, sanitized like instrument.ais._ms: below 1e-6
-- (and negatives) is 0, above 1e12 is 1e12, so no later arithmetic underflows or overflows.
-- Non-finite numbers arrive as JSON null: unmeasured.
create or replace function public.instrument_ais_ms(v text) returns double precision
    language sql immutable
    as $$
        select case when v is null then null
                    when v::float8 < 1e-6::float8 then 0::float8
                    else least(v::float8, 1e12::float8) end
    $$;

-- norm(v, [lo, hi]) = (clamp(v, lo, hi) - lo) / (hi - lo) * 10; null stays null (unmeasured).
create or replace function public.instrument_ais_norm(v double precision, bounds jsonb)
    returns double precision
    language sql immutable
    as $$
        select case when v is not null then
            (least(greatest(v, (bounds ->> 0)::float8), (bounds ->> 1)::float8)
             - (bounds ->> 0)::float8)
            / ((bounds ->> 1)::float8 - (bounds ->> 0)::float8) * 10::float8 end
    $$;

-- Weighted mean over the measured (non-null) values, weights renormalized; null when none.
create or replace function public.instrument_ais_wmean(ws double precision[],
                                                       vs double precision[])
    returns double precision
    language plpgsql immutable
    set search_path = public, pg_catalog, pg_temp
    as $$
    declare
        num float8 := 0;
        den float8 := 0;
    begin
        for i in 1 .. coalesce(array_length(ws, 1), 0) loop
            if vs[i] is not null then
                num := num + ws[i] * vs[i];
                den := den + ws[i];
            end if;
        end loop;
        if den > 0 then
            return instrument_ais_clamp10(num / den);
        end if;
        return null;
    end
    $$;

create or replace function public.instrument_ais_config() returns jsonb
    language sql stable
    set search_path = public, pg_temp
    as $$ select coalesce(jsonb_object_agg(key, value), '{}'::jsonb) from ais_config $$;

-- ---- scores: recompute derived means and scores of the given agents (null = all) -----------

create or replace function public.instrument_ais_rescore(agent_ids text[] default null)
    returns void
    language plpgsql
    security definer
    set search_path = public, pg_temp
    as $$
    declare
        cfg jsonb := instrument_ais_config();
        m agent_intensity_metrics%rowtype;
        tier jsonb;
        v_sr float8; v_mrr float8; v_rs float8; v_avg_tok float8; v_avg_in float8;
        v_avg_out float8; v_ratio float8; v_avg_dur float8; v_avg_it float8; v_uniq bigint;
        v_avg_tc float8; v_avg_orch float8; v_avg_mem float8; v_mem_ratio float8;
        v_mem_types bigint; v_avg_ent float8; v_baseline float8; v_growth float8;
        v_level text; v_adj float8; v_quality float8;
        s_token float8; s_exec float8; s_plugin float8; s_workflow float8; s_memory float8;
        s_score float8; v_creation float8; v_combined float8;
    begin
        for m in
            select * from agent_intensity_metrics as a
            where agent_ids is null or a.agent_id = any(agent_ids)
            order by a.agent_id
            for update
        loop
            v_sr := case when m.total_executions > 0
                         then m.successful_executions * 100.0::float8 / m.total_executions end;
            v_mrr := case when m.n_retry_runs > 0
                          then m.total_retries::float8 / m.n_retry_runs end;
            v_rs := case when m.n_retry_runs > 0
                         then m.retried_executions * 100.0::float8 / m.n_retry_runs end;
            v_avg_tok := case when m.n_token_runs > 0
                              then m.total_tokens_used::float8 / m.n_token_runs end;
            v_avg_in := case when m.n_io_runs > 0
                             then m.total_input_tokens::float8 / m.n_io_runs end;
            v_avg_out := case when m.n_io_runs > 0
                              then m.total_output_tokens::float8 / m.n_io_runs end;
            v_ratio := case when m.n_io_runs > 0 and m.total_input_tokens > 0
                            then m.total_output_tokens::float8 / m.total_input_tokens end;
            v_avg_dur := case when m.total_executions > 0
                              then m.total_duration_ms / m.total_executions end;
            v_avg_it := case when m.n_iteration_runs > 0
                             then m.total_iterations::float8 / m.n_iteration_runs end;
            v_uniq := case when m.n_tool_runs > 0 then cardinality(m.plugins) end;
            v_avg_tc := case when m.n_tool_runs > 0
                             then m.total_tool_calls::float8 / m.n_tool_runs end;
            v_avg_orch := case when m.n_orchestration_runs > 0
                               then m.total_orchestration_ms / m.n_orchestration_runs end;
            v_avg_mem := case when m.n_memory_runs > 0
                              then m.total_memory_tokens::float8 / m.n_memory_runs end;
            v_mem_ratio := case when v_avg_mem is not null and v_avg_in > 0
                                then least(1::float8, v_avg_mem / v_avg_in) end;
            v_mem_types := case when m.n_memory_type_runs > 0
                                then cardinality(m.memory_types) end;
            v_avg_ent := case when m.n_memory_entry_runs > 0
                              then m.total_memory_entries::float8 / m.n_memory_entry_runs end;
            v_baseline := null;
            v_growth := null;
            if m.n_io_runs >= 2 and m.latest_output_tokens is not null then
                v_baseline := (m.total_output_tokens - m.latest_output_tokens)::float8
                              / (m.n_io_runs - 1);
                if v_baseline > 0 then
                    v_growth := (m.latest_output_tokens - v_baseline) / v_baseline
                                * 100.0::float8;
                end if;
            end if;
            v_level := 'none';
            v_adj := 0;
            if v_growth is not null then
                for tier in select t from jsonb_array_elements(cfg -> 'growth.tiers') as t loop
                    if v_growth >= (tier ->> 'threshold')::float8 then
                        v_level := tier ->> 'name';
                        v_adj := (tier ->> 'adjustment')::float8;
                    end if;
                end loop;
            end if;

            s_token := null;
            if v_ratio is not null then
                v_quality := 1;
                if v_sr is not null
                   and v_sr < (cfg ->> 'quality.success_rate_below')::float8 then
                    v_quality := v_quality + (cfg ->> 'quality.success_bonus')::float8;
                end if;
                if v_rs is not null
                   and v_rs > (cfg ->> 'quality.retried_share_above')::float8 then
                    v_quality := v_quality + (cfg ->> 'quality.retried_bonus')::float8;
                end if;
                s_token := instrument_ais_clamp10(
                    (cfg ->> 'token.efficiency_factor')::float8
                    * (10::float8 - instrument_ais_norm(v_ratio, cfg -> 'range.io_ratio'))
                    + v_adj * v_quality);
            end if;
            s_exec := instrument_ais_wmean(
                array[(cfg ->> 'weight.execution.iterations')::float8,
                      (cfg ->> 'weight.execution.duration_ms')::float8,
                      (cfg ->> 'weight.execution.failure_rate')::float8,
                      (cfg ->> 'weight.execution.retries_per_run')::float8],
                array[instrument_ais_norm(v_avg_it, cfg -> 'range.iterations'),
                      instrument_ais_norm(v_avg_dur, cfg -> 'range.duration_ms'),
                      instrument_ais_norm(100::float8 - v_sr, cfg -> 'range.failure_rate'),
                      instrument_ais_norm(v_mrr, cfg -> 'range.retries_per_run')]);
            s_plugin := instrument_ais_wmean(
                array[(cfg ->> 'weight.plugin.unique_plugins')::float8,
                      (cfg ->> 'weight.plugin.tool_calls_per_run')::float8,
                      (cfg ->> 'weight.plugin.orchestration_ms')::float8],
                array[instrument_ais_norm(v_uniq::float8, cfg -> 'range.unique_plugins'),
                      instrument_ais_norm(v_avg_tc, cfg -> 'range.tool_calls_per_run'),
                      instrument_ais_norm(v_avg_orch, cfg -> 'range.orchestration_ms')]);
            s_workflow := instrument_ais_wmean(
                array[(cfg ->> 'weight.workflow.workflow_steps')::float8,
                      (cfg ->> 'weight.workflow.branches')::float8,
                      (cfg ->> 'weight.workflow.loops')::float8,
                      (cfg ->> 'weight.workflow.parallel')::float8],
                array[instrument_ais_norm(m.max_workflow_steps::float8,
                                          cfg -> 'range.workflow_steps'),
                      instrument_ais_norm(m.max_branches::float8, cfg -> 'range.branches'),
                      instrument_ais_norm(m.max_loops::float8, cfg -> 'range.loops'),
                      instrument_ais_norm(m.max_parallel::float8, cfg -> 'range.parallel')]);
            s_memory := instrument_ais_wmean(
                array[(cfg ->> 'weight.memory.memory_ratio')::float8,
                      (cfg ->> 'weight.memory.memory_types')::float8,
                      (cfg ->> 'weight.memory.memory_entries')::float8],
                array[instrument_ais_norm(v_mem_ratio, cfg -> 'range.memory_ratio'),
                      instrument_ais_norm(v_mem_types::float8, cfg -> 'range.memory_types'),
                      instrument_ais_norm(v_avg_ent, cfg -> 'range.memory_entries')]);
            s_score := instrument_ais_wmean(
                array[(cfg ->> 'weight.token')::float8, (cfg ->> 'weight.execution')::float8,
                      (cfg ->> 'weight.plugin')::float8, (cfg ->> 'weight.workflow')::float8,
                      (cfg ->> 'weight.memory')::float8],
                array[s_token, s_exec, s_plugin, s_workflow, s_memory]);
            v_creation := instrument_ais_clamp10(m.creation_score);
            if s_score is null
               or m.total_executions < (cfg ->> 'min_executions_for_score')::numeric then
                v_combined := v_creation;
            else
                v_combined := instrument_ais_clamp10(
                    (cfg ->> 'blend.creation')::float8 * v_creation
                    + (cfg ->> 'blend.execution')::float8 * s_score);
            end if;

            update agent_intensity_metrics as a set
                success_rate = v_sr,
                mean_retries_per_run = v_mrr,
                retried_share = v_rs,
                avg_tokens_per_run = v_avg_tok,
                avg_input_tokens_per_run = v_avg_in,
                avg_output_tokens_per_run = v_avg_out,
                output_input_ratio = v_ratio,
                avg_execution_duration_ms = v_avg_dur,
                avg_iterations_per_run = v_avg_it,
                unique_plugins_used = v_uniq,
                avg_tool_calls_per_run = v_avg_tc,
                avg_orchestration_ms = v_avg_orch,
                avg_memory_tokens_per_run = v_avg_mem,
                memory_token_ratio = v_mem_ratio,
                memory_type_count = v_mem_types,
                avg_memory_entries = v_avg_ent,
                output_token_baseline = v_baseline,
                output_token_growth_rate = v_growth,
                output_token_alert_level = v_level,
                token_complexity_score = s_token,
                execution_complexity_score = s_exec,
                plugin_complexity_score = s_plugin,
                workflow_complexity_score = s_workflow,
                memory_complexity_score = s_memory,
                execution_score = s_score,
                combined_score = v_combined,
                intensity_multiplier = 1::float8 + v_combined / 10::float8,
                last_calculated_at = now(),
                updated_at = now()
            where a.agent_id = m.agent_id;
        end loop;
    end
    $$;

-- ---- the write path ------------------------------------------------------------------------

-- Add already-deduplicated records (each ExecutionRecord.to_json_dict()) to their agents'
-- aggregates: one atomic upsert statement for the batch (one row per agent, agents in key order
-- so concurrent batches cannot deadlock; x = x + delta, greatest(), set union, arg-max of the
-- latest measured run), then recompute those agents' scores from the updated rows in this
-- transaction. Records without agent_id are skipped. Mirrors instrument.ais.IntensityDelta.
create or replace function public.instrument_apply_intensity(records jsonb) returns void
    language plpgsql
    security definer
    set search_path = public, pg_temp
    as $$
    declare
        v_agents text[];
        v_creation float8;
    begin
        if records is null or jsonb_typeof(records) <> 'array'
           or jsonb_array_length(records) = 0 then
            return;
        end if;
        select coalesce((value #>> '{}')::float8, 5.0) into v_creation
        from ais_config where key = 'creation.default_score';
        v_creation := coalesce(v_creation, 5.0);

        with raw as (
            select
                f.agent_id,
                f.user_id,
                f.execution_id,
                f.completed_at as completed_text,
                coalesce(instrument_ais_ms(f.duration_ms), 0) as duration_ms,
                (f.result ->> 'success')::boolean as success,
                (f.result ->> 'retries')::bigint as retries,
                (f.result -> 'tokens' ->> 'input_tokens')::bigint as inp,
                (f.result -> 'tokens' ->> 'output_tokens')::bigint as outp,
                (f.result -> 'tokens' ->> 'total_tokens')::bigint as tot,
                (f.result ->> 'iterations')::bigint as iterations,
                case when jsonb_typeof(f.result -> 'tool_calls') = 'array'
                     then f.result -> 'tool_calls' end as tool_calls,
                instrument_ais_ms(f.result ->> 'orchestration_ms') as orch,
                (f.result -> 'workflow' ->> 'steps')::bigint as wf_steps,
                (f.result -> 'workflow' ->> 'branches')::bigint as wf_branches,
                (f.result -> 'workflow' ->> 'loops')::bigint as wf_loops,
                (f.result -> 'workflow' ->> 'parallel')::bigint as wf_parallel,
                (f.result -> 'memory' ->> 'tokens')::bigint as mem_tokens,
                (f.result -> 'memory' ->> 'entry_count')::bigint as mem_entries,
                case when jsonb_typeof(f.result -> 'memory' -> 'types') = 'array'
                     then f.result -> 'memory' -> 'types' end as mem_types
            from jsonb_array_elements(records) as e
            -- each record's fields read once (text as ->> gives it; result as jsonb)
            cross join lateral jsonb_to_record(e) as f(
                agent_id text, user_id text, execution_id text, completed_at text,
                duration_ms text, result jsonb)
            where jsonb_typeof(e) = 'object' and f.agent_id is not null
        ), r as (
            select
                raw.*,
                coalesce(tot, inp + outp) as total_tokens,
                (inp is not null and outp is not null) as io,
                case when completed_text ~ '(Z|z|[+-]\d\d(:?\d\d)?)$'
                     then completed_text::timestamptz
                     else completed_text::timestamp at time zone 'UTC' end as completed_at
            from raw
        ), plugin_sets as (
            select r.agent_id,
                   array_agg(distinct tc ->> 'plugin' order by tc ->> 'plugin') as plugins
            from r cross join lateral jsonb_array_elements(r.tool_calls) as tc
            where coalesce(tc ->> 'plugin', '') <> ''
            group by r.agent_id
        ), type_sets as (
            select r.agent_id, array_agg(distinct t order by t) as types
            from r cross join lateral jsonb_array_elements_text(r.mem_types) as t
            group by r.agent_id
        ), batch as (
            select
                r.agent_id,
                min(r.user_id) as user_id,
                count(*) as total_executions,
                count(*) filter (where r.success) as successful_executions,
                count(*) filter (where not r.success) as failed_executions,
                count(r.retries) as n_retry_runs,
                coalesce(sum(r.retries), 0) as total_retries,
                count(*) filter (where r.retries > 0) as retried_executions,
                count(*) filter (where r.retries > 0 and r.success) as recovered_executions,
                count(r.total_tokens) as n_token_runs,
                coalesce(sum(r.total_tokens), 0) as total_tokens_used,
                max(r.total_tokens) as peak_tokens_single_run,
                count(*) filter (where r.io) as n_io_runs,
                coalesce(sum(r.inp) filter (where r.io), 0) as total_input_tokens,
                coalesce(sum(r.outp) filter (where r.io), 0) as total_output_tokens,
                coalesce(sum(r.duration_ms), 0) as total_duration_ms,
                max(r.duration_ms) as peak_execution_duration_ms,
                count(r.iterations) as n_iteration_runs,
                coalesce(sum(r.iterations), 0) as total_iterations,
                count(r.tool_calls) as n_tool_runs,
                coalesce(sum(jsonb_array_length(r.tool_calls)), 0) as total_tool_calls,
                count(r.orch) as n_orchestration_runs,
                coalesce(sum(r.orch), 0) as total_orchestration_ms,
                max(r.wf_steps) as max_workflow_steps,
                max(r.wf_branches) as max_branches,
                max(r.wf_loops) as max_loops,
                max(r.wf_parallel) as max_parallel,
                count(r.mem_tokens) as n_memory_runs,
                coalesce(sum(r.mem_tokens), 0) as total_memory_tokens,
                count(r.mem_entries) as n_memory_entry_runs,
                coalesce(sum(r.mem_entries), 0) as total_memory_entries,
                count(r.mem_types) as n_memory_type_runs,
                (array_agg(r.completed_at order by r.completed_at desc,
                           r.execution_id collate "C" desc) filter (where r.io))[1]
                    as latest_completed_at,
                (array_agg(r.execution_id order by r.completed_at desc,
                           r.execution_id collate "C" desc) filter (where r.io))[1]
                    as latest_execution_id,
                (array_agg(r.outp order by r.completed_at desc,
                           r.execution_id collate "C" desc) filter (where r.io))[1]
                    as latest_output_tokens
            from r
            group by r.agent_id
        )
        insert into agent_intensity_metrics as m (
            agent_id, user_id, creation_score,
            total_executions, successful_executions, failed_executions, n_retry_runs,
            total_retries, retried_executions, recovered_executions, n_token_runs,
            total_tokens_used, peak_tokens_single_run, n_io_runs, total_input_tokens,
            total_output_tokens, total_duration_ms, peak_execution_duration_ms,
            n_iteration_runs, total_iterations, n_tool_runs, total_tool_calls, plugins,
            n_orchestration_runs, total_orchestration_ms, max_workflow_steps, max_branches,
            max_loops, max_parallel, n_memory_runs, total_memory_tokens, n_memory_entry_runs,
            total_memory_entries, n_memory_type_runs, memory_types, latest_completed_at,
            latest_execution_id, latest_output_tokens
        )
        select
            b.agent_id, b.user_id, v_creation,
            b.total_executions, b.successful_executions, b.failed_executions, b.n_retry_runs,
            b.total_retries, b.retried_executions, b.recovered_executions, b.n_token_runs,
            b.total_tokens_used, b.peak_tokens_single_run, b.n_io_runs, b.total_input_tokens,
            b.total_output_tokens, b.total_duration_ms, b.peak_execution_duration_ms,
            b.n_iteration_runs, b.total_iterations, b.n_tool_runs, b.total_tool_calls,
            coalesce(p.plugins, '{}'::text[]),
            b.n_orchestration_runs, b.total_orchestration_ms, b.max_workflow_steps,
            b.max_branches, b.max_loops, b.max_parallel, b.n_memory_runs,
            b.total_memory_tokens, b.n_memory_entry_runs, b.total_memory_entries,
            b.n_memory_type_runs, coalesce(t.types, '{}'::text[]), b.latest_completed_at,
            b.latest_execution_id, b.latest_output_tokens
        from batch as b
        left join plugin_sets as p on p.agent_id = b.agent_id
        left join type_sets as t on t.agent_id = b.agent_id
        order by b.agent_id
        on conflict (agent_id) do update set
            user_id = coalesce(m.user_id, excluded.user_id),
            total_executions = m.total_executions + excluded.total_executions,
            successful_executions = m.successful_executions + excluded.successful_executions,
            failed_executions = m.failed_executions + excluded.failed_executions,
            n_retry_runs = m.n_retry_runs + excluded.n_retry_runs,
            total_retries = m.total_retries + excluded.total_retries,
            retried_executions = m.retried_executions + excluded.retried_executions,
            recovered_executions = m.recovered_executions + excluded.recovered_executions,
            n_token_runs = m.n_token_runs + excluded.n_token_runs,
            total_tokens_used = m.total_tokens_used + excluded.total_tokens_used,
            peak_tokens_single_run = greatest(m.peak_tokens_single_run,
                                              excluded.peak_tokens_single_run),
            n_io_runs = m.n_io_runs + excluded.n_io_runs,
            total_input_tokens = m.total_input_tokens + excluded.total_input_tokens,
            total_output_tokens = m.total_output_tokens + excluded.total_output_tokens,
            total_duration_ms = m.total_duration_ms + excluded.total_duration_ms,
            peak_execution_duration_ms = greatest(m.peak_execution_duration_ms,
                                                  excluded.peak_execution_duration_ms),
            n_iteration_runs = m.n_iteration_runs + excluded.n_iteration_runs,
            total_iterations = m.total_iterations + excluded.total_iterations,
            n_tool_runs = m.n_tool_runs + excluded.n_tool_runs,
            total_tool_calls = m.total_tool_calls + excluded.total_tool_calls,
            plugins = array(select distinct x from unnest(m.plugins || excluded.plugins) as x
                            order by x),
            n_orchestration_runs = m.n_orchestration_runs + excluded.n_orchestration_runs,
            total_orchestration_ms = m.total_orchestration_ms + excluded.total_orchestration_ms,
            max_workflow_steps = greatest(m.max_workflow_steps, excluded.max_workflow_steps),
            max_branches = greatest(m.max_branches, excluded.max_branches),
            max_loops = greatest(m.max_loops, excluded.max_loops),
            max_parallel = greatest(m.max_parallel, excluded.max_parallel),
            n_memory_runs = m.n_memory_runs + excluded.n_memory_runs,
            total_memory_tokens = m.total_memory_tokens + excluded.total_memory_tokens,
            n_memory_entry_runs = m.n_memory_entry_runs + excluded.n_memory_entry_runs,
            total_memory_entries = m.total_memory_entries + excluded.total_memory_entries,
            n_memory_type_runs = m.n_memory_type_runs + excluded.n_memory_type_runs,
            memory_types = array(select distinct x
                                 from unnest(m.memory_types || excluded.memory_types) as x
                                 order by x),
            latest_completed_at = case when excluded.latest_completed_at is not null and (
                    m.latest_completed_at is null
                    or (excluded.latest_completed_at, excluded.latest_execution_id)
                       > (m.latest_completed_at, m.latest_execution_id))
                then excluded.latest_completed_at else m.latest_completed_at end,
            latest_execution_id = case when excluded.latest_completed_at is not null and (
                    m.latest_completed_at is null
                    or (excluded.latest_completed_at, excluded.latest_execution_id)
                       > (m.latest_completed_at, m.latest_execution_id))
                then excluded.latest_execution_id else m.latest_execution_id end,
            latest_output_tokens = case when excluded.latest_completed_at is not null and (
                    m.latest_completed_at is null
                    or (excluded.latest_completed_at, excluded.latest_execution_id)
                       > (m.latest_completed_at, m.latest_execution_id))
                then excluded.latest_output_tokens else m.latest_output_tokens end,
            updated_at = now();

        select array_agg(distinct e ->> 'agent_id' order by e ->> 'agent_id') into v_agents
        from jsonb_array_elements(records) as e
        where e ->> 'agent_id' is not null;
        if v_agents is not null then
            perform instrument_ais_rescore(v_agents);
        end if;
    end
    $$;

-- Set an agent's creation score (0-10, from its definition; see instrument.ais.creation_score)
-- and refresh its combined score and multiplier.
create or replace function public.instrument_set_creation_score(agent_id text, score numeric)
    returns void
    language plpgsql
    security definer
    set search_path = public, pg_temp
    as $$
    #variable_conflict use_column
    begin
        if score is null or score < 0 or score > 10 then
            raise exception 'instrument_set_creation_score: score % must be between 0 and 10',
                score using errcode = '22023';
        end if;
        insert into agent_intensity_metrics as m (agent_id, creation_score)
        values (instrument_set_creation_score.agent_id, score::float8)
        on conflict (agent_id) do update set creation_score = excluded.creation_score,
                                             updated_at = now();
        perform instrument_ais_rescore(array[instrument_set_creation_score.agent_id]);
    end
    $$;

-- Dynamic-mode ranges, on demand (never on the write path): for each range, upper bound = the
-- percentile (dynamic.percentile, 0.95) of the matching per-agent value over agents with
-- executions, once the fleet has dynamic.min_fleet_executions (10) runs; lower bound = the
-- configured one. Ranges without data, or whose percentile is not above the lower bound, are
-- left out. Mirrors instrument.ais.dynamic_ranges. To use them: update ais_config's range.*
-- rows and call instrument_ais_rescore(null).
create or replace function public.instrument_ais_dynamic_ranges()
    returns table (range_key text, lo double precision, hi double precision)
    language plpgsql stable
    security definer
    set search_path = public, pg_temp
    as $$
    declare
        cfg jsonb := instrument_ais_config();
        v_fleet numeric;
    begin
        select coalesce(sum(total_executions), 0) into v_fleet
        from agent_intensity_metrics where total_executions > 0;
        if v_fleet < (cfg ->> 'dynamic.min_fleet_executions')::numeric then
            return;
        end if;
        return query
        with vals as (
            select k.key, k.v
            from agent_intensity_metrics as a
            cross join lateral (values
                ('io_ratio', a.output_input_ratio),
                ('iterations', a.avg_iterations_per_run),
                ('duration_ms', a.avg_execution_duration_ms),
                ('failure_rate', 100::float8 - a.success_rate),
                ('retries_per_run', a.mean_retries_per_run),
                ('unique_plugins', a.unique_plugins_used::float8),
                ('tool_calls_per_run', a.avg_tool_calls_per_run),
                ('orchestration_ms', a.avg_orchestration_ms),
                ('workflow_steps', a.max_workflow_steps::float8),
                ('branches', a.max_branches::float8),
                ('loops', a.max_loops::float8),
                ('parallel', a.max_parallel::float8),
                ('memory_ratio', a.memory_token_ratio),
                ('memory_types', a.memory_type_count::float8),
                ('memory_entries', a.avg_memory_entries)
            ) as k(key, v)
            where a.total_executions > 0 and k.v is not null
        ), p as (
            select vals.key,
                   percentile_cont((cfg ->> 'dynamic.percentile')::float8)
                       within group (order by vals.v) as hi
            from vals group by vals.key
        )
        select p.key, (cfg -> ('range.' || p.key) ->> 0)::float8, p.hi
        from p
        where p.hi > (cfg -> ('range.' || p.key) ->> 0)::float8
        order by p.key;
    end
    $$;

do $$
declare
    f text;
begin
    foreach f in array array[
        'public.instrument_apply_intensity(jsonb)',
        'public.instrument_ais_rescore(text[])',
        'public.instrument_set_creation_score(text, numeric)',
        'public.instrument_ais_dynamic_ranges()'
    ] loop
        execute format('revoke all on function %s from public, anon, authenticated', f);
        execute format('grant execute on function %s to service_role', f);
    end loop;
end
$$;
