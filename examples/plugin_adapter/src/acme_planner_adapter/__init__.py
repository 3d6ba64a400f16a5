"""A logged-execution adapter for Acme Planner, the way a third party would write one.

An Acme Planner run returns a dict like::

    {"plan_id": "pl_1", "status": "done", "answer": "...",
     "usage": {"in": 120, "out": 30},
     "actions": [{"tool": "search", "ok": True, "ms": 12.5, "hits": 3, "args": {...}}],
     "rounds": 2, "error": None}

The adapter needs nothing from the SDK but the record models: no subclassing, just ``name``,
``matches`` and ``normalize``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from instrument.record import ErrorInfo, ExecutionResult, TokenUsage, ToolCall

__all__ = ["ADAPTER", "AcmePlannerAdapter"]


def _count(value: object) -> int | None:
    """A measured non-negative count, or None ("not measured") for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
        return None
    return int(value) if value >= 0 else None


def _ms(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    f = float(value)
    return f if math.isfinite(f) and f >= 0 else None


def _text(value: object) -> str | None:
    return value[:10_000] if isinstance(value, str) else None


class AcmePlannerAdapter:
    name = "acme_planner"

    def matches(self, result: object) -> bool:
        # Cheap and total: a dict with Acme's two signature keys. A foreign mapping's
        # __contains__ may raise; that just means "not ours".
        try:
            return isinstance(result, Mapping) and "plan_id" in result and "status" in result
        except Exception:
            return False

    def normalize(self, result: object) -> ExecutionResult:
        if not isinstance(result, Mapping):
            raise TypeError(f"acme_planner needs a plan run mapping, got {type(result).__name__}")
        status = result.get("status")
        error = _text(result.get("error"))
        usage = result.get("usage")
        tokens = None
        if isinstance(usage, Mapping):
            inp, out = _count(usage.get("in")), _count(usage.get("out"))
            total = inp + out if inp is not None and out is not None else None
            tokens = TokenUsage(input_tokens=inp, output_tokens=out, total_tokens=total)
        calls = None
        actions = result.get("actions")
        if isinstance(actions, list):
            calls = [self._call(a) for a in actions if isinstance(a, Mapping)]
        extras: dict[str, Any] = {}
        plan_id = _text(result.get("plan_id"))
        if plan_id is not None:
            extras["plan_id"] = plan_id
        return ExecutionResult(
            success=status == "done",
            error=ErrorInfo(type="AcmePlannerError", message=error) if error else None,
            tokens=tokens,
            iterations=_count(result.get("rounds")),
            tool_calls=calls,
            provider="acme",
            response=_text(result.get("answer")),
            extras=extras,
        )

    @staticmethod
    def _call(action: Mapping[str, Any]) -> ToolCall:
        ok = action.get("ok")
        # Metadata only: the action's "args" (a payload) never leave this function.
        return ToolCall(
            name=_text(action.get("tool")) or "unknown",
            success=ok if isinstance(ok, bool) else None,
            duration_ms=_ms(action.get("ms")),
            items_returned=_count(action.get("hits")),
        )


ADAPTER = AcmePlannerAdapter()
