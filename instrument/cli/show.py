"""`instrument show <execution-id>`: one execution, the executions it started, its log row and
its trace.

The id may be the first characters `instrument tail` prints (eight are enough in practice;
several matches are listed). Children are the executions whose ``parent_execution_id`` is this
one (an orchestrator's agents); the trace link comes from ``INSTRUMENT_TRACE_URL``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from instrument.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    console,
    database_url_option,
    json_option,
    pick,
    print_json,
    queries,
    reading,
    settings_for,
    store_call,
    url_flag,
)
from instrument.cli.layout import Col, Grid, show
from instrument.cli.render import executions_table, fmt, logs_table, tags, usd
from instrument.config import env
from instrument.stores import ExecutionFilter
from instrument.stores.lookups import execution_rows, id_bounds, log_rows

__all__ = ["show_execution", "trace_link"]

#: children listed at most (an orchestrator with more is rare; --json has the same bound)
_CHILDREN = 500

#: (label, columns joined) of the detail table, in order; a row whose values are all empty is
#: left out
_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("execution", ("id",)), ("parent", ("parent_execution_id",)),
    ("resumes", ("resumes_execution_id",)), ("agent", ("agent_id", "agent_name")),
    ("user", ("user_id",)), ("tenant", ("tenant_id",)), ("owner", ("owner_id",)),
    ("session", ("session_id",)), ("engine", ("engine", "execution_type")),
    ("status", ("status",)), ("started", ("started_at",)), ("completed", ("completed_at",)),
    ("duration ms", ("execution_duration_ms",)),
    ("model", ("model", "request_model", "provider", "service_tier")),
    ("tokens", ("input_tokens", "output_tokens", "total_tokens")),
    ("cache write tokens", ("cache_write_input_tokens",)),
    ("cost $", ("cost_usd", "price_source")), ("tags", ("tags",)), ("metadata", ("metadata",)),
    ("error", ("error_type", "error_message")), ("trace / span", ("trace_id", "span_id")),
    ("input", ("input",)),
)


def trace_link(trace_id: str | None) -> str | None:
    """The trace's URL from ``INSTRUMENT_TRACE_URL`` (a template with ``{trace_id}``, or a
    Jaeger UI base URL), or None when either is missing."""
    base = env("INSTRUMENT_TRACE_URL")
    if not trace_id or not base:
        return None
    if "{trace_id}" in base:
        return base.replace("{trace_id}", trace_id)
    return f"{base.rstrip('/')}/trace/{trace_id}"


_TOKEN_LABELS = {"input_tokens": "in", "output_tokens": "out", "total_tokens": "total"}


def _cell(column: str, value: Any) -> str:
    if column in _TOKEN_LABELS:
        return f"{_TOKEN_LABELS[column]} {fmt(value)}"
    if column == "cost_usd":
        return usd(value)
    if column == "tags":
        return tags(value)
    if column == "model" and value is not None:
        return str(value)
    if column == "request_model" and value is not None:
        return f"(asked {value})"
    if isinstance(value, str) and column == "metadata":
        return value
    return fmt(value)


def detail_table(row: Mapping[str, Any], title: str) -> Grid:
    """One execution as label/value lines (values wrap; piped, every value is whole)."""
    grid = Grid(title, (Col("field"), Col("value", wrap=30)))
    for label, columns in _FIELDS:
        values = [row.get(c) for c in columns]
        if all(v is None or v == "" for v in values):
            continue
        if label == "tokens":  # every kind, "–" where unmeasured (never 0)
            grid.add(label, ", ".join(_cell(c, v) for c, v in zip(columns, values, strict=True)))
            continue
        grid.add(label, " ".join(_cell(c, v) for c, v in zip(columns, values, strict=True)
                                 if v is not None and v != ""))
    return grid


@click.command("show")
@database_url_option
@json_option
@click.argument("execution_id", metavar="EXECUTION_ID")
def show_execution(database_url: str | None, as_json: bool, execution_id: str) -> int:
    """One execution with its children, its agent_logs row and its trace.

    EXECUTION_ID is the whole id or its first characters, as `instrument tail` prints them.
    """
    try:
        id_bounds(execution_id)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    settings = settings_for(database_url)
    with reading(settings, url_flag(database_url)) as store:
        found = store_call(store, lambda: execution_rows(store, execution_id))
        if len(found) != 1:
            raise _not_one(execution_id, found, store.display_url)
        row = found[0]
        ident = str(row["id"])
        reader = queries(store)
        children = store_call(store, lambda: reader.recent_executions(
            _CHILDREN, ExecutionFilter(parent_execution_id=ident)))
        logs = store_call(store, lambda: log_rows(store, ident))
        url = store.display_url
    children.sort(key=lambda r: str(pick(r, "started_at") or ""))
    link = trace_link(row.get("trace_id"))
    if as_json:
        print_json({"database": url, "execution": row, "children": children, "logs": logs,
                    "trace": {"trace_id": row.get("trace_id"), "url": link}})
        return EXIT_OK
    out = console()
    show(out, detail_table(row, f"Execution {ident} in {url}"))
    if children:
        show(out, executions_table(children, title=f"Children ({len(children)}): executions "
                                                   "started inside this one"))
    else:
        out.print("Children: none (no execution has this one as parent_execution_id).",
                  markup=False)
    if logs:
        show(out, logs_table(logs, title="agent_logs"))
    else:
        out.print("agent_logs: no row (the logs writer is off, or the record is still in the "
                  "spool).", markup=False)
    trace = row.get("trace_id")
    if trace and link:  # the link on a line of its own: a terminal keeps it clickable
        out.print(f"Trace {trace}:", markup=False)
        out.print(link, markup=False, soft_wrap=True, highlight=False)
    elif trace:
        out.print(f"Trace {trace} (set INSTRUMENT_TRACE_URL, e.g. http://localhost:16686, to "
                  "get a link to your tracing UI).", markup=False)
    else:
        out.print("Trace: none recorded (spans were off for this execution).", markup=False)
    return EXIT_OK


def _not_one(given: str, found: list[dict[str, Any]], url: str) -> CliError:
    if not found:
        return CliError(f"no execution {given!r} in {url}; copy an id from `instrument tail` "
                        "(the first 8 characters are enough)", EXIT_USAGE)
    ids = ", ".join(str(r["id"]) for r in found[:5])
    more = " and more" if len(found) > 5 else ""
    return CliError(f"{given!r} matches several executions in {url} ({ids}{more}); give more "
                    "characters of the id", EXIT_USAGE)
