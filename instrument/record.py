"""The execution record: one immutable, versioned, JSON-safe model per executor call.

`None` always means "not measured". Writers and the intensity score treat it as unknown,
never as zero, so an engine that does not report a number never gets a made-up one.

The record is bounded at the door (see docs/reliability.md, "Faults and what the SDK does"):

* text is valid Unicode: a lone surrogate, which no UTF-8 encoder accepts, becomes U+FFFD
  (:func:`clean_text`);
* identity values and names are at most :data:`MAX_KEY_CHARS` characters; a longer one is kept
  whole as a prefix and its SHA-256 (:func:`bounded_key`), so it still groups and fits every
  index; error messages and response text are cut at :data:`MAX_MESSAGE_CHARS` /
  :data:`MAX_RESPONSE_CHARS` (:func:`bounded_text`) before anything scans them;
* a count outside ``0 ..`` :data:`MAX_COUNT` (a negative token count, say) is refused: it
  becomes ``None`` (unmeasured), with a log line naming the field.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal, TypeVar
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationInfo

from instrument.ratelimit import RateLimiter, held_back

__all__ = [
    "MAX_COUNT",
    "MAX_KEY_CHARS",
    "MAX_MESSAGE_CHARS",
    "MAX_RESPONSE_CHARS",
    "SCHEMA_VERSION",
    "ErrorInfo",
    "ExecutionRecord",
    "ExecutionResult",
    "MemoryUsage",
    "Status",
    "StepCounts",
    "TokenUsage",
    "ToolCall",
    "WorkflowShape",
    "bounded_key",
    "bounded_text",
    "clean_text",
    "usd_amount",
]

_log = logging.getLogger(__name__)

#: Version of the record layout. Bumped on any incompatible change; spooled records carry it.
SCHEMA_VERSION: Literal[1] = 1

#: Longest identity value or name kept as is (agent_id, user_id, agent_name, session_id,
#: execution_type, the operation name). 256 characters are at most 1 KiB of UTF-8, well
#: inside a PostgreSQL btree entry (about 2,700 bytes).
MAX_KEY_CHARS: Final = 256
#: Longest error message kept (an exception's text, a tool call's error); 64 Ki characters.
MAX_MESSAGE_CHARS: Final = 65_536
#: Longest response text kept when content capture is on; 64 Ki characters.
MAX_RESPONSE_CHARS: Final = 65_536
#: Largest count a store can hold (a signed 64-bit integer: PostgreSQL ``bigint``).
MAX_COUNT: Final = 2**63 - 1

_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_ELLIPSIS: Final = "\u2026"
_DIGEST_CHARS: Final = 64  # sha256, hex


def clean_text(value: str) -> str:
    """`value` as a plain ``str`` that every UTF-8 encoder accepts: each lone surrogate (what
    ``surrogateescape`` decoding or a broken JSON parser leaves behind) becomes U+FFFD."""
    if type(value) is not str:
        value = str.__str__(value)  # a str subclass may override slicing or encoding
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", value)
    return value


def usd_amount(value: object, bad: Exception) -> Decimal:
    """An amount of USD as an exact Decimal: a non-negative finite int, float (through its
    shortest repr, so 0.15 is 0.15), decimal string or Decimal; anything else raises `bad`."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise bad
    if isinstance(value, float) and not math.isfinite(value):
        raise bad
    try:
        usd = Decimal(repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        raise bad from None
    if not usd.is_finite() or usd < 0:
        raise bad
    return usd


def bounded_key(value: str) -> str:
    """An identity value or name as stored: clean text of at most :data:`MAX_KEY_CHARS`.

    A longer value keeps its first characters, then ``…`` and the SHA-256 of the whole value,
    so equal long values still get equal keys and different ones different keys.
    """
    text = clean_text(value)
    if len(text) <= MAX_KEY_CHARS:
        return text
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{text[:MAX_KEY_CHARS - _DIGEST_CHARS - 1]}{_ELLIPSIS}{digest}"


#: Room for a cut marker: text that an adapter already cut at the same limit (with its own
#: marker) is not cut again.
_MARKER_ROOM: Final = 64


def bounded_text(value: str, limit: int) -> str:
    """Clean text of at most `limit` characters plus a marker saying how many were cut.

    Cuts first, so cleaning (and the redaction that follows it) only ever scans what is kept.
    Text up to `limit` + 64 characters is kept whole: it was cut (and marked) upstream.
    """
    if len(value) > limit + _MARKER_ROOM:
        value = f"{str.__str__(value)[:limit]}{_ELLIPSIS}[truncated {len(value) - limit} chars]"
    return clean_text(value)


_REFUSAL_LOG_INTERVAL_S: Final = 60.0
#: "Model.field" -> when it was last logged, and how many refusals were not logged since.
#: Plain dict updates: a race between threads can only miscount a suppressed refusal.
_refusals = RateLimiter(_REFUSAL_LOG_INTERVAL_S)


def _refuse(model: str, field: str, value: object) -> None:
    key = f"{model}.{field}"
    n = _refusals.admit(key)
    if n is None:
        return
    _log.warning(
        "logged-execution: %s=%r is out of range (counts and durations are between 0 and "
        "2**63-1); the record keeps it as unmeasured (None). Fix the adapter or executor that "
        "reports it.%s",
        key, value, held_back(n))


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="null")


