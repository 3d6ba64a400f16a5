"""`instrument doctor`: is everything the SDK needs in place? Each problem comes with its fix."""

from __future__ import annotations

import importlib
import socket
import urllib.parse
from pathlib import Path
from typing import Any

import click

from instrument.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    CliError,
    console,
    database_url_option,
    first_line,
    install_hint,
    json_option,
    missing_objects,
    no_database,
    open_store_for,
    print_json,
    schema_admin,
    settings_for,
    sqlite_file,
    store_call,
    url_flag,
)
from instrument.cli.layout import show
from instrument.cli.render import checks_table
from instrument.config import Settings, describe, spool_dir_for
from instrument.pipeline.quarantine import QUARANTINE_FILE, quarantined
from instrument.pipeline.spool import backlog
from instrument.stores import mask_url
from instrument.stores.base import Store
from instrument.tracing.otel_env import resolve_otel

__all__ = ["doctor", "run_checks"]

Check = dict[str, Any]


def _check(name: str, status: str, detail: str, fix: str = "") -> Check:
    return {"check": name, "status": status, "detail": detail, "fix": fix}


def _expected_version(dialect: str) -> int | None:
    try:
        migrations: Any = importlib.import_module("instrument.stores.migrations")
    except ImportError:
        return None
    per_dialect = getattr(migrations, "expected_version", None)
    if per_dialect is not None:
        return int(per_dialect("sqlite" if dialect == "sqlite" else "postgres"))
    value = getattr(migrations, "EXPECTED_VERSION", None)
    return int(value) if value is not None else None


def _store_checks(store: Store, database_url: str, flag: str) -> list[Check]:
    migrate = f"instrument migrate{flag}"
    try:
        version = store_call(store, schema_admin(store).schema_version)
    except CliError as exc:
        msg = str(exc)
        if "instrument migrate" in msg:  # reachable, but the schema is missing or broken
            return [_check("database", "ok", f"reachable: {store.display_url}"),
                    _check("schema", "fail", msg, f"run `{migrate}`")]
        return [_check("database", "fail", msg,
                       "start the database, or point --database-url / INSTRUMENT_DATABASE_URL "
                       "at a reachable one"),
                _check("schema", "skip", "database not reachable")]
    checks = [_check("database", "ok", f"reachable: {store.display_url} ({store.dialect})")]
    expected = _expected_version(store.dialect)
    if version is None:
        checks.append(_check("schema", "fail", "no schema in this database",
                             f"run `{migrate}`"))
    elif expected is None:
        checks.append(_check("schema", "warn", f"schema v{version}; expected version unknown",
                             "upgrade logged-execution"))
    elif version < expected:
        checks.append(_check("schema", "fail", f"schema v{version}, expected v{expected}",
                             f"run `{migrate}`"))
    elif version > expected:
        checks.append(_check("schema", "fail",
                             f"schema v{version} is newer than this SDK (expects v{expected})",
                             f"upgrade logged-execution ({install_hint('all')})"))
    else:
        checks.append(_objects_check(store, database_url, version, migrate))
    return checks


def _objects_check(store: Store, database_url: str, version: int, migrate: str) -> Check:
    """The version row is right: is every table, column, view and function there too?"""
    try:
        missing = missing_objects(store, database_url)
    except CliError as exc:
        return _check("schema", "fail", f"schema v{version}, but it cannot be inspected: {exc}",
                      f"run `{migrate}`")
    if missing is None:
        return _check("schema", "ok", f"schema v{version} (expected v{version}; tables not "
                      "inspected over the REST API)")
    if missing:
        return _check("schema", "fail", f"schema v{version}, but missing: {', '.join(missing)}",
                      f"run `{migrate}` (it re-creates them; rows elsewhere are kept)")
    return _check("schema", "ok", f"schema v{version} (expected v{version}), every table, "
                  "view and function present")


def _tcp_reachable(endpoint: str, default_port: int, timeout_s: float = 2.0) -> str | None:
    """None when a TCP connection to the endpoint's host:port opens, else why not."""
    parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"//{endpoint}")
    host = parsed.hostname or "localhost"
    try:
        port = parsed.port or {"https": 443, "http": default_port}.get(parsed.scheme,
                                                                        default_port)
    except ValueError:
        return f"invalid endpoint {endpoint!r}"
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"


