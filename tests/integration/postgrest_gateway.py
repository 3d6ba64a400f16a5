"""A PostgREST-protocol test gateway: supabase-py's HTTP requests become SQL on real Postgres.

It stands in for a Supabase project (Kong's API-key check in front of PostgREST) in the test
suite, so the real ``supabase`` client is exercised end to end:

* every request must carry a known ``apikey`` (the anon or service-role key) and may carry
  ``Authorization: Bearer <jwt>``; the JWT is verified (HS256, :data:`TEST_JWT_SECRET`) and the
  SQL runs **as its role** inside one transaction, exactly like PostgREST::

      BEGIN; SET LOCAL ROLE <role>; SELECT set_config('request.jwt.claims', <claims>, true); ...

  so grants and row level security are really enforced;
* ``GET /rest/v1/<table>?select=..&col=eq.v&order=col.desc&limit=n&offset=m`` selects;
* ``POST /rest/v1/<table>`` inserts (``Prefer: return=representation|minimal``), upserts with
  ``?on_conflict=<cols>`` and ``Prefer: resolution=merge-duplicates|ignore-duplicates``;
* ``POST /rest/v1/rpc/<fn>`` calls a function with the JSON object body as named arguments;
* errors come back in PostgREST's shape ``{code, message, details, hint}`` with PostgREST's
  HTTP statuses (404 + PGRST202 for an unknown function, 404 + PGRST205 for an unknown table,
  400 + PGRST204 for an unknown column, 400 for 22P02, 409 for 23505, 401 for a bad JWT,
  403/401 for 42501).

:func:`bootstrap_supabase_platform` creates what a Supabase project provides before any user
migration runs: the ``anon``/``authenticated``/``service_role`` roles (``service_role`` bypasses
RLS), ``auth.uid()``/``auth.role()``/``auth.jwt()``, and the default grants on ``public``.

Fault injection for error-path tests: :meth:`PostgrestGateway.fail_next` answers the next
requests with a proxy-style error page (e.g. 503), :meth:`PostgrestGateway.requests` lists what
was received (to count round trips).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

__all__ = [
    "TEST_JWT_SECRET",
    "PostgrestGateway",
    "RecordedRequest",
    "bootstrap_supabase_platform",
    "make_jwt",
]

#: HS256 secret of the test project (Supabase's is the project's JWT secret).
TEST_JWT_SECRET = "logged-execution-test-jwt-secret-at-least-32-bytes-long"

ROLES = ("anon", "authenticated", "service_role")

# What a Supabase project has before the first user migration. Roles are cluster-wide, so they
# are created only when missing (and a concurrent creation by another test is tolerated).
_ROLE_SQL = {
    "anon": "CREATE ROLE anon NOLOGIN NOINHERIT",
    "authenticated": "CREATE ROLE authenticated NOLOGIN NOINHERIT",
    "service_role": "CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS",
}

SUPABASE_PLATFORM_SQL = """
CREATE SCHEMA IF NOT EXISTS auth;
CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
CREATE OR REPLACE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
CREATE OR REPLACE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
  GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
"""


def bootstrap_supabase_platform(dsn: str) -> None:
    """Prepare a fresh database the way a new Supabase project is prepared."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role, ddl in _ROLE_SQL.items():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
            if exists is None:
                # another test may create it at the same moment
                with contextlib.suppress(psycopg.errors.DuplicateObject,
                                         psycopg.errors.UniqueViolation):
                    conn.execute(ddl)
        conn.execute(SUPABASE_PLATFORM_SQL)


def make_jwt(role: str, *, sub: str | None = None, secret: str = TEST_JWT_SECRET,
             expires_in: int = 3600, **claims: Any) -> str:
    """A Supabase-style access token (``role`` claim, optional ``sub``) signed with HS256."""
    now = int(time.time())
    payload: dict[str, Any] = {"iss": "supabase-test", "role": role, "iat": now,
                               "exp": now + expires_in, **claims}
    if sub is not None:
        payload["sub"] = sub
    return jwt.encode(payload, secret, algorithm="HS256")


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    role: str | None
    status: int
    body: Any = None