def _refused(value: Any, info: ValidationInfo) -> None:
    """The last branch of :data:`Count`: a number that is not a count is unmeasured."""
    title = info.config.get("title") if info.config is not None else None
    _refuse(title or "record", info.field_name or "?", value)  # and the value becomes None


#: A count: an int in ``0 ..`` :data:`MAX_COUNT`, or None (unmeasured). Any other int is
#: refused (None, logged). The range check runs in pydantic-core; Python only on a refusal.
Count = Annotated[
    Annotated[int, Field(ge=0, le=MAX_COUNT)] | Annotated[int, AfterValidator(_refused)] | None,
    Field(union_mode="left_to_right")]
#: A duration in milliseconds: a float >= 0, or None; a negative (or NaN) one is refused.
Millis = Annotated[
    Annotated[float, Field(ge=0)] | Annotated[float, AfterValidator(_refused)] | None,
    Field(union_mode="left_to_right")]


#: What became of an execution: it ran to the end, it failed, it stopped to wait for a human
#: or an approval (``paused``), or a budget stopped it before it ran (``refused``).
Status = Literal["completed", "failed", "paused", "refused"]


class TokenUsage(_Frozen):
    """Token counts for one execution, in the GenAI conventions' definition.

    `input_tokens` includes cached reads (`cached_input_tokens`) and cache writes
    (`cache_write_input_tokens`); `output_tokens` includes reasoning (`reasoning_tokens`). An
    adapter converts a provider that counts otherwise (Anthropic's input excludes both cache
    kinds) to this definition.
    """

    input_tokens: Count = None
    output_tokens: Count = None
    total_tokens: Count = None
    cached_input_tokens: Count = None
    reasoning_tokens: Count = None
    cache_write_input_tokens: Count = None


class ErrorInfo(_Frozen):
    """Why an execution failed: the exception class (or engine error code) and a message."""

    type: str
    message: str


class ToolCall(_Frozen):
    """Metadata of one tool call. Arguments and results are never kept here (privacy)."""

    name: str
    plugin: str | None = None
    action: str | None = None
    call_id: str | None = None
    success: bool | None = None
    duration_ms: Millis = None
    started_at: datetime | None = None
    error: str | None = None
    items_returned: Count = None


class MemoryUsage(_Frozen):
    """Memory context injected into the run: its tokens, entry count and kinds."""

    tokens: Count = None
    entry_count: Count = None
    types: list[str] | None = None


class StepCounts(_Frozen):
    """Workflow step outcomes."""

    completed: Count = None
    failed: Count = None
    skipped: Count = None


class WorkflowShape(_Frozen):
    """Structural complexity of the workflow that ran."""

    steps: Count = None
    branches: Count = None
    loops: Count = None
    parallel: Count = None


class ExecutionResult(_Frozen):
    """An executor's return value, normalized by its engine adapter.

    Counts outside ``0 ..`` :data:`MAX_COUNT` (:data:`Count`), here and in its parts, are
    refused by validation: they become ``None``, with a log line naming the field.
    """

    #: The run did not fail. A paused run has ``success=True`` and ``paused=True``: it is not
    #: an error, and it is not counted as a success either (see :attr:`status`).
    success: bool
    error: ErrorInfo | None = None
    tokens: TokenUsage | None = None
    iterations: Count = None
    retries: Count = None
    tool_calls: list[ToolCall] | None = None
    #: The model that answered, as the provider reported it (``gpt-4o-mini-2025-01-01``).
    model: str | None = None
    #: The model that was asked for (``gpt-4o-mini``), when the engine says; may equal `model`.
    request_model: str | None = None
    provider: str | None = None
    #: The provider's service tier for the answer (``default``, ``priority``, ``flex``...).
    service_tier: str | None = None
    response: str | None = None
    #: The input (prompt), kept only under the content policy, like `response`.
    input: str | None = None
    #: The run stopped to wait for a human or an approval (interruptions, interrupts).
    paused: bool = False
    #: A budget stopped the run before the executor ran; set by the SDK, never by adapters.
    refused: bool = False
    #: What the run cost in USD, priced in the background (never on the call path); None when
    #: the model or its usage is unknown ("unpriced", never 0).
    cost_usd: Decimal | None = None
    #: Where the price came from: ``genai-prices 0.2.3``, ``user``.
    price_source: str | None = None
    memory: MemoryUsage | None = None
    steps: StepCounts | None = None
    workflow: WorkflowShape | None = None
    #: Time spent orchestrating tools/steps, when the engine measures it (AIS plugin component).
    orchestration_ms: Millis = None
    extras: dict[str, JsonValue] = Field(default_factory=dict)

    @property
    def status(self) -> Status:
        """``refused``, ``paused``, ``completed`` or ``failed``, in that order of precedence."""
        if self.refused:
            return "refused"
        if self.paused:
            return "paused"
        return "completed" if self.success else "failed"

    @property
    def plugins(self) -> frozenset[str]:
        """Distinct plugins used by the tool calls (empty when none were reported)."""
        if not self.tool_calls:
            return frozenset()
        return frozenset(c.plugin for c in self.tool_calls if c.plugin)


