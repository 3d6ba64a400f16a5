-- logged-execution schema v3 (PostgreSQL / Supabase): one idempotency-ledger row per execution.
-- Schema v1/v2 kept one instrument_ledger row per (execution, writer): four rows, four random-key
-- index insertions per record, about half of the ingest statement's cost. From v3 the ledger is
-- instrument_applied, one row per execution with the applied built-in writers as a bitmask
-- (1 executions, 2 logs, 4 stats, 8 intensity). A delivery ORs its writers into the row under
-- the row's lock (insert ... on conflict do update), and applies only the bits it added, so
-- re-delivery with a different writer subset still applies each (execution, writer) effect
-- exactly once, and concurrent deliveries of one execution serialize on its ledger row.
-- instrument_ledger becomes a view with the v2 shape (execution_id, writer, applied_at;
-- inserting into it sets the bit); existing ledger rows are folded into instrument_applied, so
-- executions recorded before the upgrade stay protected against re-delivery. Idempotent: every statement can run
-- again (a table named instrument_ledger found here is folded in and replaced by the view).

create table if not exists public.instrument_applied (
    execution_id uuid primary key,
    writers smallint not null check (writers between 0 and 15),
    -- the bits the latest delivery added (what instrument_ingest applies for it)
    added smallint not null default 0,
    applied_at timestamptz not null default now()
);

do $$
begin
    if (select c.relkind from pg_class as c
        where c.oid = pg_catalog.to_regclass('public.instrument_ledger')) = 'r' then
        lock table public.instrument_ledger in access exclusive mode;
        insert into public.instrument_applied as a (execution_id, writers, added, applied_at)
        select l.execution_id,
               bit_or(case l.writer when 'executions' then 1 when 'logs' then 2
                                    when 'stats' then 4 when 'intensity' then 8
                                    else 0 end)::smallint,
               0,
               min(l.applied_at)
        from public.instrument_ledger as l
        group by l.execution_id
        on conflict (execution_id) do update set writers = a.writers | excluded.writers;
        drop table public.instrument_ledger;
    end if;
end
$$;

-- The v2 shape, for reading (one row per applied writer); writes go to instrument_applied.
create or replace view public.instrument_ledger with (security_invoker = true) as
    select a.execution_id, w.writer, a.applied_at
    from public.instrument_applied as a
    cross join (values ('executions', 1), ('logs', 2), ('stats', 4), ('intensity', 8))
        as w(writer, bit)
    where a.writers & w.bit <> 0;

-- Writing the v2 shape still works (tools that marked executions as applied by hand): a row
-- inserted into the view sets its writer's bit.
create or replace function public.instrument_ledger_insert() returns trigger
    language plpgsql
    set search_path = public, pg_temp
    as $$
    declare
        v_bit smallint := case new.writer when 'executions' then 1 when 'logs' then 2
                                          when 'stats' then 4 when 'intensity' then 8 end;
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

create or replace trigger instrument_ledger_insert
    instead of insert on public.instrument_ledger
    for each row execute function public.instrument_ledger_insert();

do $$
begin
    alter table public.instrument_applied enable row level security;
    revoke all on table public.instrument_applied from public, anon, authenticated;
    grant select, insert, update, delete on table public.instrument_applied to service_role;
    drop policy if exists instrument_applied_service_role_all on public.instrument_applied;
    create policy instrument_applied_service_role_all on public.instrument_applied
        for all to service_role using (true) with check (true);
    revoke all on table public.instrument_ledger from public, anon, authenticated;
    grant select, insert on table public.instrument_ledger to service_role;
    revoke all on function public.instrument_ledger_insert() from public, anon, authenticated;
end
$$;

-- As in v1, on the new ledger: given an execution id it is idempotent, and it shares the stats
-- bit with instrument_ingest's stats writer. Returns false for a repeat.
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
            insert into instrument_applied as l (execution_id, writers, added)
            values (execution_id_input, 4, 4)
            on conflict (execution_id) do update set writers = l.writers | 4, added = 4
                where l.writers & 4 = 0;
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
--   2. one instrument_applied row per execution is upserted in key order, OR-ing in the
--      record's writer bits; it returns the executions that gained a bit, with the bits gained;
--      the statement reads all of them before any other table is written;
--   3. for the bits gained only: agent_executions and agent_logs rows (in key order) and
--      agent_stats deltas aggregated per agent (x = x + delta, agents in key order: no
--      deadlocks);
-- then instrument_apply_intensity() (migration 0002) for the records that gained the intensity
-- bit: the batch as received when that is every record, else only those.
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
        v_default smallint;
        v_intensity jsonb;
    begin
        if records is null or jsonb_typeof(records) <> 'array' then
            raise exception 'instrument_ingest: records must be a JSON array'
                using errcode = '22023';
        end if;
        v_default := (case when 'executions' = any(default_writers) then 1 else 0 end
                      | case when 'logs' = any(default_writers) then 2 else 0 end
                      | case when 'stats' = any(default_writers) then 4 else 0 end
                      | case when 'intensity' = any(default_writers) then 8 else 0 end)::smallint;
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
            -- each execution's built-in writers as a bitmask: the record's own "writers" array
            -- (? matches string elements only, as names are strings), else the defaults
            select s.execution_id,
                   case when jsonb_typeof(s.writers) = 'array'
                        then (case when s.writers ? 'executions' then 1 else 0 end
                              | case when s.writers ? 'logs' then 2 else 0 end
                              | case when s.writers ? 'stats' then 4 else 0 end
                              | case when s.writers ? 'intensity' then 8 else 0 end)::smallint
                        else v_default end as bits
            from src as s
        ), ins as materialized (
            -- one ledger row per execution, in key order (no deadlocks); a re-delivery adds
            -- only the bits it lacks, and returns the row only when it added one ("added")
            insert into instrument_applied as l (execution_id, writers, added)
            select w.execution_id, w.bits, w.bits
            from wanted as w
            where w.bits <> 0
            order by w.execution_id
            on conflict (execution_id) do update set
                writers = l.writers | excluded.writers,
                added = excluded.writers & ~l.writers
                where l.writers | excluded.writers <> l.writers
            returning execution_id, added
        ), done as materialized (
            -- reads every new ledger row of the batch before any other table is written
            select
                count(*) as n_applied,
                coalesce(array_agg(i.execution_id) filter (where i.added & 8 <> 0),
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
            join ins as i on i.execution_id = b.execution_id and i.added & 1 <> 0
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
            join ins as i on i.execution_id = b.execution_id and i.added & 2 <> 0
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
                join ins as i on i.execution_id = b.execution_id and i.added & 4 <> 0
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
                + (select count(*) from src) - (select count(*) from wanted where bits <> 0),
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
