-- logged-execution: the opt-in time-partitioned layout (PostgreSQL / Supabase). NOT a numbered
-- migration: `instrument migrate --partition-by-month` runs this file, then converts the tables
-- with instrument_partition_by_month(); every later `instrument migrate` runs it again (it is
-- idempotent) and calls instrument_add_month_partitions(3).
--
-- agent_executions is range-partitioned on started_at and agent_logs on created_at (the time
-- the log row was written), one partition per UTC month (agent_executions_p2026_12, ...) and a
-- DEFAULT partition (agent_executions_default) that takes any row no month partition covers,
-- so an insert never fails for want of a partition. A partitioned table's unique indexes must
-- include the partition key: the primary keys become (id, started_at) and (id, created_at),
-- agent_logs' unique execution_id becomes unique (execution_id, created_at). Exactly once
-- does not rest on them: instrument_ingest writes a row only for a ledger bit it added
-- (instrument_applied), so a re-delivered record writes nothing whatever its timestamps.
--
-- Why months: retention then drops a month with one statement (instrument_drop_months_before),
-- instead of deleting its rows one by one and vacuuming them afterwards.

-- ---- one month's partition --------------------------------------------------------------------
-- Creates public.<table>_pYYYY_MM for the UTC month holding p_month, unless it exists. Rows the
-- DEFAULT partition holds for that month are moved into it (PostgreSQL refuses to create a
-- partition whose rows sit in the default one). Returns whether it created the partition.
create or replace function public.instrument_create_month_partition(p_table text, p_month date)
    returns boolean
    language plpgsql
    set search_path = public, pg_temp
    set timezone = 'UTC'
    as $$
    declare
        v_col text := case p_table when 'agent_executions' then 'started_at'
                                   when 'agent_logs' then 'created_at' end;
        v_from timestamptz := date_trunc('month', p_month::timestamp) at time zone 'UTC';
        v_to timestamptz := (date_trunc('month', p_month::timestamp) + interval '1 month')
                            at time zone 'UTC';
        v_name text := p_table || '_p' || to_char(p_month, 'YYYY_MM');
        v_moved bigint := 0;
    begin
        if v_col is null or p_month is null then
            raise exception 'instrument_create_month_partition: the table must be '
                            'agent_executions or agent_logs (got %) and the month given',
                            p_table using errcode = '22023';
        end if;
        if to_regclass('public.' || v_name) is not null then
            return false;
        end if;
        if to_regclass('public.' || p_table || '_default') is not null then
            execute format('create temp table instrument_moved on commit drop as '
                           'with d as (delete from public.%I where %I >= $1 and %I < $2 '
                           'returning *) select * from d',
                           p_table || '_default', v_col, v_col)
                using v_from, v_to;
            get diagnostics v_moved = row_count;
        end if;
        execute format('create table public.%I partition of public.%I for values from (%L) to (%L)',
                       v_name, p_table, v_from, v_to);
        perform instrument_lock_down_partition(v_name);
        if to_regclass('pg_temp.instrument_moved') is not null then
            execute format('insert into public.%I select * from pg_temp.instrument_moved', v_name);
            drop table pg_temp.instrument_moved;
        end if;
        return true;
    end
    $$;

-- A partition is reachable on its own (by name, and on Supabase through the REST API), where the
-- parent's row-level security policies do not apply: row-level security on, with no policy, and
-- no privilege for anyone but its owner (Supabase's default privileges would grant anon and
-- authenticated everything on a new table). Reads and writes go through the parent.
create or replace function public.instrument_lock_down_partition(p_name text) returns void
    language plpgsql
    set search_path = public, pg_temp
    as $$
    declare
        r record;
    begin
        execute format('alter table public.%I enable row level security', p_name);
        execute format('revoke all on table public.%I from public', p_name);
        for r in
            select distinct a.grantee::regrole::text as who
            from pg_class as c cross join lateral aclexplode(c.relacl) as a
            where c.oid = to_regclass('public.' || p_name) and a.grantee <> c.relowner
              and a.grantee <> 0
        loop
            execute format('revoke all on table public.%I from %s', p_name, r.who);
        end loop;
    end
    $$;

-- ---- partitions ahead -------------------------------------------------------------------------
-- The partitions of the current UTC month and the next `months_ahead` months, for each table that
-- is partitioned (none otherwise). Run by every `instrument migrate` with 3; or monthly by cron /
-- pg_cron (docs/cli.md). Returns how many partitions it created.
create or replace function public.instrument_add_month_partitions(months_ahead integer default 3)
    returns integer
    language plpgsql
    set search_path = public, pg_temp
    set timezone = 'UTC'
    as $$
    declare
        v_made integer := 0;
        t text;
        i integer;
    begin
        if months_ahead is null or months_ahead < 0 or months_ahead > 120 then
            raise exception 'instrument_add_month_partitions: months_ahead must be 0..120 (got %)',
                            months_ahead using errcode = '22023';
        end if;
        foreach t in array array['agent_executions', 'agent_logs'] loop
            continue when (select c.relkind from pg_class as c
                           where c.oid = to_regclass('public.' || t)) is distinct from 'p';
            for i in 0..months_ahead loop
                if instrument_create_month_partition(
                        t, (date_trunc('month', now()) + make_interval(months => i))::date) then
                    v_made := v_made + 1;
                end if;
            end loop;
        end loop;
        return v_made;
    end
    $$;

