-- logged-execution schema v6 (PostgreSQL / Supabase): accounting (December 2026).
--   * agent_executions gains the record's new fields: tenant_id, owner_id, parent_execution_id,
--     resumes_execution_id, tags, metadata, cost_usd (numeric: exact), price_source, input
--     (stored only when the record carries it, like the response), request_model,
--     service_tier, cache_write_input_tokens; agent_logs gains tenant_id; `status` of both
--     takes paused and refused.
--   * Owner semantics: agent_stats and agent_intensity_metrics hold one row per agent over
--     all its runs, and their user_id is the agent's owner (the record's owner_id; NULL when
--     none is named, readable by service_role only), never the caller. Rows written before v6
--     took the first caller's user_id, so they showed other users' runs to that user: v6 sets
--     their user_id to NULL, once (the next run that names an owner sets it again).
--     agent_stats counts paused runs (runs, neither success nor failure: paused_count) and
--     refused executions apart (refused_count: not runs, no last_run_*); intensity skips
--     refused executions.
--   * A fifth built-in writer, usage_ledger (bit 16 of instrument_applied.writers): one row per
--     (tenant, user, agent, UTC day of started_at), exactly once through the same ledger.
--   * Budgets: budget_inflight (runs in flight, registered by instrument_budget_reserve and
--     removed when their record lands), instrument_budget_spend, instrument_budget_reserve.
--   * Row level security (where Supabase's roles exist): a user reads their own usage_ledger
--     rows; a tenant admin (app_metadata.tenant_role = 'admin' in the JWT) reads the tenant's;
--     anon reads nothing; clients write nothing.
-- Adding nullable columns changes no existing row; the status checks are replaced NOT VALID
-- (the rows already satisfy the narrower v1 check). Idempotent: every statement can run again.

-- ---- agent_executions and agent_logs: the record's new fields ------------------------------
alter table public.agent_executions
    add column if not exists tenant_id text,
    add column if not exists owner_id text,
    add column if not exists parent_execution_id uuid,
    add column if not exists resumes_execution_id uuid,
    add column if not exists tags jsonb,
    add column if not exists metadata jsonb,
    add column if not exists cost_usd numeric,
    add column if not exists price_source text,
    add column if not exists input text,
    add column if not exists request_model text,
    add column if not exists service_tier text,
    add column if not exists cache_write_input_tokens bigint;

alter table public.agent_logs
    add column if not exists tenant_id text;

-- The CLI's filters: by time (agent_executions_started_idx, v1), children of an execution,
-- a tenant's executions by time (and a rolling budget window per tenant).
create index if not exists agent_executions_parent_idx
    on public.agent_executions (parent_execution_id) where parent_execution_id is not null;
create index if not exists agent_executions_tenant_started_idx
    on public.agent_executions (tenant_id, started_at desc) where tenant_id is not null;
create index if not exists agent_logs_tenant_created_idx
    on public.agent_logs (tenant_id, created_at desc) where tenant_id is not null;

-- status takes paused and refused. Only a check this SDK created is replaced (an application's
-- own agent_logs table, adopted by v1, keeps whatever it has).
do $$
declare
    t text;
begin
    foreach t in array array['agent_executions', 'agent_logs'] loop
        if exists (select 1 from pg_catalog.pg_constraint as c
                   where c.conrelid = pg_catalog.to_regclass('public.' || t)
                     and c.conname = t || '_status_check'
                     and pg_catalog.pg_get_constraintdef(c.oid) not like '%paused%') then
            execute format('alter table public.%I drop constraint %I', t, t || '_status_check');
            execute format('alter table public.%I add constraint %I check (status in '
                           '(''completed'', ''failed'', ''paused'', ''refused'')) not valid',
                           t, t || '_status_check');
        end if;
    end loop;
end
$$;

-- ---- the per-agent tables: paused and refused, and the owner ---------------------------------
alter table public.agent_stats
    add column if not exists paused_count bigint not null default 0,
    add column if not exists refused_count bigint not null default 0;

-- Once, when v6 is first applied: the rows' user_id was whichever user ran the agent first.
do $$
begin
    if not exists (select 1 from public.instrument_schema_version where version >= 6) then
        update public.agent_stats set user_id = null where user_id is not null;
        update public.agent_intensity_metrics set user_id = null where user_id is not null;
    end if;
end
$$;

-- ---- the ledger of applied writers: usage_ledger is bit 16 ----------------------------------
alter table public.instrument_applied
    drop constraint if exists instrument_applied_writers_check;
alter table public.instrument_applied
    add constraint instrument_applied_writers_check check (writers between 0 and 31) not valid;

create or replace view public.instrument_ledger with (security_invoker = true) as
    select a.execution_id, w.writer, a.applied_at
    from public.instrument_applied as a
    cross join (values ('executions', 1), ('logs', 2), ('stats', 4), ('intensity', 8),
                       ('usage_ledger', 16)) as w(writer, bit)
    where a.writers & w.bit <> 0;

create or replace function public.instrument_ledger_insert() returns trigger
    language plpgsql
    set search_path = public, pg_temp
    as $$
    declare
        v_bit smallint := case new.writer when 'executions' then 1 when 'logs' then 2
                                          when 'stats' then 4 when 'intensity' then 8
                                          when 'usage_ledger' then 16 end;
    begin
        if v_bit is null then
            raise exception 'instrument_ledger: unknown writer %', new.writer
                using errcode = '22023';
        end if;
        insert into instrument_applied as a (execution_id, writers, applied_at)
        values (new.execution_id, v_bit, coalesce(new.applied_at, now()))
        on conflict (execution_id) do update set writers = a.writers | excluded.writers;
        return new;
    end
    $$;

-- ---- usage_ledger: per (tenant, user, agent, UTC day) ---------------------------------------
-- An absent tenant, user or agent is '' (not NULL), so the primary key stays unique. Token and
-- cost columns are sums of the measured values: NULL until a run of the row measured one
-- (unmeasured is never 0). cost_usd sums priced runs only; unpriced_runs counts the others.
-- runs = completed + failed + paused; refused executions are counted apart, not as runs.
create table if not exists public.usage_ledger (
    tenant_id text not null default '',
    user_id text not null default '',
    agent_id text not null default '',
    day date not null,
    runs bigint not null default 0,
    successes bigint not null default 0,
    failures bigint not null default 0,
    paused bigint not null default 0,
    refused bigint not null default 0,
    input_tokens bigint,
    output_tokens bigint,
    cached_input_tokens bigint,
    reasoning_tokens bigint,
    cache_write_input_tokens bigint,
    total_tokens bigint,
    cost_usd numeric,
    unpriced_runs bigint not null default 0,
    updated_at timestamptz not null default now(),
    primary key (tenant_id, user_id, agent_id, day)
);
-- Budgets and `stats --by` read one key's days: per tenant, per user, per agent.
create index if not exists usage_ledger_tenant_day_idx on public.usage_ledger (tenant_id, day);
create index if not exists usage_ledger_user_day_idx on public.usage_ledger (user_id, day);
create index if not exists usage_ledger_agent_day_idx on public.usage_ledger (agent_id, day);

-- ---- budgets: runs in flight ----------------------------------------------------------------
-- One row per (execution, budget key) that instrument_budget_reserve let start; deleted by
-- instrument_ingest when the execution's record lands, ignored (and cleaned) once expired.
create table if not exists public.budget_inflight (
    execution_id uuid not null,
    per text not null check (per in ('user', 'tenant', 'agent')),
    key text not null,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    primary key (execution_id, per, key)
);
create index if not exists budget_inflight_key_idx
    on public.budget_inflight (per, key, expires_at);

-- ---- ingest helpers -------------------------------------------------------------------------
-- As in v1, knowing the result's v6 fields: they are columns of their own, not engine details.
create or replace function public.instrument_engine_details(res jsonb) returns jsonb
    language sql stable
    as $$
        select case
            when pg_catalog.jsonb_typeof(res) = 'object'
                 and res - '{success,error,tokens,iterations,retries,tool_calls,model,provider,
                             response,memory,steps,workflow,orchestration_ms,extras,
                             request_model,service_tier,input,paused,refused,cost_usd,
                             price_source}'::text[]
                     = '{}'::jsonb
            then pg_catalog.jsonb_strip_nulls(
                     res - '{success,error,model,provider,request_model,service_tier,input,
                             paused,refused,cost_usd,price_source}'::text[])
                 || case when res ? 'extras' then '{}'::jsonb
                         else '{"extras": {}}'::jsonb end
                 || case when pg_catalog.jsonb_typeof(res -> 'tool_calls') = 'array'
                         then pg_catalog.jsonb_build_object('tool_call_count',
                             pg_catalog.jsonb_array_length(res -> 'tool_calls'))
                         else '{}'::jsonb end
            else pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                'iterations', res -> 'iterations',
                'retries', res -> 'retries',
                'tool_call_count', case when pg_catalog.jsonb_typeof(res -> 'tool_calls') = 'array'
                                        then pg_catalog.to_jsonb(
                                            pg_catalog.jsonb_array_length(res -> 'tool_calls')) end,
                'tool_calls', res -> 'tool_calls',
                'tokens', res -> 'tokens',
                'steps', res -> 'steps',
                'workflow', res -> 'workflow',
                'memory', res -> 'memory',
                'orchestration_ms', res -> 'orchestration_ms',
                'extras', coalesce(res -> 'extras', '{}'::jsonb),
                'response', res -> 'response'
            ))
        end
    $$;

