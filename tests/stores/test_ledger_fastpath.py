"""Property: the SQLite ledger fast path merges a batch exactly as the reference does."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from instrument.record import ExecutionRecord
from instrument.stores.reference.executions import total_tokens
from instrument.stores.reference.ledger import merge_ledger
from instrument.stores.sqlite.ingest import decimal_text
from instrument.stores.sqlite.ledger import ledger_params, ledger_values
from tests.stores.test_sql_parity import records


def _fast(batch: list[ExecutionRecord]) -> list[tuple[object, ...]]:
    from instrument.stores.sqlite.ingest import _ts

    return ledger_params(
        ((r.tenant_id or "", r.user_id or "", r.agent_id or "", _ts(r.started_at)[:10]),
         ledger_values(r, total_tokens(r.result.tokens))) for r in batch)


def _reference(batch: list[ExecutionRecord]) -> list[tuple[object, ...]]:
    return [
        (*key[:3], key[3].isoformat(), d.runs, d.successes, d.failures, d.paused, d.refused,
         d.input_tokens, d.output_tokens, d.cached_input_tokens, d.reasoning_tokens,
         d.cache_write_input_tokens, d.total_tokens, decimal_text(d.cost_usd), d.unpriced_runs)
        for key, d in merge_ledger(batch).items()]


# few tenants, users and agents, so rows merge often
_KEYS = st.sampled_from([None, "a", "b"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(records(), _KEYS, _KEYS, _KEYS), max_size=12))
def test_the_fast_path_merges_as_the_reference(
        drawn: list[tuple[ExecutionRecord, str | None, str | None, str | None]]) -> None:
    batch = [r.model_copy(update={"tenant_id": t, "user_id": u, "agent_id": a})
             for r, t, u, a in drawn]
    assert _fast(batch) == _reference(batch)
