-- logged-execution schema v5 (PostgreSQL / Supabase): token counts are bigint.
-- Through v4 the per-execution token columns were `integer`: a count of 2^31 or more (a long
-- agent run, a summed usage report) failed the batch with 22003 and the record was quarantined
-- with all four of its effects. The per-agent sums (agent_stats, agent_intensity_metrics) were
-- already bigint. From v5, agent_executions.input_tokens/output_tokens/total_tokens and
-- agent_logs.run_tokens/user_credits_used are bigint, and instrument_ingest casts to bigint.
-- Changing a column's type rewrites the table under an exclusive lock: on a large table, run
-- `instrument migrate` in a quiet moment (the pipeline keeps records spooled meanwhile).
-- Idempotent: altering a bigint column to bigint changes nothing, and the function is replaced.

-- (`add column if not exists` first: a table adopted from an application that lacks these
-- columns gets them as bigint; the migration runner reads these definitions as the columns'.)
alter table public.agent_executions
    add column if not exists input_tokens bigint,
    add column if not exists output_tokens bigint,
    add column if not exists total_tokens bigint;
alter table public.agent_executions
    alter column input_tokens type bigint,
    alter column output_tokens type bigint,
    alter column total_tokens type bigint;

alter table public.agent_logs
    add column if not exists run_tokens bigint,
    add column if not exists user_credits_used bigint;
alter table public.agent_logs
    alter column run_tokens type bigint,
    alter column user_credits_used type bigint;

-- instrument_ingest as in v4, with the token columns' casts widened to bigint.
-- As in v3 (same ledger, same effects, same result), reading the batch once:
--   1. the batch is read in one jsonb_to_recordset call (one row per execution_id, the first
--      occurrence wins), each record's writer bits computed in the same pass;
--   2. one instrument_applied row per execution is upserted in key order, OR-ing in the
--      record's writer bits; it returns the executions that gained a bit, with the bits gained;
--      the statement reads all of them before any other table is written, and in the same
--      read builds the intensity rows of the records that gained the intensity bit;
--   3. for the bits gained only: agent_executions and agent_logs rows (in key order) and
--      agent_stats deltas aggregated per agent (x = x + delta, agents in key order: no
--      deadlocks);
-- then instrument_apply_intensity_rows() for the intensity rows (in execution id order).
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
    set plan_cache_mode = force_generic_plan
    as $$
    declare
        v_total integer;
        v_applied integer;
        v_default smallint;
        v_int_agents text[];
        v_int_users text[];
        v_int_ids text[];
        v_int_completed text[];
        v_int_durations text[];
        v_int_results jsonb[];
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
                      | case when 'intensity' = any(default_writers) then 8 else 0 end)::smallint;
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
                              | case when x.writers ? 'intensity' then 8 else 0 end)::smallint
                        else v_default end as bits
            from (
                select (f.execution_id)::uuid as execution_id, f.*
                from rows from (jsonb_to_recordset(records) as (
                    execution_id text, agent_id text, user_id text, agent_name text,
                    session_id text, execution_type text, engine text, name jsonb,
                    started_at text, completed_at text, duration_ms text, trace_id text,
                    span_id text, result jsonb, writers jsonb)) with ordinality as f
            ) as x (execution_id, eid, agent_id, user_id, agent_name, session_id,
                    execution_type, engine, name, started_at, completed_at, duration_ms,
                    trace_id, span_id, res, writers, ord)
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
            -- fails rejects the batch exactly where v3's writers rejected it)
            select
                b.*,
                i.added,
                case when i.added & 3 <> 0 or (i.added & 12 <> 0 and b.agent_id is not null)
                     then (b.res ->> 'success')::boolean end as ok,
                case when i.added & 3 <> 0 or (i.added & 4 <> 0 and b.agent_id is not null)
                     then instrument_total_tokens(b.res -> 'tokens') end as total
            from ins as i
            join src as b on b.execution_id = i.execution_id
            order by b.execution_id
        ), done as materialized (
            -- reads every new ledger row of the batch before any other table is written,
            -- and the intensity writer's fields of the records that gained its bit
            select
                count(*) as n_applied,
                array_agg(b.agent_id) filter (where b.added & 8 <> 0) as int_agents,
                array_agg(b.user_id) filter (where b.added & 8 <> 0) as int_users,
                array_agg(b.eid) filter (where b.added & 8 <> 0) as int_ids,
                array_agg(b.completed_at) filter (where b.added & 8 <> 0) as int_completed,
                array_agg(b.duration_ms) filter (where b.added & 8 <> 0) as int_durations,
                array_agg(b.res) filter (where b.added & 8 <> 0) as int_results
            from nb as b
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
                case when b.ok then 'completed' else 'failed' end,
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
                jsonb_build_object('name', b.name) || b.details
            from nb as b
            where b.added & 1 <> 0
            order by b.execution_id
            -- a row the ledger does not know of (written before the ledger, by hand, or by
            -- another writer at this very moment) stays as it is: a probe of the key instead
            -- would be ~1 ms per 1,000 rows cheaper, but a concurrent insert of the same id
            -- would then fail the whole batch and, bisected, quarantine the record
            on conflict (id) do nothing
        ), lg as (
            insert into agent_logs (
                id, execution_id, agent_id, user_id, run_output, full_output, status,
                status_message, run_time, run_tokens, user_credits_used
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
                case when b.ok then 'completed' else 'failed' end,
                case when not b.ok
                          and jsonb_typeof(b.res -> 'error') = 'object'
                     then (b.res -> 'error' ->> 'type') || ': '
                          || (b.res -> 'error' ->> 'message') end,
                b.duration,
                b.total::bigint,
                ceil(b.total / 1000.0)::bigint
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
            on conflict (execution_id) do nothing  -- as for agent_executions
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
                    b.ok as success,
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
                last_run_status = case
                    when s.last_run_at is null or excluded.last_run_at >= s.last_run_at
                    then excluded.last_run_status else s.last_run_status end,
                last_run_at = greatest(s.last_run_at, excluded.last_run_at),
                updated_at = now()
        )
        select
            d.n_applied
                + (select count(*) filter (where s.bits = 0) from src as s),
            d.int_agents, d.int_users, d.int_ids, d.int_completed, d.int_durations,
            d.int_results
        into v_applied, v_int_agents, v_int_users, v_int_ids, v_int_completed,
             v_int_durations, v_int_results
        from done as d;

        if v_int_agents is not null then
            perform instrument_apply_intensity_rows(v_int_agents, v_int_users, v_int_ids,
                                                    v_int_completed, v_int_durations,
                                                    v_int_results);
        end if;

        return jsonb_build_object('applied', v_applied, 'duplicates', v_total - v_applied);
    end
    $$;

revoke all on function public.instrument_ingest(jsonb, text[]) from public;
do $$
declare
    f text;
begin
    foreach f in array array[
        'public.instrument_apply_intensity(jsonb)',
        'public.instrument_apply_intensity_rows(text[], text[], text[], text[], text[], jsonb[])',
        'public.instrument_utc_timestamp(text)'
    ] loop
        execute format('revoke all on function %s from public, anon, authenticated', f);
        execute format('grant execute on function %s to service_role', f);
    end loop;
    -- Supabase grants execute on new functions to anon/authenticated by default privileges.
    revoke all on function public.instrument_ingest(jsonb, text[]) from anon, authenticated;
end
$$;
grant execute on function public.instrument_ingest(jsonb, text[]) to service_role;
