"""`instrument stats` and `instrument tail`: read what the writers stored."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import click

from instrument.adapters.registry import available_adapters
from instrument.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    ais_config_source,
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
from instrument.cli.layout import show
from instrument.cli.render import agents_table, ais_table, executions_table
from instrument.cli.summary import agent_summaries, dynamic_ranges
from instrument.cli.usage import BY_COLUMN, aggregate, day_range, usage_table
from instrument.cli.when import AGE_HELP, When
from instrument.config import Settings
from instrument.stores import AISConfigSource, ExecutionFilter, ExecutionQueries, Store
from instrument.stores.lookups import ledger_rows

__all__ = ["stats", "tail"]


def _unknown_agent(agent_id: str, known: Sequence[str]) -> CliError:
    hint = f"known agents: {', '.join(known[:10])}" if known else "no agent has runs yet"
    return CliError(
        f"unknown agent {agent_id!r}: no executions recorded for it ({hint}); "
        "check the id with `instrument tail`", EXIT_USAGE,
    )


def _since_until(f: Any) -> Any:
    f = click.option("--until", type=When(), default=None, metavar="WHEN",
                     help=f"Only before this time: {AGE_HELP}.")(f)
    return click.option("--since", type=When(), default=None, metavar="WHEN",
                        help=f"Only from this time on: {AGE_HELP}.")(f)


def _check_window(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise CliError(f"--since ({since:%Y-%m-%d %H:%M:%S} UTC) must be before --until "
                       f"({until:%Y-%m-%d %H:%M:%S} UTC)", EXIT_USAGE)


@click.command()
@database_url_option
@json_option
@click.option("--agent", "agent_id", metavar="AGENT_ID", default=None, help="Only this agent.")
@click.option("--by", type=click.Choice(sorted(BY_COLUMN)), default=None,
              help="Usage per user, tenant or agent from usage_ledger: runs, outcomes, tokens, "
              "cost and unpriced runs.")
@_since_until
@click.option("--recompute-ranges", is_flag=True,
              help="Score with dynamic ranges (95th percentile across agents) computed now, "
              "instead of the best-practice ranges.")
def stats(database_url: str | None, as_json: bool, agent_id: str | None, by: str | None,
          since: datetime | None, until: datetime | None, recompute_ranges: bool) -> int:
    """Per-agent runs, success rate, tokens, duration and intensity (AIS) scores; with --by,
    --since or --until, usage per user, tenant or agent from the usage ledger (whole days)."""
    _check_window(since, until)
    settings = settings_for(database_url)
    if by is not None or since is not None or until is not None:
        if recompute_ranges:
            raise CliError("--recompute-ranges scores agents over all their runs; it does not "
                           "combine with --by, --since or --until", EXIT_USAGE)
        return _usage(settings, url_flag(database_url), as_json, by or "agent", agent_id,
                      since, until)
    with reading(settings, url_flag(database_url)) as store:
        reader = queries(store)
        stats_rows = store_call(store, reader.agent_stats)
        intensity_rows = store_call(store, lambda: reader.intensity_metrics(None))
        # re-scoring uses the database's weights, tiers and percentile, not the code's defaults;
        # the minimum runs and the blend shown under the table are the database's too
        base = (store_call(store, ais_config_source(store).ais_config)
                if recompute_ranges or isinstance(store, AISConfigSource) else None)
        url = store.display_url
    ranges = dynamic_ranges(intensity_rows, base) if recompute_ranges else None
    note = None
    if recompute_ranges and not ranges:
        ranges = None
        note = ("dynamic ranges need at least 10 executions across agents; "
                "scored with the best-practice ranges")
    summaries = agent_summaries(stats_rows, intensity_rows, ranges, base)
    if agent_id is not None:
        known = [s["agent_id"] for s in summaries]
        summaries = [s for s in summaries if s["agent_id"] == agent_id]
        if not summaries:
            raise _unknown_agent(agent_id, known)
    if as_json:
        data: dict[str, Any] = {"database": url, "ranges": ranges if ranges is not None
                                else "best-practice", "agents": summaries}
        if note:
            data["note"] = note
        print_json(data)
        return EXIT_OK
    out = console()
    if not summaries:
        out.print(f"No executions recorded yet in {url}. Run `instrument demo`, or call a "
                  "function decorated with @logged_execution.")
        return EXIT_OK
    if note:
        out.print(f"Note: {note}.")
    elif ranges:
        out.print("Scored with dynamic ranges: "
                  + ", ".join(f"{k} {lo:g}-{hi:g}" for k, (lo, hi) in sorted(ranges.items())))
    show(out, agents_table(summaries, title=f"Agents in {url}"))
    show(out, ais_table(summaries))
    return EXIT_OK


def _usage(settings: Settings, flag: str, as_json: bool, by: str, agent_id: str | None,
           since: datetime | None, until: datetime | None) -> int:
    first, end = day_range(since, until)
    with reading(settings, flag) as store:
        rows = store_call(store, lambda: ledger_rows(store, first, end))
        known = (sorted({str(r["agent_id"]) for r in store_call(
            store, queries(store).agent_stats) if r.get("agent_id")})
            if agent_id is not None else [])
        url = store.display_url
    if agent_id is not None and agent_id not in known:
        raise _unknown_agent(agent_id, known)
    summaries = aggregate(rows, by, agent_id)
    days = (f"{first.isoformat() if first else 'the first day'} to "
            f"{(end - timedelta(days=1)).isoformat() if end else 'today'} (UTC days)")
    if as_json:
        print_json({"database": url, "by": by, "days": {
            "from": first.isoformat() if first else None,
            "until": end.isoformat() if end else None}, "rows": summaries})
        return EXIT_OK
    out = console()
    if not summaries:
        out.print(f"No usage recorded in {url} from {days}.", markup=False)
        return EXIT_OK
    show(out, usage_table(summaries, by, f"Usage per {by} in {url}, {days}"))
    return EXIT_OK


def _row_id(row: Mapping[str, Any]) -> str:
    return str(pick(row, "id", "execution_id"))


def _chronological(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: str(pick(r, "started_at", "created_at") or ""))


def _emit(rows: Sequence[Mapping[str, Any]], as_json: bool, *, header: bool) -> None:
    if as_json:
        for r in rows:
            click.echo(json.dumps(r, default=str, separators=(",", ":")))
        return
    show(console(), executions_table(rows), header=header)


def _check_filters(store: Store, reader: ExecutionQueries, where: ExecutionFilter) -> None:
    """An empty result for an agent or engine nobody has seen is a typo: say so."""
    if where.agent_id is not None:
        stats_rows = store_call(store, reader.agent_stats)
        known = sorted({str(r["agent_id"]) for r in stats_rows if r.get("agent_id")})
        if where.agent_id not in known:
            raise _unknown_agent(where.agent_id, known)
    if where.engine is not None and where.engine not in available_adapters():
        raise CliError(f"unknown engine {where.engine!r}; engines here: "
                       f"{', '.join(available_adapters())}", EXIT_USAGE)


@click.command()
@database_url_option
@json_option
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(1, 10_000),
              help="How many recent executions to show.")
@click.option("--agent", "agent_id", metavar="AGENT_ID", default=None, help="Only this agent.")
@click.option("--user", "user_id", metavar="USER_ID", default=None, help="Only this user.")
@click.option("--tenant", "tenant_id", metavar="TENANT_ID", default=None,
              help="Only this tenant.")
@click.option("--status", type=click.Choice(["completed", "failed", "paused", "refused"]),
              default=None, help="Only executions with this status.")
@click.option("--engine", metavar="ENGINE", default=None,
              help="Only this engine (orchestrator, agentkit, openai_agents, ...).")
@click.option("--tag", metavar="TAG", default=None, help="Only executions with this tag.")
@_since_until
@click.option("-f", "--follow", is_flag=True, help="Keep printing new executions as they land.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(0.05, 3600),
              help="With --follow: seconds between polls.")
@click.option("--timeout", default=None, type=click.FloatRange(0), metavar="SECONDS",
              help="With --follow: stop after SECONDS (default: until Ctrl-C).")
def tail(database_url: str | None, as_json: bool, limit: int, agent_id: str | None,
         user_id: str | None, tenant_id: str | None, status: str | None, engine: str | None,
         tag: str | None, since: datetime | None, until: datetime | None, follow: bool,
         interval: float, timeout: float | None) -> int:
    """Recent executions, oldest first. --json prints one JSON object per line."""
    _check_window(since, until)
    settings = settings_for(database_url)
    where = ExecutionFilter(agent_id=agent_id, user_id=user_id, status=status, engine=engine,
                            tenant_id=tenant_id, tag=tag, since=since, until=until)
    with reading(settings, url_flag(database_url)) as store:
        reader = queries(store)
        rows = _chronological(store_call(store, lambda: reader.recent_executions(limit, where)))
        if not rows and not follow:
            _check_filters(store, reader, where)
            if not as_json:
                console().print(f"No executions match in {store.display_url}.")
            return EXIT_OK
        _emit(rows, as_json, header=True)
        if not follow:
            return EXIT_OK
        seen = {_row_id(r) for r in rows}
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while deadline is None or time.monotonic() < deadline:
                time.sleep(interval if deadline is None
                           else max(0.0, min(interval, deadline - time.monotonic())))
                batch = store_call(store,
                                   lambda: reader.recent_executions(max(limit, 200), where))
                new = [r for r in _chronological(batch) if _row_id(r) not in seen]
                if new:
                    seen.update(_row_id(r) for r in new)
                    _emit(new, as_json, header=False)
        except KeyboardInterrupt:
            return EXIT_OK
    return EXIT_OK
