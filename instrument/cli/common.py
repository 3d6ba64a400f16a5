"""What every command shares: exit codes, the one-line error, options, settings and the store."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing, contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from instrument.cli.exits import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from instrument.config import Settings, resolve_settings
from instrument.errors import ConfigurationError, InstrumentError, SchemaMismatch
from instrument.stores import (
    AISConfigSource,
    ExecutionQueries,
    SchemaAdmin,
    Store,
    mask_url,
    open_store,
    url_problem,
)
from instrument.stores.migrations import (
    missing_objects_postgres,
    missing_objects_sqlite,
    sqlite_schema_version,
)

__all__ = [
    "EXIT_OK",
    "EXIT_PROBLEM",
    "EXIT_USAGE",
    "CliError",
    "ais_config_source",
    "console",
    "database_url_option",
    "first_line",
    "install_hint",
    "json_option",
    "missing_objects",
    "no_database",
    "open_store_for",
    "pick",
    "print_json",
    "queries",
    "reading",
    "schema_admin",
    "settings_for",
    "sqlite_file",
    "store_call",
    "url_flag",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

_URL_FIX = "start it, or fix --database-url / INSTRUMENT_DATABASE_URL"


class CliError(Exception):
    """A failure to report as one line on stderr, with the exit code scripts see."""

    def __init__(self, message: str, code: int = EXIT_PROBLEM) -> None:
        super().__init__(message)
        self.code = code


def database_url_option(f: F) -> F:
    return click.option(
        "--database-url", "database_url", metavar="URL", default=None,
        help="Store to use: sqlite:///path.db, postgresql://..., or supabase. "
        "[default: $INSTRUMENT_DATABASE_URL, else sqlite:///instrument.db]",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON instead of tables (for scripts).")(f)


def console() -> Console:
    """A console on the current stdout. Piped, it never wraps a line (tables are plain text
    then: see :mod:`instrument.cli.layout`)."""
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = 10_000
    return out


def install_hint(extra: str) -> str:
    """How to install an extra: from the checkout, until the package is published."""
    return (f"pip install -e '.[{extra}]' in your logged-execution checkout (once published: "
            f"pip install 'logged-execution[{extra}]')")


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, default=str, sort_keys=False))


def first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def settings_for(database_url: str | None) -> Settings:
    """Settings with `--database-url` over the environment; a bad value is a usage error.

    A relative SQLite path is made absolute here, so every message names the file itself.
    """
    try:
        settings = resolve_settings(database_url=database_url)
    except ConfigurationError as exc:
        raise CliError(first_line(exc), EXIT_USAGE) from None
    url = settings.database_url
    problem = url_problem(url, "--database-url" if database_url else "INSTRUMENT_DATABASE_URL")
    if problem is not None:
        raise CliError(problem, EXIT_USAGE)
    path = sqlite_file(url)
    if path is not None and str(path) != url[len("sqlite:///"):]:
        settings = dataclasses.replace(settings, database_url=f"sqlite:///{path}")
    return settings


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a ``sqlite:///`` file URL; None for other URLs and memory."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):]
    if not path or path == ":memory:":
        return None
    return Path(os.path.abspath(path))


def url_flag(database_url: str | None) -> str:
    """`` --database-url URL`` (password masked) when the user passed one, for fixes to run."""
    return f" --database-url {mask_url(database_url)}" if database_url else ""


def no_database(path: Path, flag: str = "") -> str:
    return (f"no database at {path}; create it with `instrument migrate{flag}` (or run "
            "`instrument demo`), or fix --database-url / INSTRUMENT_DATABASE_URL")


@contextmanager
def reading(settings: Settings, flag: str = "") -> Iterator[Store]:
    """The store, for a command that only reads: it never creates a database or a schema.

    A SQLite file that is not there, or holds no logged-execution schema, is a problem (exit 1)
    naming the absolute path and `instrument migrate`, instead of a new, empty database.
    """
    path = sqlite_file(settings.database_url)
    if path is not None:
        if not path.is_file():
            raise CliError(no_database(path, flag))
        try:  # read-only: the store would create the schema on first use
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
                version = sqlite_schema_version(conn)
        except sqlite3.Error as exc:
            raise CliError(f"cannot read {path}: {exc}; is it a SQLite database? Fix "
                           "--database-url / INSTRUMENT_DATABASE_URL") from None
        if version is None:
            raise CliError(f"no logged-execution schema in {path}; run "
                           f"`instrument migrate{flag}`")
    with open_store_for(settings) as store:
        if path is None and isinstance(store, SchemaAdmin) \
                and store_call(store, store.schema_version) is None:
            raise CliError(f"no logged-execution schema in {store.display_url}; run "
                           f"`instrument migrate{flag}`")
        yield store


@contextmanager
def open_store_for(settings: Settings) -> Iterator[Store]:
    """The store `settings` name (read and admin use: response text is never written)."""
    try:
        store = open_store(settings.database_url, supabase_url=settings.supabase_url,
                           supabase_key=settings.supabase_key)
    except (ConfigurationError, ImportError) as exc:
        missing = exc if isinstance(exc, ImportError) else exc.__cause__
        if not isinstance(missing, ImportError):
            raise CliError(first_line(exc), EXIT_USAGE) from None
        extra = "supabase" if settings.database_url.startswith("supabase") else "postgres"
        raise CliError(
            f"the store for {mask_url(settings.database_url)} needs a package that is not "
            f"installed ({missing.name}); {install_hint(extra)}", EXIT_USAGE,
        ) from None
    try:
        yield store
    finally:
        # Closing a store that never connected must not mask the error being reported.
        with suppress(Exception):
            store.close()


def _lacks(store: Store, protocol: type, methods: str, what: str) -> CliError:
    return CliError(
        f"the store for {store.display_url} ({type(store).__name__}) cannot {what}: it does not "
        f"implement instrument.stores.{protocol.__name__} ({methods})", EXIT_USAGE)


def schema_admin(store: Store) -> SchemaAdmin:
    """`store` as a :class:`SchemaAdmin` (migrate, schema_version), or a usage error."""
    if isinstance(store, SchemaAdmin):
        return store
    raise _lacks(store, SchemaAdmin, "migrate, schema_version", "create or report its schema")


def queries(store: Store) -> ExecutionQueries:
    """`store` as :class:`ExecutionQueries` (what `tail`, `stats`, `demo` read), or a usage
    error."""
    if isinstance(store, ExecutionQueries):
        return store
    raise _lacks(store, ExecutionQueries, "recent_executions, agent_stats, intensity_metrics",
                 "be read back")


def ais_config_source(store: Store) -> AISConfigSource:
    """`store` as an :class:`AISConfigSource` (ais_config), or a usage error."""
    if isinstance(store, AISConfigSource):
        return store
    raise _lacks(store, AISConfigSource, "ais_config", "report its AIS configuration")


def _missing_schema(message: str) -> bool:
    low = message.lower()
    return "no such table" in low or ("relation" in low and "does not exist" in low)


def store_call(store: Store, fn: Callable[[], T]) -> T:
    """Run one store operation, turning its failures into one line that names the fix."""
    try:
        return fn()
    except SchemaMismatch as exc:
        msg = first_line(exc)
        if "instrument migrate" not in msg:
            msg += "; run `instrument migrate`"
        raise CliError(msg) from None
    except ConfigurationError as exc:
        raise CliError(first_line(exc), EXIT_USAGE) from None
    except InstrumentError as exc:  # the store's own errors already name their fix
        raise CliError(f"cannot use the database at {store.display_url}: {first_line(exc)}"
                       ) from None
    except Exception as exc:  # drivers raise their own types; every one becomes one line
        msg = first_line(exc)
        if _missing_schema(msg):
            raise CliError(
                f"the schema is missing in {store.display_url} ({msg}); run `instrument migrate`"
            ) from None
        raise CliError(
            f"cannot use the database at {store.display_url}: {msg}; {_URL_FIX}"
        ) from None


def pick(row: Mapping[str, Any], *names: str) -> Any:
    """The first of `names` present in `row` with a non-None value."""
    for n in names:
        v = row.get(n)
        if v is not None:
            return v
    return None


def missing_objects(store: Store, database_url: str) -> list[str] | None:
    """The tables, columns, views and functions the current schema needs that the database at
    `database_url` lacks (empty: complete); None when this store's schema cannot be inspected
    (Supabase's REST API). Reads only; errors become one line, like :func:`store_call`."""
    path = sqlite_file(database_url)
    if path is not None:
        def inspect_sqlite() -> list[str]:
            with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
                return missing_objects_sqlite(conn)

        return store_call(store, inspect_sqlite)
    if store.dialect != "postgres":
        return None

    def inspect_postgres() -> list[str]:
        import psycopg  # late: psycopg is the optional `postgres` extra, present for this URL

        with psycopg.connect(database_url, connect_timeout=10) as conn:
            return missing_objects_postgres(conn)

    return store_call(store, inspect_postgres)
