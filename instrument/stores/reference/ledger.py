"""Reference delta of the ``usage_ledger`` writer's effect: per (tenant, user, agent, UTC day)
counters and sums, applied as ``x = x + delta``.

The key is the record's ``tenant_id``, ``user_id`` (who ran it, unlike the per-agent tables'
owner) and ``agent_id``, ``''`` for an absent one (so the primary key stays unique), and the UTC
day of ``started_at``. ``runs`` counts executions that ran (completed, failed, paused); a
refused one (a budget stopped it before it ran) only adds ``refused``. Token and cost columns
are sums of the *measured* values: ``None`` until a run of the row measured one, never a made-up
0; ``cost_usd`` sums priced runs exactly (``Decimal``) and ``unpriced_runs`` counts the runs
without a cost.

Mirrored by ``instrument_ingest`` (postgres/sql/0006_accounting.sql) and the SQLite fast path
(:mod:`instrument.stores.sqlite.ingest`); parity tests hold both to this reference.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date
from decimal import Context, Decimal

from instrument.record import ExecutionRecord
from instrument.stores.reference.executions import total_tokens

__all__ = ["EXACT", "SUM_COLUMNS", "LedgerDelta", "LedgerKey", "ledger_delta", "ledger_key",
           "merge_ledger"]

#: Decimal arithmetic for cost sums: 60 significant digits, so sums stay exact (as PostgreSQL's
#: numeric and the SQLite store's decimal functions add them).
EXACT = Context(prec=60)

#: (tenant_id, user_id, agent_id, day): the row's primary key.
LedgerKey = tuple[str, str, str, date]


@dataclass(slots=True)
class LedgerDelta:
    """What one record (or a merged batch) adds to one ``usage_ledger`` row."""

    runs: int = 0
    successes: int = 0
    failures: int = 0
    paused: int = 0
    refused: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    reasoning_tokens: int | None = None
    cache_write_input_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: Decimal | None = None
    unpriced_runs: int = 0

    def add(self, other: LedgerDelta) -> None:
        """Add `other` in place: counters add; a sum stays ``None`` only if both are; cost
        adds exactly (:data:`EXACT`)."""
        for name in _COLUMNS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if theirs is None:
                continue
            if mine is None:
                setattr(self, name, theirs)
            else:
                setattr(self, name, EXACT.add(mine, theirs) if name == "cost_usd"
                        else mine + theirs)


#: The columns of a delta, in table order (after the key).
_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(LedgerDelta))
#: The nullable sums (tokens and cost).
SUM_COLUMNS: tuple[str, ...] = (
    "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens",
    "cache_write_input_tokens", "total_tokens", "cost_usd",
)


def ledger_key(record: ExecutionRecord) -> LedgerKey:
    """The record's row: its tenant, user and agent (``''`` when absent) and UTC day."""
    started = record.started_at
    day = (started.replace(tzinfo=UTC) if started.tzinfo is None
           else started.astimezone(UTC)).date()
    return (record.tenant_id or "", record.user_id or "", record.agent_id or "", day)


def ledger_delta(record: ExecutionRecord) -> LedgerDelta:
    """The record's contribution to its row."""
    r = record.result
    status = r.status
    if status == "refused":
        return LedgerDelta(refused=1)
    tokens = r.tokens
    return LedgerDelta(
        runs=1,
        successes=int(status == "completed"),
        failures=int(status == "failed"),
        paused=int(status == "paused"),
        input_tokens=None if tokens is None else tokens.input_tokens,
        output_tokens=None if tokens is None else tokens.output_tokens,
        cached_input_tokens=None if tokens is None else tokens.cached_input_tokens,
        reasoning_tokens=None if tokens is None else tokens.reasoning_tokens,
        cache_write_input_tokens=None if tokens is None else tokens.cache_write_input_tokens,
        total_tokens=total_tokens(tokens),
        cost_usd=r.cost_usd,
        unpriced_runs=int(r.cost_usd is None),
    )


def merge_ledger(records: Iterable[ExecutionRecord]) -> dict[LedgerKey, LedgerDelta]:
    """One delta per row, keys in sorted order (the lock order that avoids deadlocks)."""
    merged: dict[LedgerKey, LedgerDelta] = {}
    for record in records:
        key = ledger_key(record)
        delta = ledger_delta(record)
        known = merged.get(key)
        if known is None:
            merged[key] = delta
        else:
            known.add(delta)
    return {k: merged[k] for k in sorted(merged)}
