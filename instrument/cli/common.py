"""What every command shares: exit codes, the one-line error, options, settings and the store."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
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
    open_store,
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
    "json_option",
    "open_store_for",
    "pick",
    "print_json",
    "queries",
    "schema_admin",
    "settings_for",
    "store_call",
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
    """A console on the current stdout; wide enough for the tables when output is piped."""
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, 140)
    return out


def print_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, default=str, sort_keys=False))


def first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(exc).__name__


def settings_for(database_url: str | None) -> Settings:
    """Settings with `--database-url` over the environment; a bad value is a usage error."""
    try:
        return resolve_settings(database_url=database_url)
    except ConfigurationError as exc:
        raise CliError(first_line(exc), EXIT_USAGE) from None


@contextmanager
def open_store_for(settings: Settings) -> Iterator[Store]:
    """The store `settings` name (read and admin use: response text is never written)."""
    try:
        store = open_store(settings.database_url, supabase_url=settings.supabase_url,
                           supabase_key=settings.supabase_key)
    except ConfigurationError as exc:
        raise CliError(first_line(exc), EXIT_USAGE) from None
    except ImportError as exc:
        raise CliError(
            f"the store for this URL needs a package that is not installed ({exc.name}); "
            "pip install 'logged-execution[postgres]' (or [supabase], [all])", EXIT_USAGE,
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