-- The v2 entry point, as in v4, with the owner semantics: the rows' user_id is the records'
-- owner_id, and refused executions (not runs) are skipped.
create or replace function public.instrument_apply_intensity(records jsonb) returns void
    language plpgsql
    security definer
    set search_path = public, pg_temp
    as $$
    begin
        if records is null or jsonb_typeof(records) <> 'array'
           or jsonb_array_length(records) = 0 then
            return;
        end if;
        perform instrument_apply_intensity_rows(
            array_agg(f.agent_id order by e.ord), array_agg(f.owner_id order by e.ord),
            array_agg(f.execution_id order by e.ord), array_agg(f.completed_at order by e.ord),
            array_agg(f.duration_ms order by e.ord), array_agg(f.result order by e.ord))
        from jsonb_array_elements(records) with ordinality as e(r, ord)
        cross join lateral jsonb_to_record(e.r) as f(
            agent_id text, owner_id text, execution_id text, completed_at text,
            duration_ms text, result jsonb)
        where jsonb_typeof(e.r) = 'object' and f.agent_id is not null
          and not coalesce((f.result ->> 'refused')::boolean, false);
    end
    $$;

-- ---- instrument_ingest ----------------------------------------------------------------------
-- As in v5 (same reading of the batch, same ledger, same result), with:
--   * the v6 columns of agent_executions and agent_logs, and status = the record's status;
--   * stats: runs are completed, failed and paused executions (paused: neither success nor
--     failure), refused ones are counted apart; user_id is the agent's owner (owner_id);
--   * intensity: refused executions skipped; the rows' user_id is the owner;
--   * the usage_ledger writer (bit 16), aggregated per (tenant, user, agent, day);
--   * the batch's budget_inflight rows deleted (their runs' spend is now committed).
-- The caller strips response and input text first unless content capture is on.
create or replace function public.instrument_ingest(records jsonb, default_writers text[])
    returns jsonb
    language plpgsql
    security definer
    set search_path = public, pg_temp
    -- The planner cannot see a batch's size (it guesses 100 rows, then 1 after deduplication)
    -- and would join the batch with its new ledger rows in nested loops: O(n^2). Hash and merge
    -- joins are O(n) at any batch size. Disabling nested loops inflates plan costs, which
    -- would trigger JIT compilation (tens of ms per statement): off too.
    set enable_nestloop = off
    set jit = off
    set plan_cache_mode = force_generic_plan
    as $$
    declare
        v_total integer;
        v_applied integer;
        v_default smallint;
        v_int_agents text[];
        v_int_ids text[];
        v_int_completed text[];
        v_int_durations text[];
        v_int_results jsonb[];
        v_int_owners text[];
        v_rand text;
        v_log_ids text;
        v_log_seq bigint;
    begin
        if records is null or jsonb_typeof(records) <> 'array' then
            raise exception 'instrument_ingest: records must be a JSON array'
                using errcode = '22023';
        end if;
        v_default := (case when 'executions' = any(default_writers) then 1 else 0 end
                      | case when 'logs' = any(default_writers) then 2 else 0 end
                      | case when 'stats' = any(default_writers) then 4 else 0 end
                      | case when 'intensity' = any(default_writers) then 8 else 0 end
                      | case when 'usage_ledger' = any(default_writers) then 16 else 0 end
                      )::smallint;
        v_total := jsonb_array_length(records);
        if v_total = 0 then
            return jsonb_build_object('applied', 0, 'duplicates', 0);
        end if;
        -- agent_logs ids, time-ordered like UUIDv7 (RFC 9562): the first 20 hex digits are
        -- the clock in ms, version 7, the variant and 26 random bits; the last 12 are a random 47-bit
        -- number plus the record's position in the batch. One random draw per batch instead
        -- of one per row, and ids that grow with time, so agent_logs_pkey is appended at its
        -- right edge instead of dirtying a random leaf page per row.
        v_rand := replace(gen_random_uuid()::text, '-', '');  -- 32 hex digits, 122 random bits
        v_log_ids := lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint
                                 & x'ffffffffffff'::bigint), 12, '0');
        v_log_ids := substr(v_log_ids, 1, 8) || '-' || substr(v_log_ids, 9, 4) || '-7'
                     || substr(v_rand, 1, 3) || '-' || substr(v_rand, 17, 4) || '-';
        v_log_seq := ('x' || substr(v_rand, 21, 12))::bit(48)::bigint
                     & x'7fffffffffff'::bigint;  -- [0, 2^47): adding positions cannot overflow

        with src as materialized (
            -- the batch, one row per execution_id (first occurrence wins), each field read
            -- once: text as ->> gives it, nested objects as jsonb (a JSON null reads as null);
            -- only expressions that cannot fail here (casts belong to the writers below).
            -- bits: the record's built-in writers as a bitmask: its own "writers" array
            -- (? matches string elements only, as names are strings), else the defaults
            select distinct on (x.execution_id) x.*,
                   instrument_engine_details(x.res) as details,  -- shared by two writers
                   case when jsonb_typeof(x.writers) = 'array'
                        then (case when x.writers ? 'executions' then 1 else 0 end
                              | case when x.writers ? 'logs' then 2 else 0 end
                              | case when x.writers ? 'stats' then 4 else 0 end
                              | case when x.writers ? 'intensity' then 8 else 0 end
                              | case when x.writers ? 'usage_ledger' then 16 else 0 end
                              )::smallint
                        else v_default end as bits
            from (
                select (f.execution_id)::uuid as execution_id, f.*
                from rows from (jsonb_to_recordset(records) as (
                    execution_id text, agent_id text, user_id text, agent_name text,
                    session_id text, execution_type text, engine text, name jsonb,
                    started_at text, completed_at text, duration_ms text, trace_id text,
                    span_id text, result jsonb, writers jsonb, tenant_id text, owner_id text,
                    parent_execution_id text, resumes_execution_id text, tags jsonb,
                    metadata jsonb)) with ordinality as f
            ) as x (execution_id, eid, agent_id, user_id, agent_name, session_id,
                    execution_type, engine, name, started_at, completed_at, duration_ms,
                    trace_id, span_id, res, writers, tenant_id, owner_id, parent_execution_id,
                    resumes_execution_id, tags, metadata, ord)
            order by x.execution_id, x.ord
        ), ins as materialized (
            -- one ledger row per execution, in key order (no deadlocks); a re-delivery adds
            -- only the bits it lacks, and returns the row only when it added one ("added")
            insert into instrument_applied as l (execution_id, writers, added)
            select s.execution_id, s.bits, s.bits
            from src as s
            where s.bits <> 0
            order by s.execution_id
            on conflict (execution_id) do update set
                writers = l.writers | excluded.writers,
                added = excluded.writers & ~l.writers
                where l.writers | excluded.writers <> l.writers
            returning execution_id, added
        ), nb as materialized (
            -- the records that gained a bit, in key order, with the bits gained and what
            -- several writers read (evaluated only where one of them would: a cast that
            -- fails rejects the batch exactly where v3's writers rejected it).
            -- st: the record's status (ExecutionResult.status): refused, paused, completed or
            -- failed, in that order of precedence
            select
                b.*,
                case when b.refused then 'refused'
                     when b.paused then 'paused'
                     when b.ok then 'completed'
                     else 'failed' end as st
            from (
                select
                    b.*,
                    i.added,
                    case when i.added & 19 <> 0
                              or (i.added & 12 <> 0 and b.agent_id is not null)
                         then (b.res ->> 'success')::boolean end as ok,
                    case when i.added & 19 <> 0
                              or (i.added & 4 <> 0 and b.agent_id is not null)
                         then instrument_total_tokens(b.res -> 'tokens') end as total,
                    coalesce((b.res ->> 'paused')::boolean, false) as paused,
                    coalesce((b.res ->> 'refused')::boolean, false) as refused
                from ins as i
                join src as b on b.execution_id = i.execution_id
                offset 0
            ) as b
            order by b.execution_id
        ), done as materialized (
            -- reads every new ledger row of the batch before any other table is written,
            -- and the intensity writer's fields of the records that gained its bit (a refused
            -- execution did not run: it has nothing to score; the row's user is the owner)
            select
                count(*) as n_applied,
                array_agg(b.agent_id) filter (where b.added & 8 <> 0 and not b.refused)
                    as int_agents,
                array_agg(b.owner_id) filter (where b.added & 8 <> 0 and not b.refused)
                    as int_owners,
                array_agg(b.eid) filter (where b.added & 8 <> 0 and not b.refused) as int_ids,
                array_agg(b.completed_at) filter (where b.added & 8 <> 0 and not b.refused)
                    as int_completed,
                array_agg(b.duration_ms) filter (where b.added & 8 <> 0 and not b.refused)
                    as int_durations,
                array_agg(b.res) filter (where b.added & 8 <> 0 and not b.refused)
                    as int_results
            from nb as b
        ), ex as (
            insert into agent_executions (
                id, agent_id, user_id, agent_name, session_id, execution_type, engine, status,
                started_at, completed_at, execution_duration_ms, error_type, error_message,
                input_tokens, output_tokens, total_tokens, model, provider, trace_id, span_id,
                logs, tenant_id, owner_id, parent_execution_id, resumes_execution_id, tags,
                metadata, cost_usd, price_source, input, request_model, service_tier,
                cache_write_input_tokens
            )
            select
                b.execution_id,
                b.agent_id,
                b.user_id,
                b.agent_name,
                b.session_id,
                coalesce(b.execution_type, 'manual'),
                b.engine,
                b.st,
                (b.started_at)::timestamptz,
                (b.completed_at)::timestamptz,
                round((b.duration_ms)::numeric)::integer,
                b.res -> 'error' ->> 'type',
                b.res -> 'error' ->> 'message',
                (b.res -> 'tokens' ->> 'input_tokens')::bigint,
                (b.res -> 'tokens' ->> 'output_tokens')::bigint,
                b.total::bigint,
                b.res ->> 'model',
                b.res ->> 'provider',
                b.trace_id,
                b.span_id,
                jsonb_build_object('name', b.name) || b.details,
                b.tenant_id,
                b.owner_id,
                (b.parent_execution_id)::uuid,
                (b.resumes_execution_id)::uuid,
                case when jsonb_typeof(b.tags) = 'array' then b.tags end,
                case when jsonb_typeof(b.metadata) = 'object' then b.metadata end,
                (b.res ->> 'cost_usd')::numeric,
                b.res ->> 'price_source',
                b.res ->> 'input',
                b.res ->> 'request_model',
                b.res ->> 'service_tier',
                (b.res -> 'tokens' ->> 'cache_write_input_tokens')::bigint
            from nb as b
            where b.added & 1 <> 0
            order by b.execution_id
            -- a row the ledger does not know of (written before the ledger, by hand, or by
            -- another writer at this very moment) stays as it is: a probe of the key instead
            -- would be ~1 ms per 1,000 rows cheaper, but a concurrent insert of the same id
            -- would then fail the whole batch and, bisected, quarantine the record.
            -- No conflict target: on the monthly-partitioned layout (partition_by_month.sql)
            -- the key is (id, started_at); exactly once rests on the ledger (ins), not on it
            on conflict do nothing
        ), lg as (
            insert into agent_logs (
                id, execution_id, agent_id, user_id, run_output, full_output, status,
                status_message, run_time, run_tokens, user_credits_used, tenant_id
            )
            select
                -- time-ordered (see v_log_ids above): the primary key grows at its right edge
                (v_log_ids || lpad(to_hex(v_log_seq + b.ord), 12, '0'))::uuid,
                b.execution_id,
                b.agent_id,
                b.user_id,
                -- writers/logs.py run_output(): jsonb's text form (keys by length, then name).
                -- With scalar values (always, for SDK records) that text is written directly;
                -- otherwise jsonb_strip_nulls, which also strips inside nested values, makes it.
                case when jsonb_typeof(b.res -> 'success') in ('object', 'array')
                          or jsonb_typeof(b.res -> 'iterations') in ('object', 'array')
                          or jsonb_typeof(b.res -> 'model') in ('object', 'array')
                          or jsonb_typeof(b.res -> 'provider') in ('object', 'array')
                then
                    jsonb_strip_nulls(jsonb_build_object(
                        'success', b.res -> 'success',
                        'engine', to_jsonb(b.engine),
                        'iterations', b.res -> 'iterations',
                        'tool_calls_count',
                            case when jsonb_typeof(b.res -> 'tool_calls') = 'array'
                                 then jsonb_array_length(b.res -> 'tool_calls') end,
                        'tokens_used', b.total,
                        'execution_time_ms', b.duration,
                        'model', b.res -> 'model',
                        'provider', b.res -> 'provider',
                        'steps_completed', b.completed,
                        'steps_failed', b.failed,
                        'steps_skipped', b.skipped,
                        'total_steps',
                            case when coalesce(b.completed, b.failed, b.skipped) is not null
                                 then coalesce(b.completed, 0) + coalesce(b.failed, 0)
                                      + coalesce(b.skipped, 0) end
                    ))::text
                else '{' || concat_ws(', ',
                    '"model": ' || nullif(b.res -> 'model', 'null')::text,
                    '"engine": ' || to_json(b.engine)::text,
                    '"success": ' || nullif(b.res -> 'success', 'null')::text,
                    '"provider": ' || nullif(b.res -> 'provider', 'null')::text,
                    '"iterations": ' || nullif(b.res -> 'iterations', 'null')::text,
                    '"tokens_used": ' || b.total,
                    '"total_steps": '
                        || case when coalesce(b.completed, b.failed, b.skipped) is not null
                                then coalesce(b.completed, 0) + coalesce(b.failed, 0)
                                     + coalesce(b.skipped, 0) end,
                    '"steps_failed": ' || b.failed,
                    '"steps_skipped": ' || b.skipped,
                    '"steps_completed": ' || b.completed,
                    '"tool_calls_count": '
                        || case when jsonb_typeof(b.res -> 'tool_calls') = 'array'
                                then jsonb_array_length(b.res -> 'tool_calls') end,
                    '"execution_time_ms": ' || b.duration
                ) || '}' end,
                jsonb_build_object(
                    (b.engine) || '_metadata',
                    jsonb_strip_nulls(jsonb_build_object(
                        'execution_id', to_jsonb(b.eid),
                        'model', b.res -> 'model',
                        'provider', b.res -> 'provider'
                    )) || b.details
                ),
                b.st,
                case when not b.ok
                          and jsonb_typeof(b.res -> 'error') = 'object'
                     then (b.res -> 'error' ->> 'type') || ': '
                          || (b.res -> 'error' ->> 'message') end,
                b.duration,
                b.total::bigint,
                ceil(b.total / 1000.0)::bigint,
                b.tenant_id
            from (
                select
                    b.*,
                    round((b.duration_ms)::numeric)::integer as duration,
                    (b.res -> 'steps' ->> 'completed')::integer as completed,
                    (b.res -> 'steps' ->> 'failed')::integer as failed,
                    (b.res -> 'steps' ->> 'skipped')::integer as skipped
                from nb as b
                where b.added & 2 <> 0
                offset 0
            ) as b
            order by b.execution_id
            on conflict do nothing  -- as for agent_executions (partitioned: no target)
        ), st as (
            -- runs are completed, failed and paused executions; a refused one only counts apart;
            -- the row's user_id is the agent's owner (owner_id), never the caller
            insert into agent_stats as s (
                agent_id, user_id, run_count, success_count, failure_count, total_tokens,
                token_run_count, total_duration_ms, last_run_at, last_run_status, updated_at,
                paused_count, refused_count
            )
            select
                d.agent_id,
                (array_agg(d.owner_id order by d.completed_at desc, d.execution_id desc)
                    filter (where d.owner_id is not null))[1],
                count(*) filter (where d.st <> 'refused'),
                count(*) filter (where d.st = 'completed'),
                count(*) filter (where d.st = 'failed'),
                coalesce(sum(d.total) filter (where d.st <> 'refused'), 0),
                count(d.total) filter (where d.st <> 'refused'),
                coalesce(sum(d.duration) filter (where d.st <> 'refused'), 0),
                max(d.completed_at) filter (where d.st <> 'refused'),
                (array_agg(d.st order by d.completed_at desc, d.execution_id desc)
                    filter (where d.st <> 'refused'))[1],
                now(),
                count(*) filter (where d.st = 'paused'),
                count(*) filter (where d.st = 'refused')
            from (
                select
                    b.execution_id,
                    b.agent_id as agent_id,
                    b.owner_id as owner_id,
                    b.st,
                    b.total,
                    round((b.duration_ms)::numeric)::bigint as duration,
                    (b.completed_at)::timestamptz as completed_at
                from nb as b
                where b.added & 4 <> 0 and b.agent_id is not null
                offset 0
            ) as d
            group by d.agent_id
            order by d.agent_id
            on conflict (agent_id) do update set
                user_id = coalesce(s.user_id, excluded.user_id),
                run_count = s.run_count + excluded.run_count,
                success_count = s.success_count + excluded.success_count,
                failure_count = s.failure_count + excluded.failure_count,
                total_tokens = s.total_tokens + excluded.total_tokens,
                token_run_count = s.token_run_count + excluded.token_run_count,
                total_duration_ms = s.total_duration_ms + excluded.total_duration_ms,
                paused_count = s.paused_count + excluded.paused_count,
                refused_count = s.refused_count + excluded.refused_count,
                last_run_status = case
                    when s.last_run_at is null or excluded.last_run_at >= s.last_run_at
                    then excluded.last_run_status else s.last_run_status end,
                last_run_at = greatest(s.last_run_at, excluded.last_run_at),
                updated_at = now()
        ), ul as (
            -- writer "usage_ledger": one row per (tenant, user, agent, UTC day of started_at),
            -- '' for an absent key; counters x = x + delta; token and cost sums are sums of
            -- the measured values (null until a run measured one); cost sums priced runs only
            -- and unpriced_runs counts the runs without a cost; refused executions are not runs
            insert into usage_ledger as l (
                tenant_id, user_id, agent_id, day, runs, successes, failures, paused, refused,
                input_tokens, output_tokens, cached_input_tokens, reasoning_tokens,
                cache_write_input_tokens, total_tokens, cost_usd, unpriced_runs, updated_at
            )
            select
                d.tenant_id, d.user_id, d.agent_id, d.day,
                count(*) filter (where d.st <> 'refused'),
                count(*) filter (where d.st = 'completed'),
                count(*) filter (where d.st = 'failed'),
                count(*) filter (where d.st = 'paused'),
                count(*) filter (where d.st = 'refused'),
                sum(d.inp), sum(d.outp), sum(d.cached), sum(d.reasoning), sum(d.cwrite),
                sum(d.total), sum(d.cost),
                count(*) filter (where d.st <> 'refused' and d.cost is null),
                now()
            from (
                select
                    coalesce(b.tenant_id, '') as tenant_id,
                    coalesce(b.user_id, '') as user_id,
                    coalesce(b.agent_id, '') as agent_id,
                    ((b.started_at)::timestamptz at time zone 'UTC')::date as day,
                    b.st,
                    case when not b.refused
                         then (b.res -> 'tokens' ->> 'input_tokens')::bigint end as inp,
                    case when not b.refused
                         then (b.res -> 'tokens' ->> 'output_tokens')::bigint end as outp,
                    case when not b.refused
                         then (b.res -> 'tokens' ->> 'cached_input_tokens')::bigint end as cached,
                    case when not b.refused
                         then (b.res -> 'tokens' ->> 'reasoning_tokens')::bigint end as reasoning,
                    case when not b.refused
                         then (b.res -> 'tokens' ->> 'cache_write_input_tokens')::bigint
                    end as cwrite,
                    case when not b.refused then b.total end as total,
                    case when not b.refused then (b.res ->> 'cost_usd')::numeric end as cost
                from nb as b
                where b.added & 16 <> 0
                offset 0
            ) as d
            group by d.tenant_id, d.user_id, d.agent_id, d.day
            order by d.tenant_id, d.user_id, d.agent_id, d.day
            on conflict (tenant_id, user_id, agent_id, day) do update set
                runs = l.runs + excluded.runs,
                successes = l.successes + excluded.successes,
                failures = l.failures + excluded.failures,
                paused = l.paused + excluded.paused,
                refused = l.refused + excluded.refused,
                input_tokens = coalesce(l.input_tokens + excluded.input_tokens,
                                        l.input_tokens, excluded.input_tokens),
                output_tokens = coalesce(l.output_tokens + excluded.output_tokens,
                                         l.output_tokens, excluded.output_tokens),
                cached_input_tokens = coalesce(l.cached_input_tokens
                                               + excluded.cached_input_tokens,
                                               l.cached_input_tokens,
                                               excluded.cached_input_tokens),
                reasoning_tokens = coalesce(l.reasoning_tokens + excluded.reasoning_tokens,
                                            l.reasoning_tokens, excluded.reasoning_tokens),
                cache_write_input_tokens = coalesce(l.cache_write_input_tokens
                                                    + excluded.cache_write_input_tokens,
                                                    l.cache_write_input_tokens,
                                                    excluded.cache_write_input_tokens),
                total_tokens = coalesce(l.total_tokens + excluded.total_tokens,
                                        l.total_tokens, excluded.total_tokens),
                cost_usd = coalesce(l.cost_usd + excluded.cost_usd, l.cost_usd,
                                    excluded.cost_usd),
                unpriced_runs = l.unpriced_runs + excluded.unpriced_runs,
                updated_at = now()
        ), fl as (
            -- a budget reservation ends when its execution's record lands (in this
            -- transaction, with the spend it committed); duplicates included
            delete from budget_inflight as f
            where f.execution_id in (select s.execution_id from src as s)
        )
        select
            d.n_applied
                + (select count(*) filter (where s.bits = 0) from src as s),
            d.int_agents, d.int_owners, d.int_ids, d.int_completed, d.int_durations,
            d.int_results
        into v_applied, v_int_agents, v_int_owners, v_int_ids, v_int_completed,
             v_int_durations, v_int_results
        from done as d;

        if v_int_agents is not null then
            perform instrument_apply_intensity_rows(v_int_agents, v_int_owners, v_int_ids,
                                                    v_int_completed, v_int_durations,
                                                    v_int_results);
        end if;

        return jsonb_build_object('applied', v_applied, 'duplicates', v_total - v_applied);
    end
    $$;