def _otlp_check(settings: Settings) -> Check:
    cfg = resolve_otel(settings.environ, traces=settings.traces,
                       service_name=settings.service_name)
    if cfg.disabled:
        return _check("otlp", "skip", "OTEL_SDK_DISABLED=true: no spans are exported")
    traces = cfg.traces
    if not traces.otlp:
        kinds = ", ".join(traces.kinds) or "none"
        return _check("otlp", "skip", f"no OTLP endpoint configured (traces exporter: {kinds})",
                      "set OTEL_EXPORTER_OTLP_ENDPOINT to export spans (docs/tracing-and-"
                      "jaeger.md)")
    default_port = 4317 if traces.protocol == "grpc" else 4318
    problem = _tcp_reachable(traces.endpoint, default_port)
    if problem is None:
        return _check("otlp", "ok", f"{traces.endpoint} reachable ({traces.protocol})")
    return _check("otlp", "fail", f"{traces.endpoint} not reachable: {problem}",
                  "start the collector (e.g. docker run -p 4317:4317 -p 4318:4318 "
                  "-p 16686:16686 jaegertracing/jaeger:2.20.0) or unset "
                  "OTEL_EXPORTER_OTLP_ENDPOINT")


def _spool_checks(spool_dir: Path | None, url_flag: str) -> list[Check]:
    if spool_dir is None:
        return [_check("spool", "warn", "the spool is off: undelivered records are lost when "
                       "the process exits", "set INSTRUMENT_SPOOL_DIR (or remove `off`)")]
    pending = backlog(spool_dir)
    checks = [
        _check("spool", "warn", f"{spool_dir}: {pending} record(s) waiting",
               f"run `instrument replay{url_flag}` once the database is reachable") if pending
        else _check("spool", "ok", f"{spool_dir}: empty")
    ]
    bad = quarantined(spool_dir)
    if bad:
        refused = [q for q in bad if q.damaged is None]
        parts = []
        if refused:
            kinds = sorted({q.error_type for q in refused})
            parts.append(f"{len(refused)} record(s) refused by the store ({', '.join(kinds)})")
        if len(refused) < len(bad):
            parts.append(f"{len(bad) - len(refused)} damaged stretch(es) of the spool, kept "
                         "as bytes")
        checks.append(_check(
            "quarantine", "fail",
            f"{'; '.join(parts)}: {first_line(Exception(bad[-1].error))}",
            f"read {spool_dir / QUARANTINE_FILE} (one JSON line each: the record or the "
            f"damaged bytes, and the error); fix the cause (often `instrument "
            f"migrate{url_flag}`)",
        ))
    else:
        checks.append(_check("quarantine", "ok", "no quarantined records"))
    return checks


def _spool_dir(settings: Settings) -> Path | None:
    """The spool directory in use, defaults resolved."""
    return spool_dir_for(settings.spool_dir, settings.database_url, settings.supabase_url)


def run_checks(settings: Settings, database_url: str | None) -> list[Check]:
    """Every check, in order. Never raises for a problem it can describe."""
    flag = url_flag(database_url)
    path = sqlite_file(settings.database_url)
    if path is not None and not path.is_file():  # checking must not create the database
        checks = [_check("database", "fail", no_database(path, flag).split(";")[0],
                         f"create it with `instrument migrate{flag}`, or fix --database-url / "
                         "INSTRUMENT_DATABASE_URL"),
                  _check("schema", "skip", "no database")]
    else:
        with open_store_for(settings) as store:
            checks = _store_checks(store, settings.database_url, flag)
    checks.append(_otlp_check(settings))
    checks.extend(_spool_checks(_spool_dir(settings), flag))
    return checks


@click.command()
@database_url_option
@json_option
def doctor(database_url: str | None, as_json: bool) -> int:
    """Check the store, the schema version, the OTLP endpoint, the spool and the quarantine.

    Exits 1 when a check fails (each failure names its fix); warnings do not fail.
    """
    settings = settings_for(database_url)
    checks = run_checks(settings, database_url)
    failed = [c for c in checks if c["status"] == "fail"]
    shown = describe(settings)
    shown["database_url"] = mask_url(settings.database_url)
    spool_dir = _spool_dir(settings)
    shown["spool_dir"] = str(spool_dir) if spool_dir is not None else "off"
    if as_json:
        print_json({"ok": not failed, "settings": shown, "checks": checks})
    else:
        out = console()
        out.print("Settings: " + "  ".join(
            f"{k}={','.join(v) if isinstance(v, list) else v}" for k, v in shown.items()
            if v not in (None, False)))
        show(out, checks_table(checks))
    if failed:
        first = failed[0]
        click.echo(f"error: {len(failed)} problem(s) found; {first['check']}: {first['detail']}"
                   f" -> {first['fix']}", err=True)
        return EXIT_PROBLEM
    return EXIT_OK
