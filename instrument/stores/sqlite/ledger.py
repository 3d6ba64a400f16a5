"""The ``usage_ledger`` writer on SQLite: a batch's records merged per row, then one upsert.

Per record, :func:`ledger_values` reads the 13 values it adds (as a plain tuple: the batch
builder calls it for every record, before the write lock); :func:`ledger_params` merges a
batch's tuples per (tenant, user, agent, UTC day) key, in key order, and the store upserts
them with ``x = x + delta`` (sums of measured values stay NULL until one is measured; cost is
added exactly by ``instrument_decimal_add``, see :mod:`instrument.stores.sqlite.money`). The
rows equal the reference, :mod:`instrument.stores.reference.ledger` (a property test holds
them together).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from instrument.record import ExecutionRecord
from instrument.stores.reference.ledger import EXACT

__all__ = ["UPSERT_LEDGER", "LedgerRow", "ledger_params", "ledger_values"]

#: (tenant_id, user_id, agent_id, day as YYYY-MM-DD) and the 13 values a record adds.
LedgerRow = tuple[tuple[str, str, str, str], tuple[object, ...]]

_COUNTERS = ("runs", "successes", "failures", "paused", "refused")
_SUMS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens",
         "cache_write_input_tokens", "total_tokens")
UPSERT_LEDGER = (
    "INSERT INTO usage_ledger AS l (tenant_id, user_id, agent_id, day, "
    + ", ".join((*_COUNTERS, *_SUMS, "cost_usd", "unpriced_runs"))
    + ", updated_at) VALUES (" + ", ".join("?" * 17)
    + ", strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) "
    "ON CONFLICT (tenant_id, user_id, agent_id, day) DO UPDATE SET "
    + ", ".join(f"{c} = l.{c} + excluded.{c}" for c in (*_COUNTERS, "unpriced_runs"))
    + ", " + ", ".join(f"{c} = coalesce(l.{c} + excluded.{c}, l.{c}, excluded.{c})"
                       for c in _SUMS)
    + ", cost_usd = coalesce(instrument_decimal_add(l.cost_usd, excluded.cost_usd), "
    "l.cost_usd, excluded.cost_usd), updated_at = excluded.updated_at"
)
_REFUSED: tuple[object, ...] = (0, 0, 0, 0, 1, None, None, None, None, None, None, None, 0)


def ledger_values(record: ExecutionRecord, total: int | None) -> tuple[object, ...]:
    """What `record` adds to its row (``total`` is its total_tokens, computed already):
    runs, successes, failures, paused, refused, the six token sums, cost, unpriced runs."""
    r = record.result
    if r.refused:
        return _REFUSED
    tokens = r.tokens
    cost = r.cost_usd
    paused = r.paused
    ok = r.success
    if tokens is None:
        inp = out = cached = reasoning = cwrite = None
    else:
        inp, out = tokens.input_tokens, tokens.output_tokens
        cached, reasoning = tokens.cached_input_tokens, tokens.reasoning_tokens
        cwrite = tokens.cache_write_input_tokens
    return (1, int(ok and not paused), int(not ok and not paused), int(paused), 0,
            inp, out, cached, reasoning, cwrite, total, cost, int(cost is None))


def ledger_params(rows: Iterable[LedgerRow]) -> list[tuple[object, ...]]:
    """``UPSERT_LEDGER`` parameters: the rows merged per key, keys in sorted order."""
    merged: dict[tuple[str, str, str, str], list[object]] = {}
    for key, v in rows:
        acc = merged.get(key)
        if acc is None:
            merged[key] = list(v)
            continue
        for i in (0, 1, 2, 3, 4, 12):
            acc[i] += v[i]  # type: ignore[operator]
        for i in range(5, 11):
            x = v[i]
            if x is not None:
                y = acc[i]
                acc[i] = x if y is None else y + x  # type: ignore[operator]
        cost = v[11]
        if cost is not None:  # exact: 60 significant digits, as the database adds it
            acc[11] = cost if acc[11] is None else EXACT.add(acc[11], cost)  # type: ignore[arg-type]
    return [(*key, *acc[:11], _decimal_text(acc[11]), acc[12])
            for key, acc in sorted(merged.items())]


def _decimal_text(value: object) -> str | None:
    """Plain decimal notation (never ``1E-7``), every digit kept."""
    if value is None:
        return None
    assert isinstance(value, Decimal)
    return format(value, "f")