-- ---- budgets --------------------------------------------------------------------------------
-- Committed spend of one budget key since `p_since`: {"usd": text (exact), "tokens": n,
-- "runs": n}. Whole UTC days come from usage_ledger (its (tenant_id|user_id|agent_id, day)
-- index); when p_since is not a UTC midnight (a rolling window), the rest of its first day
-- comes from agent_executions (its (user_id|agent_id|tenant_id, started_at) index).
-- tokens are total_tokens; refused executions spend nothing and are not runs.
create or replace function public.instrument_budget_spend(p_per text, p_key text,
                                                          p_since timestamptz)
    returns jsonb
    language plpgsql
    stable
    security definer
    set search_path = public, pg_temp
    as $$
    declare
        v_col text := case p_per when 'user' then 'user_id' when 'tenant' then 'tenant_id'
                                 when 'agent' then 'agent_id' end;
        v_day date := (p_since at time zone 'UTC')::date;
        v_midnight timestamptz := v_day::timestamp at time zone 'UTC';
        v_usd numeric;
        v_tokens bigint;
        v_runs bigint;
        v_head_usd numeric;
        v_head_tokens bigint;
        v_head_runs bigint;
    begin
        if v_col is null or p_key is null or p_since is null then
            raise exception 'instrument_budget_spend: per must be user, tenant or agent (got %),'
                            ' key and since must be given', p_per using errcode = '22023';
        end if;
        execute format('select coalesce(sum(cost_usd), 0), coalesce(sum(total_tokens), 0), '
                       'coalesce(sum(runs), 0) from usage_ledger where %I = $1 and day >= $2',
                       v_col)
            into v_usd, v_tokens, v_runs
            using p_key, case when p_since = v_midnight then v_day else v_day + 1 end;
        if p_since <> v_midnight then
            execute format('select coalesce(sum(cost_usd), 0), coalesce(sum(total_tokens), 0), '
                           'count(*) from agent_executions where %I = $1 and started_at >= $2 '
                           'and started_at < $3 and status <> ''refused''', v_col)
                into v_head_usd, v_head_tokens, v_head_runs
                using p_key, p_since, v_midnight + interval '1 day';
            v_usd := v_usd + v_head_usd;
            v_tokens := v_tokens + v_head_tokens;
            v_runs := v_runs + v_head_runs;
        end if;
        return jsonb_build_object('usd', v_usd::text, 'tokens', v_tokens, 'runs', v_runs);
    end
    $$;