-- ---- retention: whole months --------------------------------------------------------------------
-- Drops every month partition of agent_executions and agent_logs that ends at or before
-- p_cutoff, one DROP TABLE each, and returns (table, partition, rows). Before an executions
-- month goes, its executions' log rows that no dropped logs month holds (created from the
-- cutoff's month on: a late replay) are deleted, as `instrument prune` deletes an execution's
-- log rows with it (row with partition null). The rest (the cutoff's own month, the DEFAULT
-- partition) is for `instrument prune`'s batches. Aggregates and the ledger are not touched.
create or replace function public.instrument_drop_months_before(p_cutoff timestamptz)
    returns table (table_name text, partition_name text, row_count bigint)
    language plpgsql
    set search_path = public, pg_temp
    set timezone = 'UTC'
    as $$
    declare
        r record;
        v_floor timestamptz := date_trunc('month', p_cutoff);
        n bigint;
    begin
        if p_cutoff is null then
            raise exception 'instrument_drop_months_before: the cutoff must be given'
                using errcode = '22023';
        end if;
        for r in
            select p.relname::text as tbl, c.relname::text as part,
                   (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                 'TO \(''([^'']+)''\)'))[1]::timestamptz as upper
            from pg_inherits as i
            join pg_class as c on c.oid = i.inhrelid
            join pg_class as p on p.oid = i.inhparent
            where p.oid in (to_regclass('public.agent_executions'),
                            to_regclass('public.agent_logs'))
              and p.relkind = 'p'
              and pg_get_expr(c.relpartbound, c.oid) <> 'DEFAULT'
            order by p.relname desc, 3  -- agent_executions first: its log rows go with it
        loop
            continue when r.upper is null or r.upper > p_cutoff;
            if r.tbl = 'agent_executions' then
                execute format('delete from public.agent_logs as l where l.created_at >= $1 '
                               'and l.execution_id in (select e.id from public.%I as e)', r.part)
                    using v_floor;
                get diagnostics n = row_count;
                if n > 0 then
                    table_name := 'agent_logs'; partition_name := null; row_count := n;
                    return next;
                end if;
            end if;
            execute format('select count(*) from public.%I', r.part) into n;
            execute format('drop table public.%I', r.part);
            table_name := r.tbl; partition_name := r.part; row_count := n;
            return next;
        end loop;
    end
    $$;