class ExecutionRecord(_Frozen):
    """One execution, whatever its engine: what every writer and the span are built from."""

    schema_version: int = SCHEMA_VERSION
    execution_id: UUID
    agent_id: str | None = None
    user_id: str | None = None
    agent_name: str | None = None
    session_id: str | None = None
    #: Who pays (a tenant, an organization); optional.
    tenant_id: str | None = None
    #: Whose agent it is: the per-agent tables' `user_id`. None: readable by the service only.
    owner_id: str | None = None
    #: The execution this one ran inside (an orchestrator calling agents), set automatically.
    parent_execution_id: UUID | None = None
    #: The paused execution this run continues (``resumes=`` on the decorator).
    resumes_execution_id: UUID | None = None
    tags: tuple[str, ...] | None = None
    metadata: dict[str, JsonValue] | None = None
    execution_type: str = "manual"
    engine: str
    #: Operation name: the decorator's `name=`, else the agent name, else the function qualname.
    name: str
    started_at: datetime
    completed_at: datetime
    duration_ms: float
    trace_id: str | None = None
    span_id: str | None = None
    result: ExecutionResult
    #: Writers this record is destined for; `None` means every configured writer.
    writers: tuple[str, ...] | None = None

    @property
    def status(self) -> Status:
        return self.result.status

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe dict (UUIDs and datetimes as strings, NaN/inf as null), as sent to stores.

        Goes through the JSON encoder so a stray NaN in user-supplied extras can never reach a
        database that rejects it (Postgres jsonb refuses NaN for the whole batch).
        """
        return json.loads(self.model_dump_json())  # type: ignore[no-any-return]


_ModelT = TypeVar("_ModelT", bound=BaseModel)
_FIELD_SETS: dict[type[BaseModel], set[str]] = {}


def construct(cls: type[_ModelT], values: dict[str, Any]) -> _ModelT:
    """Build a model from values *we* produced, skipping validation (hot path only).

    `values` must hold every field of `cls` with already-correct types; this is ~5x cheaper than
    ``model_construct``. Anything built from user data goes through ``model_validate`` instead.
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    fields = _FIELD_SETS.get(cls)
    if fields is None:
        fields = _FIELD_SETS[cls] = set(cls.model_fields)
    # Every field is set, so every such model can share one set: pydantic only ever copies
    # it (model_copy) before changing it, and adding a name it holds already changes nothing.
    object.__setattr__(obj, "__pydantic_fields_set__",
                       fields if len(values) == len(fields) else set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def exception_text(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when the exception's own ``__str__`` raises."""
    try:
        return str(exc)
    except Exception:  # a hostile __str__ must not turn into our error
        return f"<unprintable {type(exc).__name__}>"


_UNMEASURED: dict[str, Any] = {
    name: (field.default if field.default_factory is None else None)
    for name, field in ExecutionResult.model_fields.items()
}


def unmeasured_result(success: bool, *, error: ErrorInfo | None = None,
                      extras: dict[str, JsonValue] | None = None) -> ExecutionResult:
    """A result that measured nothing but its outcome (every other field ``None``), built
    without validation: for the decorator's own fallbacks (exceptions, unreadable results)."""
    return construct(ExecutionResult, {
        **_UNMEASURED, "success": success, "error": error,
        "extras": {} if extras is None else extras,
    })


def failed_result(error_type: str, message: str) -> ExecutionResult:
    """The result of an executor that raised: only what we know, everything else unmeasured."""
    return unmeasured_result(
        False, error=construct(ErrorInfo, {"type": error_type, "message": message}))
