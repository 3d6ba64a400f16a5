"""What the ``google_genai`` and ``google_adk`` adapters share: Gemini usage, parts, tool calls.

Nothing here imports ``google.genai``: objects are read by attribute (and enums by their
``value`` or ``name``), so a foreign or partial object yields ``None`` ("not measured").

Gemini's ``usage_metadata`` counts differently from the record, and is converted here:

- ``prompt_token_count`` already includes ``cached_content_token_count``; the tool results fed
  back to the model are counted apart, in ``tool_use_prompt_token_count``. The record's input
  is their sum (the model read both), with ``cached_input_tokens`` the cached part.
- ``candidates_token_count`` EXCLUDES ``thoughts_token_count``. The record's output is their
  sum, with ``reasoning_tokens`` the thoughts.
- ``total_token_count`` is the sum of all four, so it equals input + output.
- Gemini reports no cache writes (a cache is created by its own API call), so
  ``cache_write_input_tokens`` is ``None``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable
from typing import Any, Final

from instrument.adapters._coerce import MAX_NAME, MAX_TEXT, error_text, to_count, to_str
from instrument.record import TokenUsage, ToolCall

__all__ = [
    "SUCCESS_FINISH",
    "CallLedger",
    "enum_name",
    "get",
    "model_provider",
    "service_tier",
    "sum_usage",
    "text_of",
    "usage_of",
]

#: Finish reasons of an answer that is not a failure: a natural stop, not stopped yet, or
#: cut for automatic continuation (the SDK sends the follow-up itself). Every other reason
#: (SAFETY, MAX_TOKENS, RECITATION, MALFORMED_FUNCTION_CALL, ...) is a failed answer.
SUCCESS_FINISH: Final = frozenset({"STOP", "FINISH_REASON_UNSPECIFIED", "CONTINUATION"})

#: Vertex AI's ``traffic_type`` as the record's service tier.
_TRAFFIC_TIERS: Final = {
    "ON_DEMAND": "standard", "ON_DEMAND_PRIORITY": "priority", "ON_DEMAND_FLEX": "flex",
    "ON_DEMAND_OFFPEAK": "offpeak", "PROVISIONED_THROUGHPUT": "provisioned",
}


def get(obj: object, name: str) -> Any:
    """``getattr(obj, name, None)`` that never raises (a hostile property is "absent")."""
    try:
        return getattr(obj, name, None)
    except Exception:  # foreign objects must not break normalization
        return None


def enum_name(value: object) -> str | None:
    """An enum's value (``FinishReason.SAFETY`` -> ``"SAFETY"``), or a plain string."""
    if isinstance(value, str):
        return to_str(value, MAX_NAME)
    inner = get(value, "value")
    if isinstance(inner, str):
        return to_str(inner, MAX_NAME)
    return to_str(get(value, "name"), MAX_NAME)


def usage_of(usage: object) -> TokenUsage | None:
    """One response's ``GenerateContentResponseUsageMetadata`` in the record's definition."""
    if usage is None:
        return None
    prompt = to_count(get(usage, "prompt_token_count"))
    tool_prompt = to_count(get(usage, "tool_use_prompt_token_count"))
    candidates = to_count(get(usage, "candidates_token_count"))
    thoughts = to_count(get(usage, "thoughts_token_count"))
    inp = None if prompt is None else prompt + (tool_prompt or 0)
    out = None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    total = to_count(get(usage, "total_token_count"))
    if total is None and inp is not None and out is not None:
        total = inp + out
    tokens = TokenUsage(input_tokens=inp, output_tokens=out, total_tokens=total,
                        cached_input_tokens=to_count(get(usage, "cached_content_token_count")),
                        reasoning_tokens=thoughts)
    return None if tokens == TokenUsage() else tokens


def sum_usage(parts: Iterable[TokenUsage | None]) -> TokenUsage | None:
    """Usage added up over model requests. A field stays ``None`` only when no request
    reported it (Gemini leaves out a count that is zero, e.g. no thoughts)."""
    found = [u for u in parts if u is not None]
    if not found:
        return None

    def total(name: str) -> int | None:
        values = [v for v in (getattr(u, name) for u in found) if v is not None]
        return sum(values) if values else None

    return TokenUsage(input_tokens=total("input_tokens"), output_tokens=total("output_tokens"),
                      total_tokens=total("total_tokens"),
                      cached_input_tokens=total("cached_input_tokens"),
                      reasoning_tokens=total("reasoning_tokens"))


def service_tier(usage: object) -> str | None:
    """The tier Vertex AI reports as ``traffic_type`` (the Gemini API reports none)."""
    traffic = enum_name(get(usage, "traffic_type"))
    if traffic is None or traffic == "TRAFFIC_TYPE_UNSPECIFIED":
        return None
    return _TRAFFIC_TIERS.get(traffic, traffic.lower())


def model_provider(model: str | None) -> str | None:
    """``gcp.gen_ai`` for a Gemini model (the response does not say whether the Gemini API or
    Vertex AI answered: the GenAI conventions' name for "Google, backend unknown")."""
    if model is not None and "gemini" in model.lower():
        return "gcp.gen_ai"
    return None


def text_of(content: object) -> str | None:
    """The answer text of a ``Content``: its non-thought text parts, joined."""
    parts = get(content, "parts")
    if not isinstance(parts, list):
        return None
    texts = [p for p in (get(part, "text") for part in parts if get(part, "thought") is not True)
             if isinstance(p, str)]
    return to_str("".join(texts), MAX_TEXT) if texts else None


def _tool_error(response: object) -> str | None:
    """The error a function response reports (the ``error`` key, by the API's convention).

    google-genai's automatic function calling words it ``Failed to invoke function f with
    converted arguments {...} ... because of error E``: only ``E`` is kept, never the
    arguments.
    """
    if not isinstance(response, dict) or not response.get("error"):
        return None
    message = error_text(response.get("error")) or "error"
    marker = "because of error "
    cut = message.rfind(marker)
    return message[cut + len(marker):] if cut >= 0 else message


class CallLedger:
    """Tool calls in order of appearance, matched to their responses by id (else by name,
    oldest open call first)."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def call(self, function_call: object, at: _dt.datetime | None = None) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": to_str(get(function_call, "name"), MAX_NAME) or "tool",
            "call_id": to_str(get(function_call, "id"), MAX_NAME), "success": None,
            "error": None, "started_at": at, "duration_ms": None, "answered": False,
        }
        self.calls.append(entry)
        return entry

    def response(self, function_response: object, at: _dt.datetime | None = None
                 ) -> dict[str, Any] | None:
        rid = to_str(get(function_response, "id"), MAX_NAME)
        name = to_str(get(function_response, "name"), MAX_NAME)
        entry = next((c for c in self.calls if not c["answered"] and rid is not None
                      and c["call_id"] == rid), None)
        if entry is None:
            entry = next((c for c in self.calls if not c["answered"] and c["name"] == name),
                         None)
        if entry is None:
            return None
        entry["answered"] = True
        error = _tool_error(get(function_response, "response"))
        entry["success"] = error is None
        entry["error"] = error
        started = entry["started_at"]
        if at is not None and started is not None and at >= started:
            entry["duration_ms"] = (at - started).total_seconds() * 1000
        return entry

    def tool_calls(self, timed: bool = False) -> list[ToolCall]:
        return [ToolCall(name=c["name"], call_id=c["call_id"], success=c["success"],
                         error=c["error"],
                         duration_ms=c["duration_ms"] if timed else None,
                         started_at=c["started_at"] if timed else None)
                for c in self.calls]
