-- logged-execution schema v1 (PostgreSQL / Supabase): the executions, logs and stats writers,
-- the idempotency ledger, increment_agent_stats, the batch ingest function, and row level
-- security. Idempotent: every statement can run again on a database that already has it.
-- The runner (instrument/stores/migrations.py) applies this in one transaction and records
-- the version in instrument_schema_version.

-- Supabase roles and auth.uid(): present on Supabase, created here on plain PostgreSQL so that
-- the same migration (and its policies) runs on both.
do $$
declare
    r text;
begin
    foreach r in array array['anon', 'authenticated', 'service_role'] loop
        if not exists (select 1 from pg_roles where rolname = r) then
            begin
                if r = 'service_role' then
                    execute format('create role %I nologin bypassrls', r);
                else
                    execute format('create role %I nologin', r);
                end if;
            exception
                when duplicate_object or unique_violation then null;  -- created concurrently
                when insufficient_privilege then
                    execute format('create role %I nologin', r);  -- not superuser: no bypassrls
            end;
        end if;
    end loop;
end
$$;

do $$
begin
    if not exists (select 1 from pg_namespace where nspname = 'auth') then
        create schema auth;
        grant usage on schema auth to anon, authenticated, service_role;
    end if;
    if to_regprocedure('auth.uid()') is null then
        create function auth.uid() returns uuid
            language sql stable
            as $f$
                select coalesce(
                    nullif(current_setting('request.jwt.claim.sub', true), ''),
                    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
                )::uuid
            $f$;
        grant execute on function auth.uid() to anon, authenticated, service_role;
    end if;
end
$$;

-- agent_executions: one row per execution (writer "executions"), id = execution_id.
create table if not exists public.agent_executions (
    id uuid primary key,
    agent_id text,
    user_id text,
    agent_name text,
    session_id text,
    execution_type text not null default 'manual',
    engine text not null,
    status text not null check (status in ('completed', 'failed')),
    started_at timestamptz not null,
    completed_at timestamptz not null,
    execution_duration_ms integer,
    error_type text,
    error_message text,
    input_tokens integer,
    output_tokens integer,
    total_tokens integer,
    model text,
    provider text,
    trace_id text,
    span_id text,
    logs jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now()
);
create index if not exists agent_executions_agent_started_idx
    on public.agent_executions (agent_id, started_at desc);
create index if not exists agent_executions_user_started_idx
    on public.agent_executions (user_id, started_at desc);
create index if not exists agent_executions_started_idx
    on public.agent_executions (started_at desc);

-- agent_logs: one row per execution (writer "logs").
create table if not exists public.agent_logs (
    id uuid primary key default gen_random_uuid(),
    execution_id uuid not null unique,
    agent_id text,
    user_id text,
    run_output text,
    full_output jsonb,
    status text not null check (status in ('completed', 'failed')),
    status_message text,
    run_time integer,
    run_tokens integer,
    user_credits_used integer,
    created_at timestamptz not null default now()
);
create index if not exists agent_logs_agent_created_idx
    on public.agent_logs (agent_id, created_at desc);
create index if not exists agent_logs_user_created_idx
    on public.agent_logs (user_id, created_at desc);

-- agent_stats: per-agent counters (writer "stats"), only ever updated as x = x + delta.
create table if not exists public.agent_stats (
    agent_id text primary key,
    user_id text,
    run_count bigint not null default 0,
    success_count bigint not null default 0,
    failure_count bigint not null default 0,
    total_tokens bigint not null default 0,
    token_run_count bigint not null default 0,   -- runs whose tokens were measured
    total_duration_ms bigint not null default 0,
    last_run_at timestamptz,
    last_run_status text,
    updated_at timestamptz not null default now()
);
create index if not exists agent_stats_user_idx on public.agent_stats (user_id);

-- The idempotency ledger: one row per (execution, built-in writer) applied. A writer's effect
-- for a record happens only in the transaction that inserted its ledger row, so re-delivery
-- (retries, spool replays, two processes replaying one spool) changes nothing.
create table if not exists public.instrument_ledger (
    execution_id uuid not null,
    writer text not null,
    applied_at timestamptz not null default now(),
    primary key (execution_id, writer)
);

