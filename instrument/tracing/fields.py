"""The record's accounting fields on the span: tenant, owner, nesting, tags, metadata, tier
(and which model was asked, for the span and the duration metric alike).

None of these has a GenAI name (the registry's ``openai.response.service_tier`` belongs on an
OpenAI *inference* span, not on an invocation), so all of them go under our namespace:

- ``instrument.tenant_id``, ``instrument.owner_id``: who pays, whose agent it is;
- ``instrument.parent_execution_id``, ``instrument.resumes_execution_id``: the execution this
  one ran inside, and the paused one it continues (ids of ``agent_executions`` rows, so a
  trace leads to the rows and back even across traces, as a resumed run usually is);
- ``instrument.tags``: a string array;
- ``instrument.metadata.<key>``: one attribute per top-level key, flattened so a backend can
  filter on it (``instrument.metadata.plan=pro``). Strings, booleans, numbers and arrays of one
  of those kinds are kept as they are; anything else (objects, mixed arrays) becomes its JSON
  text;
- ``instrument.service_tier``.

Everything is bounded here, whatever the record holds: every attribute costs a validation
pass in the SDK on the caller's thread and a few hundred bytes in every exported batch, so a
runaway metadata mapping must not turn one span into megabytes. Cost and its price source are
computed in the background after the span has ended, so they are never on it (the rows carry
them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from opentelemetry.util.types import AttributeValue

from instrument.record import ExecutionRecord, ExecutionResult
from instrument.tracing import semconv as sc

__all__ = [
    "MAX_METADATA_KEYS",
    "MAX_METADATA_VALUE_CHARS",
    "MAX_TAGS",
    "asked_model",
    "put_identity",
    "put_metadata",
    "put_record_fields",
    "put_tags",
]

#: Tags kept on the span (the record keeps up to 64 of up to 256 characters as well).
MAX_TAGS: Final = 64
MAX_TAG_CHARS: Final = 256
#: Metadata keys that become attributes; the rest are counted in
#: ``instrument.metadata_keys_dropped``.
MAX_METADATA_KEYS: Final = 32
MAX_METADATA_KEY_CHARS: Final = 128
#: Longest metadata value (a string, or the JSON text of a structured value).
MAX_METADATA_VALUE_CHARS: Final = 1024
#: Items kept of a metadata array.
MAX_METADATA_ITEMS: Final = 64
METADATA_KEYS_DROPPED: Final = "instrument.metadata_keys_dropped"
_CUT: Final = "\u2026[truncated]"
_INT64: Final = 2**63


def asked_model(result: ExecutionResult) -> str | None:
    """The model that was asked for (``gen_ai.request.model``): ``result.request_model``, else
    what an adapter written before that field existed put in ``extras["request_model"]``."""
    if result.request_model is not None:
        return result.request_model
    legacy = result.extras.get("request_model") if result.extras else None
    return legacy if isinstance(legacy, str) else None


def put_identity(attrs: dict[str, AttributeValue], record: ExecutionRecord,
                 started: Mapping[str, Any] | None) -> None:
    """Tenant, owner, parent and resumed execution: those the span did not get at start."""
    for key, value in ((sc.TENANT_ID, record.tenant_id), (sc.OWNER_ID, record.owner_id),
                       (sc.PARENT_EXECUTION_ID, record.parent_execution_id),
                       (sc.RESUMES_EXECUTION_ID, record.resumes_execution_id)):
        if value is not None and (started is None or key not in started):
            attrs[key] = value if isinstance(value, str) else str(value)


def put_record_fields(attrs: dict[str, AttributeValue], record: ExecutionRecord,
                      started: Mapping[str, Any] | None) -> None:
    """Every field of this module's docstring that `record` has (absent ones stay absent)."""
    if (record.tenant_id is not None or record.owner_id is not None
            or record.parent_execution_id is not None
            or record.resumes_execution_id is not None):
        put_identity(attrs, record, started)
    if record.tags:
        put_tags(attrs, record.tags)
    if record.metadata:
        put_metadata(attrs, record.metadata)
    tier = record.result.service_tier
    if tier is not None:
        attrs[sc.SERVICE_TIER] = _cut(tier, MAX_TAG_CHARS)


def put_tags(attrs: dict[str, AttributeValue], tags: Iterable[str]) -> None:
    kept = [_cut(t, MAX_TAG_CHARS) for _, t in zip(range(MAX_TAGS), tags, strict=False)
            if isinstance(t, str)]
    if kept:
        attrs[sc.TAGS] = kept


def put_metadata(attrs: dict[str, AttributeValue], metadata: Mapping[str, Any]) -> None:
    dropped = 0
    for n, (key, value) in enumerate(metadata.items()):
        if n >= MAX_METADATA_KEYS:
            dropped = len(metadata) - MAX_METADATA_KEYS
            break
        encoded = _value(value)
        if encoded is not None:
            attrs[sc.METADATA_PREFIX + _cut(str(key), MAX_METADATA_KEY_CHARS)] = encoded
    if dropped:
        attrs[METADATA_KEYS_DROPPED] = dropped


def _value(value: Any) -> AttributeValue | None:
    """An attribute value for one metadata value; None (JSON null) is no attribute."""
    if value is None:
        return None
    if isinstance(value, str):
        return _cut(value, MAX_METADATA_VALUE_CHARS)
    if isinstance(value, bool | float):
        return value
    if isinstance(value, int):  # OTLP ints are 64-bit: a larger one is kept as text
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, list | tuple) and value:
        kind = type(value[0])
        if kind in (str, bool, float, int) and all(type(v) is kind for v in value):
            items = list(value[:MAX_METADATA_ITEMS])
            if kind is str:
                return [_cut(v, MAX_TAG_CHARS) for v in items]
            if kind is not int or all(-_INT64 <= v < _INT64 for v in items):
                return items
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):  # a circular structure: what it is, not what it holds
        text = f"<{type(value).__name__}>"
    return _cut(text, MAX_METADATA_VALUE_CHARS)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + _CUT
