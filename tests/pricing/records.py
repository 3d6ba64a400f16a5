"""Records to price: one execution with the given model, provider, tokens and tier."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from instrument.record import ExecutionRecord, ExecutionResult, TokenUsage

#: after every price change the bundled data knows of for the models below (Oct/Nov 2026)
AT = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def priced_record(model: str | None, provider: str | None = None, *,
                  tokens: TokenUsage | None = None, tier: str | None = None,
                  at: datetime = AT, agent_id: str = "agent-1", **result: Any
                  ) -> ExecutionRecord:
    return ExecutionRecord(
        execution_id=uuid.uuid4(), agent_id=agent_id, user_id="u1", engine="mapping",
        name="run", started_at=at, completed_at=at, duration_ms=1.0,
        result=ExecutionResult(success=True, model=model, provider=provider, tokens=tokens,
                               service_tier=tier, **result))


def tok(inp: int | None, out: int | None, *, cached: int | None = None,
        write: int | None = None, reasoning: int | None = None) -> TokenUsage:
    return TokenUsage(input_tokens=inp, output_tokens=out, cached_input_tokens=cached,
                      cache_write_input_tokens=write, reasoning_tokens=reasoning)


def per_mtok(*pairs: tuple[int, str]) -> Decimal:
    """A hand computation: sum of tokens x USD-per-million, exactly."""
    return sum((n * Decimal(usd) for n, usd in pairs), Decimal(0)) / Decimal(1_000_000)
