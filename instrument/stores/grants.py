"""Roles on PostgreSQL: Supabase's three, only on Supabase; and application roles you name.

The migration files were written for Supabase: their grants and row-level security policies
name ``anon``, ``authenticated`` and ``service_role`` and use ``auth.uid()``. Roles are
cluster-wide, so creating them on a server that is not Supabase changes every database on it.
:func:`instrument.stores.migrations.migrate_postgres` therefore runs in one of two modes:

- **Supabase** (``--supabase``, or the three roles already exist and the database is new or
  has an ``auth`` schema): the roles and the ``auth`` schema are created where missing
  (:func:`supabase_bootstrap`) and kept.
- **Plain PostgreSQL** (otherwise): while files run, any missing role is a stand-in created in
  the migration's own transaction (:func:`stand_ins`); before it commits,
  :func:`strip_supabase` drops the policies for the three roles on our tables, revokes what
  the files granted them, drops the ``auth`` schema if the transaction created it, and drops
  the stand-ins. Nothing cluster-wide is left behind (creating a stand-in needs CREATEROLE
  for that moment).

:func:`grant_role` gives an application role what the SDK needs (``migrate --grant ROLE``):
read and write our tables, use their sequences, run our functions, and a row-level security
policy on each table. The grant is remembered in ``instrument_grants`` and applied again by
every later ``migrate``, so an upgrade that adds a table keeps the role working.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from instrument.errors import ConfigurationError

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "GRANTS_TABLE",
    "SUPABASE_ROLES",
    "Roles",
    "RolesReport",
    "StandIns",
    "grant_role",
    "granted_roles",
    "stand_ins",
    "strip_supabase",
    "supabase_bootstrap",
    "supabase_roles_present",
]

SUPABASE_ROLES = ("anon", "authenticated", "service_role")
GRANTS_TABLE = "instrument_grants"

#: Supabase's auth.uid() and auth.jwt() as PostgREST sets their claims (request.jwt.claims);
#: created only where missing (Supabase has its own).
_AUTH_FUNCTIONS = """
do $$
begin
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
    if to_regprocedure('auth.jwt()') is null then
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
end
$$;
"""


def _role_exists(conn: psycopg.Connection[tuple[object, ...]], role: str) -> bool:
    row = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
    return row is not None


def _schema_exists(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> bool:
    row = conn.execute("select 1 from pg_namespace where nspname = %s", (schema,)).fetchone()
    return row is not None


def supabase_roles_present(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Are ``anon``, ``authenticated`` and ``service_role`` all there (Supabase, or a server
    where an earlier ``migrate --supabase`` created them)?"""
    return all(_role_exists(conn, r) for r in SUPABASE_ROLES)