class ApiError(Exception):
    """An error answered in PostgREST's JSON shape."""

    def __init__(self, status: int, code: str | None, message: str, *,
                 details: str | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "details": self.details, "hint": self.hint,
                "message": self.message}


@dataclass
class _Injected:
    status: int
    remaining: int
    body: str = "<html><body>upstream unavailable</body></html>"
    delay_s: float = 0.0


# --- SQLSTATE -> HTTP status, as PostgREST maps them -------------------------------------------

def _status_for_sqlstate(code: str, role: str) -> int:
    exact = {"23503": 409, "23505": 409, "25006": 405, "42883": 404, "42P01": 404,
             "42P17": 500, "P0001": 400, "40001": 500, "40P01": 500}
    if code in exact:
        return exact[code]
    if code == "42501":
        return 401 if role == "anon" else 403
    prefix = {"08": 503, "09": 500, "0L": 403, "0P": 403, "25": 500, "28": 403, "2D": 500,
              "38": 500, "39": 500, "3B": 500, "40": 500, "53": 503, "54": 413, "55": 500,
              "57": 500, "58": 500, "F0": 500, "HV": 500, "P0": 500, "XX": 500}
    return prefix.get(code[:2], 400)


def _api_error_from_pg(exc: psycopg.Error, role: str) -> ApiError:
    diag = exc.diag
    code = exc.sqlstate or "XX000"
    return ApiError(_status_for_sqlstate(code, role), code,
                    diag.message_primary or str(exc), details=diag.message_detail,
                    hint=diag.message_hint)


# --- query-string grammar ----------------------------------------------------------------------

_RESERVED = {"select", "order", "limit", "offset", "columns", "on_conflict"}
_OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=",
        "like": "LIKE", "ilike": "ILIKE", "cs": "@>", "cd": "<@"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _ident(name: str) -> sql.Identifier:
    name = name.strip().strip('"')
    if not _IDENT.match(name):
        raise ApiError(400, "PGRST100", f"'{name}' is not a column name this gateway supports")
    return sql.Identifier(name)