-- Atomically: committed spend of the key since p_since, and its runs in flight; when the spend
-- is below both limits (a null limit is no limit), register p_execution_id as in flight for
-- p_ttl_s seconds. Serialized per key by a transaction-level advisory lock; expired rows of the
-- key are deleted. Returns {"allowed", "spent_usd" (text), "spent_tokens", "in_flight" (runs
-- of the key in flight before this one)}.
create or replace function public.instrument_budget_reserve(
    p_per text, p_key text, p_since timestamptz, p_limit_usd numeric, p_limit_tokens bigint,
    p_execution_id uuid, p_ttl_s double precision
) returns jsonb
    language plpgsql
    security definer
    set search_path = public, pg_temp
    as $$
    declare
        v_spend jsonb;
        v_usd numeric;
        v_tokens bigint;
        v_in_flight bigint;
        v_allowed boolean;
    begin
        if p_execution_id is null or p_ttl_s is null or p_ttl_s <= 0 then
            raise exception 'instrument_budget_reserve: execution_id and a positive ttl_s are '
                            'required' using errcode = '22023';
        end if;
        perform pg_advisory_xact_lock(
            hashtextextended('logged-execution budget ' || p_per || ':' || p_key, 0));
        v_spend := instrument_budget_spend(p_per, p_key, p_since);
        v_usd := (v_spend ->> 'usd')::numeric;
        v_tokens := (v_spend ->> 'tokens')::bigint;
        delete from budget_inflight as f
        where f.per = p_per and f.key = p_key and f.expires_at <= clock_timestamp();
        select count(*) into v_in_flight from budget_inflight as f
        where f.per = p_per and f.key = p_key and f.execution_id <> p_execution_id;
        v_allowed := (p_limit_usd is null or v_usd < p_limit_usd)
                     and (p_limit_tokens is null or v_tokens < p_limit_tokens);
        if v_allowed then
            insert into budget_inflight as f (execution_id, per, key, expires_at)
            values (p_execution_id, p_per, p_key,
                    clock_timestamp() + p_ttl_s * interval '1 second')
            on conflict (execution_id, per, key) do update set expires_at = excluded.expires_at;
        end if;
        return jsonb_build_object('allowed', v_allowed, 'spent_usd', v_usd::text,
                                  'spent_tokens', v_tokens, 'in_flight', v_in_flight);
    end
    $$;