-- Row level security: users read their own rows; only service_role (and the security
-- definer functions below) write.
do $$
declare
    t text;
begin
    foreach t in array array['agent_executions', 'agent_logs', 'agent_stats'] loop
        execute format('alter table public.%I enable row level security', t);
        execute format('revoke all on table public.%I from public, anon, authenticated', t);
        execute format('grant select on table public.%I to authenticated', t);
        execute format('grant select, insert, update, delete on table public.%I to service_role', t);
        execute format('drop policy if exists %I on public.%I', t || '_select_own', t);
        execute format(
            'create policy %I on public.%I for select to authenticated '
            'using (user_id = (select auth.uid())::text)', t || '_select_own', t);
        execute format('drop policy if exists %I on public.%I', t || '_service_role_all', t);
        execute format(
            'create policy %I on public.%I for all to service_role using (true) with check (true)',
            t || '_service_role_all', t);
    end loop;
    -- The version table is created by the migration runner before this file runs.
    alter table public.instrument_schema_version enable row level security;
    revoke all on table public.instrument_schema_version from public, anon, authenticated;
    grant select, insert, update, delete on table public.instrument_schema_version
        to service_role;
    drop policy if exists instrument_schema_version_service_role_all
        on public.instrument_schema_version;
    create policy instrument_schema_version_service_role_all on public.instrument_schema_version
        for all to service_role using (true) with check (true);
    alter table public.instrument_ledger enable row level security;
    revoke all on table public.instrument_ledger from public, anon, authenticated;
    grant select, insert, update, delete on table public.instrument_ledger to service_role;
    drop policy if exists instrument_ledger_service_role_all on public.instrument_ledger;
    create policy instrument_ledger_service_role_all on public.instrument_ledger
        for all to service_role using (true) with check (true);
end
$$;