def _split_list(raw: str) -> list[str]:
    """Split ``a,"b,c",d`` on commas outside double quotes."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in raw:
        if ch == '"':
            quoted = not quoted
            continue
        if ch == "," and not quoted:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur))
    return out


def _filter(column: str, raw: str) -> tuple[sql.Composable, list[Any]]:
    negate = False
    if raw.startswith("not."):
        negate, raw = True, raw[4:]
    op, _, value = raw.partition(".")
    col = _ident(column)
    params: list[Any] = []
    clause: sql.Composable
    if op in _OPS:
        if op in ("like", "ilike"):
            value = value.replace("*", "%")
        clause = sql.SQL("{} {} %s").format(col, sql.SQL(_OPS[op]))
        params.append(value)
    elif op == "cs":  # contains; on a jsonb column the value is JSON (`cs.["a"]`)
        clause = sql.SQL("{} @> %s::jsonb").format(col)
        params.append(value)
    elif op == "is":
        keyword = {"null": "NULL", "true": "TRUE", "false": "FALSE", "unknown": "UNKNOWN"}
        if value.lower() not in keyword:
            raise ApiError(400, "PGRST100", f'"failed to parse filter (is.{value})"')
        clause = sql.SQL("{} IS {}").format(col, sql.SQL(keyword[value.lower()]))
    elif op == "in":
        if not (value.startswith("(") and value.endswith(")")):
            raise ApiError(400, "PGRST100", f'"failed to parse filter (in.{value})"')
        items = _split_list(value[1:-1]) if value[1:-1] else []
        if not items:
            clause = sql.SQL("FALSE")
        else:
            clause = sql.SQL("{} IN ({})").format(
                col, sql.SQL(", ").join(sql.Placeholder() for _ in items))
            params.extend(items)
    else:
        raise ApiError(400, "PGRST100", f'"failed to parse filter ({op}.{value})"',
                       details=f"unexpected operator {op!r}")
    if negate:
        clause = sql.SQL("NOT ({})").format(clause)
    return clause, params


def _order(raw: str) -> sql.Composable:
    parts: list[sql.Composable] = []
    for term in _split_list(raw):
        bits = term.split(".")
        piece: list[sql.Composable] = [_ident(bits[0])]
        for mod in bits[1:]:
            word = {"asc": "ASC", "desc": "DESC", "nullsfirst": "NULLS FIRST",
                    "nullslast": "NULLS LAST"}.get(mod)
            if word is None:
                raise ApiError(400, "PGRST100", f'"failed to parse order ({raw})"')
            piece.append(sql.SQL(word))
        parts.append(sql.SQL(" ").join(piece))
    return sql.SQL(", ").join(parts)


def _select_list(raw: str | None) -> sql.Composable:
    if raw is None or raw.strip() in ("", "*"):
        return sql.SQL("*")
    cols: list[sql.Composable] = []
    for raw_item in _split_list(raw):
        item = raw_item.strip()
        if item == "*":
            cols.append(sql.SQL("*"))
            continue
        alias, sep, name = item.partition(":")
        if sep:
            cols.append(sql.SQL("{} AS {}").format(_ident(name), _ident(alias)))
        else:
            cols.append(_ident(item))
    return sql.SQL(", ").join(cols)


def _prefer(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in headers.get("Prefer", "").split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


# --- the server ---------------------------------------------------------------------------------

@dataclass
class _Auth:
    role: str
    claims: dict[str, Any] = field(default_factory=dict)
    method: str = "GET"
    path: str = "/"


class PostgrestGateway:
    """A running gateway. Use as a context manager or call :meth:`start` / :meth:`stop`."""

    def __init__(self, dsn: str, *, jwt_secret: str = TEST_JWT_SECRET,
                 schemas: Sequence[str] = ("public",), pool_size: int = 4) -> None:
        self.dsn = dsn
        self.jwt_secret = jwt_secret
        self.schemas = tuple(schemas)
        self.anon_key = make_jwt("anon", secret=jwt_secret, expires_in=10 * 365 * 86400)
        self.service_role_key = make_jwt("service_role", secret=jwt_secret,
                                         expires_in=10 * 365 * 86400)
        self._pool = ConnectionPool(dsn, min_size=1, max_size=pool_size, open=False,
                                    kwargs={"autocommit": False})
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._injected: list[_Injected] = []

    # lifecycle
    def start(self) -> PostgrestGateway:
        self._pool.open(wait=True, timeout=10)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="postgrest-gateway",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self._pool.close(timeout=5)

    def __enter__(self) -> PostgrestGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "gateway is not running"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """What SUPABASE_URL should be set to."""
        return f"http://127.0.0.1:{self.port}"

    def token(self, role: str, *, sub: str | None = None, **claims: Any) -> str:
        return make_jwt(role, sub=sub, secret=self.jwt_secret, **claims)

    # observation and fault injection
    def requests(self, *, path_prefix: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if r.path.startswith(path_prefix)]

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail_next(self, status: int = 503, *, count: int = 1, delay_s: float = 0.0,
                  body: str | None = None) -> None:
        """Answer the next `count` requests with `status` and a non-JSON page (a proxy error)."""
        with self._lock:
            inj = _Injected(status, count, delay_s=delay_s)
            if body is not None:
                inj.body = body
            self._injected.append(inj)

    def _take_injected(self) -> _Injected | None:
        with self._lock:
            while self._injected:
                inj = self._injected[0]
                if inj.remaining <= 0:
                    self._injected.pop(0)
                    continue
                inj.remaining -= 1
                return inj
            return None

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(req)

    # authentication (Kong's key-auth, then PostgREST's JWT check)
    def authenticate(self, headers: Mapping[str, str]) -> _Auth:
        apikey = headers.get("apikey")
        if not apikey:
            raise ApiError(401, None, "No API key found in request",
                           hint="No `apikey` request header or url param was found.")
        if apikey not in (self.anon_key, self.service_role_key):
            raise ApiError(401, None, "Invalid API key",
                           hint="Double check your Supabase `anon` or `service_role` API key.")
        auth = headers.get("Authorization")
        if not auth:
            return _Auth("anon", {"role": "anon"})
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "PGRST301", "Expected a Bearer token in the Authorization header")
        try:
            claims = jwt.decode(token, self.jwt_secret, algorithms=["HS256"],
                                options={"verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "PGRST303", "JWT expired") from None
        except jwt.PyJWTError as exc:
            raise ApiError(401, "PGRST301", f"JWSError: {exc}") from None
        role = str(claims.get("role") or "anon")
        if role not in ROLES:
            raise ApiError(401, "PGRST301", f'role "{role}" does not exist')
        return _Auth(role, claims)

    # request handling
    def handle(self, method: str, raw_path: str, headers: Mapping[str, str],
               body: bytes) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        path = parts.path
        query = parse_qsl(parts.query, keep_blank_values=True)
        role: str | None = None
        payload: Any = None
        try:
            inj = self._take_injected()
            if inj is not None:
                if inj.delay_s:
                    time.sleep(inj.delay_s)
                status, out_headers, out = inj.status, {"Content-Type": "text/html"}, (
                    inj.body.encode())
                self._record(RecordedRequest(method, path, parts.query, None, status, None))
                return status, out_headers, out
            auth = self.authenticate(headers)
            auth.method, auth.path = method, path
            role = auth.role
            if not path.startswith("/rest/v1/"):
                raise ApiError(404, None, f"no route for {path}")
            schema = self._schema(method, headers)
            rest = path[len("/rest/v1/"):].strip("/")
            if body:
                try:
                    payload = json.loads(body)
                except ValueError as exc:
                    raise ApiError(400, "PGRST102", "Empty or invalid json",
                                   details=str(exc)) from None
            if rest.startswith("rpc/") and method in ("POST", "GET"):
                args = payload if method == "POST" else dict(query)
                if args is None:
                    args = {}
                if not isinstance(args, dict):
                    raise ApiError(400, "PGRST102", "the RPC body must be a JSON object")
                status, out_headers, out = self._rpc(auth, schema, rest[4:], args, headers)
            elif method == "GET":
                status, out_headers, out = self._select(auth, schema, rest, query, headers)
            elif method == "POST":
                status, out_headers, out = self._insert(auth, schema, rest, query, headers,
                                                        payload)
            elif method == "DELETE":
                status, out_headers, out = self._delete(auth, schema, rest, query, headers)
            else:
                raise ApiError(405, None, f"{method} is not supported by the test gateway")
        except ApiError as err:
            status = err.status
            out_headers = {"Content-Type": "application/json; charset=utf-8"}
            if err.code:
                out_headers["Proxy-Status"] = f"PostgREST; error={err.code}"
            out = json.dumps(err.body()).encode()
        self._record(RecordedRequest(method, path, parts.query, role, status, payload))
        return status, out_headers, out

    def _schema(self, method: str, headers: Mapping[str, str]) -> str:
        name = "Accept-Profile" if method in ("GET", "HEAD") else "Content-Profile"
        schema = headers.get(name) or self.schemas[0]
        if schema not in self.schemas:
            raise ApiError(406, "PGRST106", "Invalid schema: " + schema,
                           hint=f"Only the following schemas are exposed: "
                                f"{', '.join(self.schemas)}")
        return schema

    def _run(self, auth: _Auth, work: Any, *, read_only: bool = False) -> Any:
        """Run `work(cursor)` in one transaction as the request's role, like PostgREST.

        GET requests run in a READ ONLY transaction, as PostgREST runs them.
        """
        try:
            with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                if read_only:
                    cur.execute("SET TRANSACTION READ ONLY")
                cur.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(auth.role)))
                cur.execute("SELECT set_config('request.jwt.claims', %s, true), "
                            "set_config('request.method', %s, true), "
                            "set_config('request.path', %s, true)",
                            (json.dumps(auth.claims), auth.method, auth.path))
                return work(cur)
        except psycopg.OperationalError as exc:
            if exc.sqlstate is None:
                raise ApiError(503, "PGRST001", "Database client error. Retrying the "
                               "connection.", details=str(exc)) from None
            raise _api_error_from_pg(exc, auth.role) from None
        except psycopg.Error as exc:
            raise _api_error_from_pg(exc, auth.role) from None

    # schema cache lookups (as the connecting superuser, like PostgREST's schema cache)
    def _table_columns(self, schema: str, table: str) -> list[str]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
                "c.relname = %s AND c.relkind IN ('r','v','m','p','f') AND a.attnum > 0 AND "
                "NOT a.attisdropped ORDER BY a.attnum", (schema, table)).fetchall()
            exists = conn.execute(
                "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r','v','m','p','f')",
                (schema, table)).fetchone()
        if exists is None:
            raise ApiError(404, "PGRST205",
                           f"Could not find the table '{schema}.{table}' in the schema cache")
        return [r[0] for r in rows]

    def _primary_key(self, schema: str, table: str) -> list[str]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON "
                "a.attrelid = c.oid AND a.attnum = ANY(i.indkey) WHERE i.indisprimary AND "
                "n.nspname = %s AND c.relname = %s", (schema, table)).fetchall()
        return [r[0] for r in rows]

    def _select(self, auth: _Auth, schema: str, table: str, query: list[tuple[str, str]],
                headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        self._table_columns(schema, table)
        q = dict(query)
        where: list[sql.Composable] = []
        params: list[Any] = []
        for key, value in query:
            if key in _RESERVED:
                continue
            clause, p = _filter(key, value)
            where.append(clause)
            params.extend(p)
        rel = sql.Identifier(schema, table)
        stmt: sql.Composable = sql.SQL("SELECT {} FROM {}").format(_select_list(q.get("select")),
                                                                   rel)
        where_sql: sql.Composable = sql.SQL("")
        if where:
            where_sql = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(where)
        stmt = stmt + where_sql
        if "order" in q:
            stmt = stmt + sql.SQL(" ORDER BY ") + _order(q["order"])
        for word in ("limit", "offset"):
            if word in q:
                try:
                    n = int(q[word])
                except ValueError:
                    raise ApiError(400, "PGRST100", f'"failed to parse {word} ({q[word]})"'
                                   ) from None
                stmt = stmt + sql.SQL(f" {word.upper()} {n}")
        wrapped = sql.SQL("SELECT coalesce(json_agg(t), '[]')::text, count(*) FROM ({}) t"
                          ).format(stmt)
        want_count = _prefer(headers).get("count") in ("exact", "planned", "estimated")
        count_stmt = sql.SQL("SELECT count(*) FROM {}").format(rel) + where_sql

        def work(cur: psycopg.Cursor[Any]) -> tuple[str, int, int | None]:
            cur.execute(wrapped, params)
            row = cur.fetchone()
            assert row is not None
            total = None
            if want_count:
                cur.execute(count_stmt, params)
                crow = cur.fetchone()
                total = int(crow[0]) if crow else 0
            return str(row[0]), int(row[1]), total

        text, n, total = self._run(auth, work, read_only=True)
        offset = int(q.get("offset", "0") or 0)
        rng = f"{offset}-{offset + n - 1}" if n else "*"
        return 200, {"Content-Type": "application/json; charset=utf-8",
                     "Content-Range": f"{rng}/{'*' if total is None else total}"}, text.encode()

    def _delete(self, auth: _Auth, schema: str, table: str, query: list[tuple[str, str]],
                headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        """DELETE with filters, as the request's role (row-level security applies); the rows
        with ``Prefer: return=representation``, else 204. Like PostgREST, a DELETE without a
        filter is refused (it would empty the table)."""
        self._table_columns(schema, table)
        where: list[sql.Composable] = []
        params: list[Any] = []
        for key, value in query:
            if key in _RESERVED:
                continue
            clause, p = _filter(key, value)
            where.append(clause)
            params.extend(p)
        if not where:
            raise ApiError(400, "21000", "DELETE requires a WHERE clause")
        stmt = sql.SQL("DELETE FROM {} WHERE {} RETURNING *").format(
            sql.Identifier(schema, table), sql.SQL(" AND ").join(where))
        wrapped = sql.SQL("WITH d AS ({}) SELECT coalesce(json_agg(d), '[]')::text FROM d"
                          ).format(stmt)

        def work(cur: psycopg.Cursor[Any]) -> str:
            cur.execute(wrapped, params)
            row = cur.fetchone()
            return str(row[0]) if row else "[]"

        text = self._run(auth, work)
        if _prefer(headers).get("return") == "representation":
            return 200, {"Content-Type": "application/json; charset=utf-8"}, text.encode()
        return 204, {}, b""

    def _insert(self, auth: _Auth, schema: str, table: str, query: list[tuple[str, str]],
                headers: Mapping[str, str], payload: Any
                ) -> tuple[int, dict[str, str], bytes]:
        table_cols = self._table_columns(schema, table)
        rows = payload if isinstance(payload, list) else [payload]
        if not rows or not all(isinstance(r, dict) for r in rows):
            raise ApiError(400, "PGRST102", "All object keys must match")
        q = dict(query)
        if "columns" in q:
            cols = [c.strip().strip('"') for c in _split_list(q["columns"])]
        else:
            cols = []
            for r in rows:
                cols.extend(k for k in r if k not in cols)
        for c in cols:
            if c not in table_cols:
                raise ApiError(400, "PGRST204",
                               f"Could not find the '{c}' column of '{table}' in the schema cache")
        prefer = _prefer(headers)
        rel = sql.Identifier(schema, table)
        idents = sql.SQL(", ").join(_ident(c) for c in cols)
        stmt: sql.Composable = sql.SQL(
            "INSERT INTO {rel} ({cols}) SELECT {cols} FROM json_populate_recordset(NULL::{rel}, "
            "%s::json)").format(rel=rel, cols=idents)
        resolution = prefer.get("resolution")
        if resolution in ("merge-duplicates", "ignore-duplicates"):
            conflict = ([c.strip().strip('"') for c in _split_list(q["on_conflict"])]
                        if "on_conflict" in q else self._primary_key(schema, table))
            if not conflict:
                raise ApiError(400, "PGRST100", f"'{table}' has no primary key; pass on_conflict")
            target = sql.SQL(", ").join(_ident(c) for c in conflict)
            if resolution == "ignore-duplicates":
                stmt = stmt + sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(target)
            else:
                sets = [sql.SQL("{c} = EXCLUDED.{c}").format(c=_ident(c)) for c in cols
                        if c not in conflict]
                if sets:
                    stmt = stmt + sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                        target, sql.SQL(", ").join(sets))
                else:
                    stmt = stmt + sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(target)
        representation = prefer.get("return") == "representation"
        stmt = stmt + sql.SQL(" RETURNING *")
        wrapped = sql.SQL("WITH ins AS ({}) SELECT coalesce(json_agg(ins), '[]')::text, "
                          "count(*) FROM ins").format(stmt)
        body = json.dumps(rows)

        def work(cur: psycopg.Cursor[Any]) -> tuple[str, int]:
            cur.execute(wrapped, (body,))
            row = cur.fetchone()
            assert row is not None
            return str(row[0]), int(row[1])

        text, n = self._run(auth, work)
        out_headers = {"Content-Range": f"*/{n}" if n else "*/*"}
        if representation:
            out_headers["Content-Type"] = "application/json; charset=utf-8"
            return 201, out_headers, text.encode()
        return 201, out_headers, b""

    def _rpc(self, auth: _Auth, schema: str, fn: str, args: dict[str, Any],
             headers: Mapping[str, str]) -> tuple[int, dict[str, str], bytes]:
        fn_info = self._find_function(schema, fn, args)
        names = list(args)
        types = fn_info["types"]
        call_args = sql.SQL(", ").join(
            sql.SQL("{n} := _.{n}").format(n=_ident(n)) for n in names)
        call = sql.SQL("{}({})").format(sql.Identifier(schema, fn), call_args)
        source: sql.Composable
        if names:
            source = sql.SQL(" FROM json_to_record(%s::json) AS _({})").format(
                sql.SQL(", ").join(sql.SQL("{} {}").format(_ident(n), sql.SQL(types[n]))
                                   for n in names))
            params: tuple[Any, ...] = (json.dumps(args),)
        else:
            source = sql.SQL("")
            params = ()
        if fn_info["setof"] or fn_info["composite"]:
            if names:
                rel = (sql.SQL("json_to_record(%s::json) AS _({}) CROSS JOIN LATERAL ").format(
                    sql.SQL(", ").join(sql.SQL("{} {}").format(_ident(n), sql.SQL(types[n]))
                                       for n in names)) + call + sql.SQL(" AS r"))
            else:
                rel = call + sql.SQL(" AS r")
            agg = "coalesce(json_agg(r), '[]')" if fn_info["setof"] else "to_json(r)"
            stmt = sql.SQL(f"SELECT {agg}::text FROM ") + rel
        else:
            stmt = sql.SQL("SELECT to_json(") + call + sql.SQL(")::text") + source

        def work(cur: psycopg.Cursor[Any]) -> str:
            cur.execute(stmt, params)
            row = cur.fetchone()
            return "null" if row is None or row[0] is None else str(row[0])

        text = self._run(auth, work, read_only=auth.method == "GET")
        return 200, {"Content-Type": "application/json; charset=utf-8"}, text.encode()

    def _find_function(self, schema: str, fn: str, args: Mapping[str, Any]) -> dict[str, Any]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT p.proargnames, p.proargmodes, p.pronargs, p.pronargdefaults, "
                "p.proretset, ARRAY(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) t), "
                "rt.typtype = 'c' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "JOIN pg_type rt ON rt.oid = p.prorettype "
                "WHERE n.nspname = %s AND p.proname = %s AND p.prokind = 'f'",
                (schema, fn)).fetchall()
        keys = set(args)
        for argnames, modes, nargs, ndefaults, setof, argtypes, composite in rows:
            names = list(argnames or [])
            if modes:
                names = [n for n, m in zip(names, modes, strict=False) if m in ("i", "b", "v")]
            names = names[:nargs]
            if len(names) != nargs or any(not n for n in names):
                continue  # unnamed arguments cannot be called with named JSON keys
            required = set(names[: nargs - ndefaults])
            if keys <= set(names) and required <= keys:
                return {"types": dict(zip(names, argtypes, strict=True)), "setof": setof,
                        "composite": composite}
        wanted = ", ".join(sorted(keys))
        raise ApiError(
            404, "PGRST202",
            f"Could not find the function {schema}.{fn}({wanted}) in the schema cache",
            details=f"Searched for the function {schema}.{fn} with parameters {wanted} or with "
                    "a single unnamed json/jsonb parameter, but no matches were found in the "
                    "schema cache.",
            hint=None)


def _make_handler(gateway: PostgrestGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = dict(self.headers.items())
            # header lookups are case-insensitive in HTTP
            ci = _CaseInsensitive(headers)
            status, out_headers, out = gateway.handle(self.command, self.path, ci, body)
            phrase = (HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_
                      else None)
            # the client may have given up already (timeout tests): a broken pipe is fine
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status, phrase)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

        do_GET = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the test reads gateway.requests() instead

    return Handler


class _CaseInsensitive(Mapping[str, str]):
    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = {k.lower(): v for k, v in data.items()}

    def __getitem__(self, key: str) -> str:
        return self._data[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)