def supabase_bootstrap(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Create Supabase's roles, the ``auth`` schema and ``auth.uid()``/``auth.jwt()`` where
    missing (``migrate --supabase`` on a server that is not Supabase: local development, the
    test gateway). Returns what it created, for the report."""
    from psycopg import sql

    created: list[str] = []
    for role in SUPABASE_ROLES:
        if not _role_exists(conn, role):
            options = " nologin bypassrls" if role == "service_role" else " nologin"
            conn.execute(sql.SQL("create role {}" + options).format(sql.Identifier(role)))
            created.append(f"role {role}")
    if not _schema_exists(conn, "auth"):
        conn.execute("create schema auth")
        conn.execute("grant usage on schema auth to anon, authenticated, service_role")
        created.append("schema auth")
    conn.execute(_AUTH_FUNCTIONS.encode())  # where missing (Supabase has its own)
    return created


@dataclass(slots=True)
class StandIns:
    """What :func:`stand_ins` created in the migration's transaction (to drop before commit)."""

    roles: list[str] = field(default_factory=list)
    auth_schema: bool = False


def stand_ins(conn: psycopg.Connection[tuple[object, ...]]) -> StandIns:
    """Plain PostgreSQL: the missing Supabase roles and ``auth`` schema the migration files
    name, created inside the current transaction only (:func:`strip_supabase` removes them)."""
    from psycopg import errors, sql

    made = StandIns()
    for role in SUPABASE_ROLES:
        if not _role_exists(conn, role):
            try:
                conn.execute(sql.SQL("create role {} nologin").format(sql.Identifier(role)))
            except errors.InsufficientPrivilege as exc:
                raise ConfigurationError(
                    f"{str(exc).strip()}: on plain PostgreSQL, `instrument migrate` creates "
                    "stand-ins for Supabase's roles for the length of its transaction (none "
                    "is left behind); run it as a role with CREATEROLE (e.g. postgres), and "
                    "give your application role access with `instrument migrate --grant "
                    "ROLE`") from None
            made.roles.append(role)
    if not _schema_exists(conn, "auth"):
        conn.execute("create schema auth")
        conn.execute(_AUTH_FUNCTIONS.encode())
        made.auth_schema = True
    return made


def _objects(conn: psycopg.Connection[tuple[object, ...]], tables: Iterable[str],
             functions: Iterable[str]) -> tuple[list[str], list[str], list[str], list[str]]:
    """Our tables with row-level security on or off, views, sequences and functions (by
    signature) that exist in ``public``: (tables, views, sequences, functions)."""
    names = sorted(set(tables))
    rels = conn.execute(
        "select c.relname, c.relkind from pg_class c join pg_namespace n on n.oid = "
        "c.relnamespace where n.nspname = 'public' and c.relname = any(%s) and c.relkind in "
        "('r', 'p', 'v')", (names,)).fetchall()
    have_tables = sorted(str(r) for r, k in rels if k in ("r", "p"))
    views = sorted(str(r) for r, k in rels if k == "v")
    seqs = conn.execute(
        "select distinct s.oid::regclass::text from pg_class s join pg_depend d on d.objid = "
        "s.oid join pg_class t on t.oid = d.refobjid join pg_namespace n on n.oid = "
        "t.relnamespace where s.relkind = 'S' and n.nspname = 'public' and t.relname = "
        "any(%s)", (have_tables,)).fetchall()
    procs = conn.execute(
        "select p.oid::regprocedure::text from pg_proc p join pg_namespace n on n.oid = "
        "p.pronamespace where n.nspname = 'public' and p.proname = any(%s)",
        (sorted(set(functions)),)).fetchall()
    return (have_tables, views, sorted(str(s[0]) for s in seqs),
            sorted(str(p[0]) for p in procs))


def strip_supabase(conn: psycopg.Connection[tuple[object, ...]], made: StandIns,
                   tables: Iterable[str], functions: Iterable[str]) -> None:
    """Plain PostgreSQL, before the migration commits: no policy for, and no privilege of,
    Supabase's roles on our objects; the stand-ins and a new ``auth`` schema dropped."""
    from psycopg import sql

    have_tables, views, seqs, procs = _objects(conn, tables, functions)
    policies = conn.execute(
        "select policyname, tablename from pg_policies where schemaname = 'public' and "
        "tablename = any(%s) and roles && %s::name[]",
        (have_tables, list(SUPABASE_ROLES))).fetchall()
    for policy, table in policies:
        conn.execute(sql.SQL("drop policy {} on public.{}").format(
            sql.Identifier(str(policy)), sql.Identifier(str(table))))
    roles = [r for r in SUPABASE_ROLES if _role_exists(conn, r)]
    if roles:
        who = sql.SQL(", ").join(sql.Identifier(r) for r in roles)
        for rel in (*have_tables, *views):
            conn.execute(sql.SQL("revoke all on table public.{} from {}").format(
                sql.Identifier(rel), who))
        for seq in seqs:
            conn.execute(sql.SQL("revoke all on sequence {} from {}").format(sql.SQL(seq), who))
        for proc in procs:
            conn.execute(sql.SQL("revoke all on function {} from {}").format(
                sql.SQL(proc), who))
    if made.auth_schema:
        conn.execute("drop schema auth cascade")
    for role in made.roles:
        conn.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def granted_roles(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """The application roles an earlier ``migrate --grant`` named (applied again each time)."""
    if conn.execute("select to_regclass(%s)", (f"public.{GRANTS_TABLE}",)).fetchone() == (None,):
        return []
    rows = conn.execute(f"select role from public.{GRANTS_TABLE} order by role").fetchall()
    return [str(r[0]) for r in rows]


def _remember(conn: psycopg.Connection[tuple[object, ...]], role: str) -> None:
    conn.execute(
        f"create table if not exists public.{GRANTS_TABLE} (\n"
        "    role text primary key,\n"
        "    granted_at timestamptz not null default now()\n"
        ")")
    # Supabase exposes public tables through its API: nobody but the owner reads this one
    conn.execute(f"alter table public.{GRANTS_TABLE} enable row level security")
    conn.execute(f"revoke all on table public.{GRANTS_TABLE} from public")
    conn.execute(f"insert into public.{GRANTS_TABLE} (role) values (%s) "
                 "on conflict (role) do nothing", (role,))


def grant_role(conn: psycopg.Connection[tuple[object, ...]], role: str,
               tables: Sequence[str], functions: Sequence[str]) -> None:
    """Give `role` what the SDK needs on our objects, and remember it (see the module doc).

    Raises :class:`~instrument.errors.ConfigurationError` when the role does not exist."""
    from psycopg import sql

    if not _role_exists(conn, role):
        raise ConfigurationError(
            f"role {role!r} does not exist; create it first (CREATE ROLE {role} LOGIN "
            "PASSWORD '...'), then run `instrument migrate --grant` again")
    _remember(conn, role)
    have_tables, views, seqs, procs = _objects(conn, [*tables, GRANTS_TABLE], functions)
    who = sql.Identifier(role)
    conn.execute(sql.SQL("grant usage on schema public to {}").format(who))
    for rel in have_tables:
        if rel == GRANTS_TABLE:
            continue
        conn.execute(sql.SQL("grant select, insert, update, delete on table public.{} to {}")
                     .format(sql.Identifier(rel), who))
        # row-level security is on for our tables: a policy lets the role see and write rows
        name = sql.Identifier(f"instrument_grant_{role}"[:63])
        conn.execute(sql.SQL("drop policy if exists {} on public.{}").format(
            name, sql.Identifier(rel)))
        conn.execute(sql.SQL("create policy {} on public.{} for all to {} using (true) "
                             "with check (true)").format(name, sql.Identifier(rel), who))
    for view in views:
        conn.execute(sql.SQL("grant select on table public.{} to {}").format(
            sql.Identifier(view), who))
    for seq in seqs:
        conn.execute(sql.SQL("grant usage, select on sequence {} to {}").format(
            sql.SQL(seq), who))
    for proc in procs:
        conn.execute(sql.SQL("grant execute on function {} to {}").format(sql.SQL(proc), who))


@dataclass(frozen=True, slots=True)
class RolesReport:
    """What a Postgres ``migrate`` did: the version reached, the mode, what it created for
    Supabase, and the application roles granted (this run's and earlier runs')."""

    version: int
    supabase: bool
    created: tuple[str, ...] = ()
    granted: tuple[str, ...] = ()


class Roles:
    """The role side of one Postgres migration (inside its transaction).

    `supabase` ``True``: Supabase's roles and ``auth`` schema are created where missing and
    kept; ``False``: plain PostgreSQL, none left behind; ``None``: Supabase mode where the
    three roles exist, except for a database migrated before (not `fresh`) without an ``auth``
    schema, which stays plain. Call :meth:`before_file` before running a migration file and
    :meth:`finish` once at the end.
    """

    def __init__(self, conn: psycopg.Connection[tuple[object, ...]],
                 supabase: bool | None, *, fresh: bool = True) -> None:
        self.conn = conn
        if supabase is None:
            # a database keeps its mode: one migrated before is Supabase's if it has `auth`
            supabase = supabase_roles_present(conn) and (fresh or _schema_exists(conn, "auth"))
        self.supabase = supabase
        self.created = supabase_bootstrap(conn) if self.supabase else []
        self._made: StandIns | None = None

    def before_file(self) -> None:
        if self._made is None and not self.supabase:
            self._made = stand_ins(self.conn)

    def finish(self, tables: Sequence[str], functions: Sequence[str], grant: Sequence[str],
               version: int) -> RolesReport:
        if not self.supabase:  # also when no file ran: `--no-supabase` converts a database
            strip_supabase(self.conn, self._made or StandIns(), tables, functions)
        roles = sorted({*granted_roles(self.conn), *grant})
        for role in roles:
            grant_role(self.conn, role, tables, functions)
        return RolesReport(version, self.supabase, tuple(self.created), tuple(roles))