-- ---- privileges -----------------------------------------------------------------------------
revoke all on table public.usage_ledger from public;
revoke all on table public.budget_inflight from public;
revoke all on function public.instrument_budget_spend(text, text, timestamptz) from public;
revoke all on function public.instrument_budget_reserve(text, text, timestamptz, numeric, bigint,
                                                        uuid, double precision) from public;

-- Row level security, where Supabase's roles exist (on Supabase, or where `instrument migrate`
-- created them). A signed-in user reads their own usage_ledger rows, and a tenant's admins
-- read the tenant's: the JWT's app_metadata (which only the service can set; user_metadata is
-- the user's to edit) names the tenant (tenant_id) and the role (tenant_role = 'admin'). anon
-- reads nothing, clients write nothing (only service_role and the security definer
-- functions). agent_stats and agent_intensity_metrics keep "owner only": their user_id is now
-- the agent's owner.
do $$
declare
    f text;
begin
    if (select count(*) from pg_catalog.pg_roles
        where rolname in ('anon', 'authenticated', 'service_role')) < 3 then
        return;
    end if;
    -- Supabase provides auth.jwt(); elsewhere it is created beside auth.uid() (v1).
    if pg_catalog.to_regnamespace('auth') is not null
       and pg_catalog.to_regprocedure('auth.jwt()') is null then
        create function auth.jwt() returns jsonb
            language sql stable
            as $f$
                select coalesce(
                    nullif(current_setting('request.jwt.claim', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')
                )::jsonb
            $f$;
        grant execute on function auth.jwt() to anon, authenticated, service_role;
    end if;

    alter table public.usage_ledger enable row level security;
    revoke all on table public.usage_ledger from anon, authenticated;
    grant select on table public.usage_ledger to authenticated;
    grant select, insert, update, delete on table public.usage_ledger to service_role;
    drop policy if exists usage_ledger_service_role_all on public.usage_ledger;
    create policy usage_ledger_service_role_all on public.usage_ledger
        for all to service_role using (true) with check (true);
    drop policy if exists usage_ledger_select_own_or_tenant_admin on public.usage_ledger;
    create policy usage_ledger_select_own_or_tenant_admin on public.usage_ledger
        for select to authenticated
        using (
            user_id = (select auth.uid())::text
            or (tenant_id <> ''
                and (select auth.jwt() -> 'app_metadata' ->> 'tenant_role') = 'admin'
                and tenant_id = (select auth.jwt() -> 'app_metadata' ->> 'tenant_id'))
        );

    alter table public.budget_inflight enable row level security;
    revoke all on table public.budget_inflight from anon, authenticated;
    grant select, insert, update, delete on table public.budget_inflight to service_role;
    drop policy if exists budget_inflight_service_role_all on public.budget_inflight;
    create policy budget_inflight_service_role_all on public.budget_inflight
        for all to service_role using (true) with check (true);

    drop policy if exists agent_stats_select_own on public.agent_stats;
    create policy agent_stats_select_own on public.agent_stats
        for select to authenticated using (user_id = (select auth.uid())::text);
    drop policy if exists agent_intensity_metrics_select_own on public.agent_intensity_metrics;
    create policy agent_intensity_metrics_select_own on public.agent_intensity_metrics
        for select to authenticated using (user_id = (select auth.uid())::text);

    -- Supabase grants execute on new functions to anon/authenticated by default privileges.
    foreach f in array array[
        'public.instrument_budget_spend(text, text, timestamptz)',
        'public.instrument_budget_reserve(text, text, timestamptz, numeric, bigint, uuid, '
            'double precision)'
    ] loop
        execute format('revoke all on function %s from anon, authenticated', f);
        execute format('grant execute on function %s to service_role', f);
    end loop;
end
$$;