-- ---- the conversion -----------------------------------------------------------------------------
-- Converts one of the two tables (unpartitioned, as the migrations create it) into the monthly
-- layout, in the caller's transaction, under an ACCESS EXCLUSIVE lock (writers wait, their
-- records stay in their spools): the table is renamed, a partitioned copy created with the same
-- columns, defaults and checks, partitions made for every month its rows cover plus DEFAULT, the
-- rows copied, the old table dropped, then its primary key and unique constraints (with the
-- partition key added), indexes, triggers, row-level security, policies, grants and owner
-- recreated. A unique index that is not a constraint cannot be carried over: the conversion
-- stops and says so. Returns false when the table was partitioned already.
create or replace function public.instrument_partition_by_month(p_table text) returns boolean
    language plpgsql
    set search_path = public, pg_temp
    set timezone = 'UTC'
    as $$
    declare
        v_col text := case p_table when 'agent_executions' then 'started_at'
                                   when 'agent_logs' then 'created_at' end;
        v_rel regclass := to_regclass('public.' || p_table);
        v_old text := p_table || '_unpartitioned';
        v_owner text;
        v_rls boolean;
        v_force boolean;
        v_constraints text[];
        v_indexes text[];
        v_triggers text[];
        v_policies text[];
        v_grants text[];
        v_bad text;
        s text;
        m date;
        r record;
    begin
        if v_col is null then
            raise exception 'instrument_partition_by_month: only agent_executions and agent_logs '
                            'are partitioned (got %)', p_table using errcode = '22023';
        end if;
        if v_rel is null then
            raise exception 'instrument_partition_by_month: public.% does not exist; run '
                            '`instrument migrate` first', p_table using errcode = '42P01';
        end if;
        if (select c.relkind from pg_class as c where c.oid = v_rel) = 'p' then
            return false;
        end if;
        execute format('lock table public.%I in access exclusive mode', p_table);

        select c.relowner::regrole::text, c.relrowsecurity, c.relforcerowsecurity
        into v_owner, v_rls, v_force
        from pg_class as c where c.oid = v_rel;
        select string_agg(i.indexrelid::regclass::text, ', ') into v_bad
        from pg_index as i
        where i.indrelid = v_rel and i.indisunique
          and not exists (select 1 from pg_constraint as k where k.conindid = i.indexrelid);
        if v_bad is not null then
            raise exception 'instrument_partition_by_month: the unique index(es) % on public.% '
                            'cannot be partitioned (a unique index must include %); drop them '
                            'or make them constraints, then convert again', v_bad, p_table, v_col
                using errcode = '55000';
        end if;
        -- primary key and unique constraints, the partition key appended (PRIMARY KEY (id) ->
        -- PRIMARY KEY (id, started_at)); foreign keys referencing the table would need the
        -- same, so they stop the conversion (the SDK creates none)
        select string_agg(k.conname || ' on ' || k.conrelid::regclass::text, ', ') into v_bad
        from pg_constraint as k where k.confrelid = v_rel;
        if v_bad is not null then
            raise exception 'instrument_partition_by_month: foreign key(s) % reference public.%; '
                            'a partitioned table''s key includes %, so drop them first',
                            v_bad, p_table, v_col using errcode = '55000';
        end if;
        select coalesce(array_agg(format('alter table public.%I add constraint %I %s', p_table,
                                         k.conname,
                                         regexp_replace(pg_get_constraintdef(k.oid),
                                                        '\)$', ', ' || v_col || ')'))
                                  order by k.conname), '{}')
        into v_constraints
        from pg_constraint as k
        where k.conrelid = v_rel and k.contype in ('p', 'u');
        select coalesce(array_agg(pg_get_indexdef(i.indexrelid) order by i.indexrelid), '{}')
        into v_indexes
        from pg_index as i
        where i.indrelid = v_rel and not i.indisunique;
        select coalesce(array_agg(pg_get_triggerdef(t.oid) order by t.tgname), '{}')
        into v_triggers
        from pg_trigger as t where t.tgrelid = v_rel and not t.tgisinternal;
        select coalesce(array_agg(format(
                   'create policy %I on public.%I as %s for %s to %s%s%s', p.polname, p_table,
                   case when p.polpermissive then 'permissive' else 'restrictive' end,
                   case p.polcmd when 'r' then 'select' when 'a' then 'insert'
                                 when 'w' then 'update' when 'd' then 'delete' else 'all' end,
                   (select string_agg(case when x = 0 then 'public' else x::regrole::text end,
                                      ', ')
                    from unnest(p.polroles) as x),
                   case when p.polqual is not null
                        then ' using (' || pg_get_expr(p.polqual, p.polrelid) || ')' else '' end,
                   case when p.polwithcheck is not null
                        then ' with check (' || pg_get_expr(p.polwithcheck, p.polrelid) || ')'
                        else '' end) order by p.polname), '{}')
        into v_policies
        from pg_policy as p where p.polrelid = v_rel;
        select coalesce(array_agg(format('grant %s on table public.%I to %s', a.privilege_type,
                                         p_table,
                                         case when a.grantee = 0 then 'public'
                                              else a.grantee::regrole::text end)
                                  || case when a.is_grantable then ' with grant option' else '' end),
                        '{}')
        into v_grants
        from pg_class as c cross join lateral aclexplode(c.relacl) as a
        where c.oid = v_rel and a.grantee <> c.relowner;

        execute format('alter table public.%I rename to %I', p_table, v_old);
        execute format('create table public.%I (like public.%I including defaults including '
                       'constraints including storage including comments including statistics '
                       'including generated) partition by range (%I)', p_table, v_old, v_col);
        execute format('create table public.%I partition of public.%I default',
                       p_table || '_default', p_table);
        perform instrument_lock_down_partition(p_table || '_default');
        for m in execute format('select distinct (date_trunc(''month'', %I))::date from public.%I '
                                'where %I is not null', v_col, v_old, v_col) loop
            perform instrument_create_month_partition(p_table, m);
        end loop;
        execute format('insert into public.%I select * from public.%I', p_table, v_old);
        execute format('drop table public.%I', v_old);  -- a dependent view stops it, rolled back

        foreach s in array v_constraints || v_indexes || v_triggers || v_policies loop
            execute s;
        end loop;
        if v_rls then
            execute format('alter table public.%I enable row level security', p_table);
        end if;
        if v_force then
            execute format('alter table public.%I force row level security', p_table);
        end if;
        -- the grants the old table had, and no other (Supabase's default privileges gave the new
        -- table's roles everything)
        for r in
            select distinct a.grantee::regrole::text as who
            from pg_class as c cross join lateral aclexplode(c.relacl) as a
            where c.oid = to_regclass('public.' || p_table) and a.grantee <> c.relowner
              and a.grantee <> 0
        loop
            execute format('revoke all on table public.%I from %s', p_table, r.who);
        end loop;
        execute format('revoke all on table public.%I from public', p_table);
        foreach s in array v_grants loop
            execute s;
        end loop;
        execute format('alter table public.%I owner to %s', p_table, v_owner);
        return true;
    end
    $$;

-- Only the database's owner (or whoever runs `instrument migrate`) manages partitions.
revoke all on function public.instrument_create_month_partition(text, date) from public;
revoke all on function public.instrument_lock_down_partition(text) from public;
revoke all on function public.instrument_add_month_partitions(integer) from public;
revoke all on function public.instrument_drop_months_before(timestamptz) from public;
revoke all on function public.instrument_partition_by_month(text) from public;