-- Row-building helpers of the ingest function, mirroring instrument/writers/*.py. Each is a
-- single expression over pg_catalog built-ins, with no SET clause, so the planner inlines it
-- (a SET search_path would prevent inlining and cost a function call per row); they run inside
-- instrument_ingest, whose search_path is fixed.

-- writers/executions.py total_tokens(): reported total, else input + output.
create or replace function public.instrument_total_tokens(tokens jsonb) returns bigint
    language sql immutable
    as $$
        select coalesce(
            (tokens ->> 'total_tokens')::bigint,
            (tokens ->> 'input_tokens')::bigint + (tokens ->> 'output_tokens')::bigint
        )
    $$;

-- writers/executions.py engine_details(): null-valued object fields removed at every depth.
-- A result with only ExecutionResult's keys (every record the SDK sends) takes the fast form:
-- the result minus the keys that are not engine details, stripped once (jsonb_build_object
-- would copy every nested value token by token); any other input takes the field-by-field one.
-- Both give the same object.
create or replace function public.instrument_engine_details(res jsonb) returns jsonb
    language sql stable
    as $$
        select case
            when pg_catalog.jsonb_typeof(res) = 'object'
                 and res - '{success,error,tokens,iterations,retries,tool_calls,model,provider,
                             response,memory,steps,workflow,orchestration_ms,extras}'::text[]
                     = '{}'::jsonb
            then pg_catalog.jsonb_strip_nulls(res - '{success,error,model,provider}'::text[])
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

-- instrument_batch() (earlier builds) is no longer used: instrument_ingest reads the batch itself.
drop function if exists public.instrument_batch(jsonb);

-- Replace the origin application's three-argument versions: left in place, an overload with
-- the same argument names would make PostgREST's rpc ambiguous. The defaults below keep its
-- three-argument call (positional or named) working.
drop function if exists public.increment_agent_stats(uuid, uuid, boolean);
drop function if exists public.increment_agent_stats(text, text, boolean);

-- The original three-argument call keeps working; given an execution id it is idempotent
-- (it shares the ledger with instrument_ingest's stats writer). Returns false for a repeat.
create or replace function public.increment_agent_stats(
    agent_id_input text,
    user_id_input text,
    success boolean,
    execution_id_input uuid default null,
    tokens_input bigint default null,
    duration_ms_input bigint default null
) returns boolean
    language plpgsql
    security definer
    set search_path = public, pg_temp
    as $$
    begin
        if execution_id_input is not null then
            insert into instrument_ledger (execution_id, writer)
            values (execution_id_input, 'stats')
            on conflict do nothing;
            if not found then
                return false;
            end if;
        end if;
        insert into agent_stats as s (
            agent_id, user_id, run_count, success_count, failure_count, total_tokens,
            token_run_count, total_duration_ms, last_run_at, last_run_status, updated_at
        ) values (
            agent_id_input, user_id_input, 1,
            case when success then 1 else 0 end,
            case when success then 0 else 1 end,
            coalesce(tokens_input, 0),
            case when tokens_input is null then 0 else 1 end,
            coalesce(duration_ms_input, 0),
            now(),
            case when success then 'completed' else 'failed' end,
            now()
        )
        on conflict (agent_id) do update set
            user_id = coalesce(s.user_id, excluded.user_id),
            run_count = s.run_count + excluded.run_count,
            success_count = s.success_count + excluded.success_count,
            failure_count = s.failure_count + excluded.failure_count,
            total_tokens = s.total_tokens + excluded.total_tokens,
            token_run_count = s.token_run_count + excluded.token_run_count,
            total_duration_ms = s.total_duration_ms + excluded.total_duration_ms,
            last_run_status = case
                when s.last_run_at is null or excluded.last_run_at >= s.last_run_at
                then excluded.last_run_status else s.last_run_status end,
            last_run_at = greatest(s.last_run_at, excluded.last_run_at),
            updated_at = now();
        return true;
    end
    $$;

-- Apply one batch of records (each ExecutionRecord.to_json_dict(); its own "writers" array, or
-- default_writers when that is null) in the caller's single transaction, in one statement:
--   1. the batch is read once (one row per execution_id, the first occurrence wins);
--   2. (execution_id, writer) ledger rows are inserted ON CONFLICT DO NOTHING, in key order;
--      the statement reads all of them before any other table is written;
--   3. for the newly inserted ones only: agent_executions and agent_logs rows (in key order)
--      and agent_stats deltas aggregated per agent (x = x + delta, agents in key order: no
--      deadlocks);
-- then instrument_apply_intensity() (migration 0002) for the records whose intensity writer
-- was newly applied: the batch as received when that is every record, else only those.
-- Returns {"applied": records with at least one new effect, "duplicates": the rest}.
-- The caller strips response text first unless content capture is on.
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
    as $$
    declare
        v_total integer;
        v_applied integer;
        v_int uuid[];
        v_builtin constant text[] := array['executions', 'logs', 'stats', 'intensity'];
        v_intensity jsonb;
    begin
        if records is null or jsonb_typeof(records) <> 'array' then
            raise exception 'instrument_ingest: records must be a JSON array'
                using errcode = '22023';
        end if;
        v_total := jsonb_array_length(records);
        if v_total = 0 then
            return jsonb_build_object('applied', 0, 'duplicates', 0);
        end if;

        with src as materialized (
            -- the batch, one row per execution_id (first occurrence wins), each field read
            -- once: text as ->> gives it, nested objects as jsonb (a JSON null reads as null);
            -- only expressions that cannot fail here (casts belong to the writers below)
            select distinct on (x.execution_id) x.*,
                   instrument_engine_details(x.res) as details  -- shared by two writers
            from (
                select (f.execution_id)::uuid as execution_id, e.ord, f.*
                from jsonb_array_elements(records) with ordinality as e(r, ord)
                cross join lateral jsonb_to_record(e.r) as f(
                    execution_id text, agent_id text, user_id text, agent_name text,
                    session_id text, execution_type text, engine text, name jsonb,
                    started_at text, completed_at text, duration_ms text, trace_id text,
                    span_id text, result jsonb, writers jsonb)
            ) as x (execution_id, ord, eid, agent_id, user_id, agent_name, session_id,
                    execution_type, engine, name, started_at, completed_at, duration_ms,
                    trace_id, span_id, res, writers)
            order by x.execution_id, x.ord
        ), wanted as materialized (
            -- (execution, built-in writer) pairs: the record's own "writers" array, else the
            -- defaults (? matches string elements only, as names are strings)
            select s.execution_id, w.writer
            from src as s
            cross join unnest(v_builtin) as w(writer)
            where case when jsonb_typeof(s.writers) = 'array' then s.writers ? w.writer
                       else w.writer = any(default_writers) end
        ), ins as materialized (
            insert into instrument_ledger (execution_id, writer)
            select execution_id, writer from wanted order by execution_id, writer
            on conflict do nothing
            returning execution_id, writer
        ), done as materialized (
            -- reads every new ledger row of the batch before any other table is written
            select
                count(distinct i.execution_id) as n_applied,
                coalesce(array_agg(i.execution_id) filter (where i.writer = 'intensity'),
                         '{}'::uuid[]) as int_ids
            from ins as i
        ), ex as (
            insert into agent_executions (
                id, agent_id, user_id, agent_name, session_id, execution_type, engine, status,
                started_at, completed_at, execution_duration_ms, error_type, error_message,
                input_tokens, output_tokens, total_tokens, model, provider, trace_id, span_id,
                logs
            )
            select
                b.execution_id,
                b.agent_id,
                b.user_id,
                b.agent_name,
                b.session_id,
                coalesce(b.execution_type, 'manual'),
                b.engine,
                case when (b.res ->> 'success')::boolean then 'completed' else 'failed' end,
                (b.started_at)::timestamptz,
                (b.completed_at)::timestamptz,
                round((b.duration_ms)::numeric)::integer,
                b.res -> 'error' ->> 'type',
                b.res -> 'error' ->> 'message',
                (b.res -> 'tokens' ->> 'input_tokens')::integer,
                (b.res -> 'tokens' ->> 'output_tokens')::integer,
                instrument_total_tokens(b.res -> 'tokens')::integer,
                b.res ->> 'model',
                b.res ->> 'provider',
                b.trace_id,
                b.span_id,
                jsonb_build_object('name', b.name) || b.details
            from src as b
            join ins as i on i.execution_id = b.execution_id and i.writer = 'executions'
            order by b.execution_id
            on conflict (id) do nothing
        ), lg as (
            insert into agent_logs (
                execution_id, agent_id, user_id, run_output, full_output, status,
                status_message, run_time, run_tokens, user_credits_used
            )
            select
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
                        'tokens_used', t.total,
                        'execution_time_ms', t.duration,
                        'model', b.res -> 'model',
                        'provider', b.res -> 'provider',
                        'steps_completed', t.completed,
                        'steps_failed', t.failed,
                        'steps_skipped', t.skipped,
                        'total_steps',
                            case when coalesce(t.completed, t.failed, t.skipped) is not null
                                 then coalesce(t.completed, 0) + coalesce(t.failed, 0)
                                      + coalesce(t.skipped, 0) end
                    ))::text
                else '{' || concat_ws(', ',
                    '"model": ' || nullif(b.res -> 'model', 'null')::text,
                    '"engine": ' || to_json(b.engine)::text,
                    '"success": ' || nullif(b.res -> 'success', 'null')::text,
                    '"provider": ' || nullif(b.res -> 'provider', 'null')::text,
                    '"iterations": ' || nullif(b.res -> 'iterations', 'null')::text,
                    '"tokens_used": ' || t.total,
                    '"total_steps": '
                        || case when coalesce(t.completed, t.failed, t.skipped) is not null
                                then coalesce(t.completed, 0) + coalesce(t.failed, 0)
                                     + coalesce(t.skipped, 0) end,
                    '"steps_failed": ' || t.failed,
                    '"steps_skipped": ' || t.skipped,
                    '"steps_completed": ' || t.completed,
                    '"tool_calls_count": '
                        || case when jsonb_typeof(b.res -> 'tool_calls') = 'array'
                                then jsonb_array_length(b.res -> 'tool_calls') end,
                    '"execution_time_ms": ' || t.duration
                ) || '}' end,
                jsonb_build_object(
                    (b.engine) || '_metadata',
                    jsonb_strip_nulls(jsonb_build_object(
                        'execution_id', to_jsonb(b.eid),
                        'model', b.res -> 'model',
                        'provider', b.res -> 'provider'
                    )) || b.details
                ),
                case when (b.res ->> 'success')::boolean then 'completed' else 'failed' end,
                case when not (b.res ->> 'success')::boolean
                          and jsonb_typeof(b.res -> 'error') = 'object'
                     then (b.res -> 'error' ->> 'type') || ': '
                          || (b.res -> 'error' ->> 'message') end,
                t.duration,
                t.total::integer,
                ceil(t.total / 1000.0)::integer
            from src as b
            join ins as i on i.execution_id = b.execution_id and i.writer = 'logs'
            cross join lateral (
                select
                    instrument_total_tokens(b.res -> 'tokens') as total,
                    round((b.duration_ms)::numeric)::integer as duration,
                    (b.res -> 'steps' ->> 'completed')::integer as completed,
                    (b.res -> 'steps' ->> 'failed')::integer as failed,
                    (b.res -> 'steps' ->> 'skipped')::integer as skipped
                offset 0
            ) as t
            order by b.execution_id
            on conflict (execution_id) do nothing
        ), st as (
            insert into agent_stats as s (
                agent_id, user_id, run_count, success_count, failure_count, total_tokens,
                token_run_count, total_duration_ms, last_run_at, last_run_status, updated_at
            )
            select
                d.agent_id,
                (array_agg(d.user_id order by d.completed_at desc, d.execution_id desc)
                    filter (where d.user_id is not null))[1],
                count(*),
                count(*) filter (where d.success),
                count(*) filter (where not d.success),
                coalesce(sum(d.total), 0),
                count(d.total),
                coalesce(sum(d.duration), 0),
                max(d.completed_at),
                (array_agg(case when d.success then 'completed' else 'failed' end
                           order by d.completed_at desc, d.execution_id desc))[1],
                now()
            from (
                select
                    b.execution_id,
                    b.agent_id as agent_id,
                    b.user_id as user_id,
                    (b.res ->> 'success')::boolean as success,
                    instrument_total_tokens(b.res -> 'tokens') as total,
                    round((b.duration_ms)::numeric)::bigint as duration,
                    (b.completed_at)::timestamptz as completed_at
                from src as b
                join ins as i on i.execution_id = b.execution_id and i.writer = 'stats'
                where b.agent_id is not null
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
                last_run_status = case
                    when s.last_run_at is null or excluded.last_run_at >= s.last_run_at
                    then excluded.last_run_status else s.last_run_status end,
                last_run_at = greatest(s.last_run_at, excluded.last_run_at),
                updated_at = now()
        )
        select
            d.n_applied
                + (select count(*) from src) - (select count(distinct execution_id) from wanted),
            d.int_ids
        into v_applied, v_int
        from done as d;

        if cardinality(v_int) = v_total then
            -- every record of the batch, each once: pass it on as received (no copy)
            perform instrument_apply_intensity(records);
        elsif cardinality(v_int) > 0 then
            select jsonb_agg(b.r order by b.execution_id)
            into v_intensity
            from (
                select distinct on (x.execution_id) x.execution_id, x.r
                from (
                    select (e.r ->> 'execution_id')::uuid as execution_id, e.ord, e.r
                    from jsonb_array_elements(records) with ordinality as e(r, ord)
                ) as x
                order by x.execution_id, x.ord
            ) as b
            join unnest(v_int) as u(id) on u.id = b.execution_id;
            perform instrument_apply_intensity(v_intensity);
        end if;

        return jsonb_build_object('applied', v_applied, 'duplicates', v_total - v_applied);
    end
    $$;

revoke all on function public.instrument_ingest(jsonb, text[]) from public;
revoke all on function public.increment_agent_stats(text, text, boolean, uuid, bigint, bigint)
    from public;
do $$
begin
    -- Supabase grants execute on new functions to anon/authenticated by default privileges.
    revoke all on function public.instrument_ingest(jsonb, text[]) from anon, authenticated;
    revoke all on function public.increment_agent_stats(text, text, boolean, uuid, bigint, bigint)
        from anon, authenticated;
end
$$;
grant execute on function public.instrument_ingest(jsonb, text[]) to service_role;
grant execute on function public.increment_agent_stats(text, text, boolean, uuid, bigint, bigint)
    to service_role;
