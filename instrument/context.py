"""The live execution context: what an executor can read about the call it is running in."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import JsonValue

from instrument.labels import bounded_metadata, bounded_tags, merge_metadata, merge_tags
from instrument.ratelimit import RateLimiter, held_back
from instrument.record import bounded_key

__all__ = ["AmbientContext", "ExecutionContext", "current_execution", "execution_context"]


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """Identity of one running execution. `execution_id` exists before the executor runs."""

    execution_id: UUID
    name: str
    engine: str | None = None
    agent_id: str | None = None
    user_id: str | None = None
    agent_name: str | None = None
    session_id: str | None = None
    execution_type: str = "manual"
    trace_id: str | None = None
    span_id: str | None = None
    #: Who pays (a tenant, an organization), when named.
    tenant_id: str | None = None
    #: Whose agent it is (the per-agent tables' owner), when named.
    owner_id: str | None = None
    #: The execution this one was started inside (an orchestrator calling an agent).
    parent_execution_id: UUID | None = None


@dataclass(frozen=True, slots=True)
class AmbientContext:
    """Values supplied from outside the executor by :func:`execution_context`."""

    agent_id: str | None = None
    user_id: str | None = None
    agent_name: str | None = None
    session_id: str | None = None
    execution_type: str | None = None
    tenant_id: str | None = None
    owner_id: str | None = None
    tags: tuple[str, ...] | None = None
    metadata: dict[str, JsonValue] | None = None


_log = logging.getLogger(__name__)
_limiter = RateLimiter(60.0)


def _warn(message: str) -> None:
    """An odd tags/metadata value given to execution_context(): said once a minute."""
    n = _limiter.admit(message)
    if n is not None:
        _log.warning("logged-execution: execution_context(%s)%s", message, held_back(n))


def _identity(field: str, value: Any) -> str | None:
    """`value` as the record stores it (bounded, valid text); None when it cannot be read."""
    if value is None:
        return None
    try:
        return bounded_key(value if isinstance(value, str) else str(value))
    except Exception as exc:  # a hostile __str__ is the caller's data: the calls still record
        _log.warning("logged-execution: execution_context(%s=...): str() of the value raised "
                     "%s; the field is None", field, type(exc).__name__)
        return None


_CURRENT: ContextVar[ExecutionContext | None] = ContextVar("instrument_execution", default=None)
_AMBIENT: ContextVar[AmbientContext | None] = ContextVar("instrument_ambient", default=None)


def current_execution() -> ExecutionContext | None:
    """The execution the caller is running inside, or ``None`` outside any decorated call."""
    return _CURRENT.get()


@contextmanager
def execution_context(
    *,
    agent_id: str | None = None,
    user_id: str | None = None,
    agent_name: str | None = None,
    session_id: str | None = None,
    execution_type: str | None = None,
    tenant_id: str | None = None,
    owner_id: str | None = None,
    tags: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Iterator[AmbientContext]:
    """Supply identity from outside (a request handler, a scheduler) to decorated calls within.

    Nested blocks inherit the outer values they do not set; `tags` add to the outer block's
    (a union) and `metadata` is merged into the outer block's (the inner block wins per key).
    Decorator options win over these (its tags are added, its metadata wins per key).
    Identity values are stored as the record stores them: valid text of at most 256
    characters (a longer one as a prefix and its hash, see
    :func:`instrument.record.bounded_key`); tags and metadata are bounded as
    :mod:`instrument.labels` says (an odd value is logged and dropped, never raised).
    """
    outer = _AMBIENT.get() or AmbientContext()
    agent_id, user_id, agent_name, session_id, execution_type, tenant_id, owner_id = (
        _identity(name, value) for name, value in (
            ("agent_id", agent_id), ("user_id", user_id), ("agent_name", agent_name),
            ("session_id", session_id), ("execution_type", execution_type),
            ("tenant_id", tenant_id), ("owner_id", owner_id)))
    ambient = AmbientContext(
        agent_id=agent_id if agent_id is not None else outer.agent_id,
        user_id=user_id if user_id is not None else outer.user_id,
        agent_name=agent_name if agent_name is not None else outer.agent_name,
        session_id=session_id if session_id is not None else outer.session_id,
        execution_type=execution_type if execution_type is not None else outer.execution_type,
        tenant_id=tenant_id if tenant_id is not None else outer.tenant_id,
        owner_id=owner_id if owner_id is not None else outer.owner_id,
        tags=merge_tags(outer.tags, bounded_tags(tags, _warn)),
        metadata=merge_metadata(outer.metadata, bounded_metadata(metadata, _warn), _warn),
    )
    token = _AMBIENT.set(ambient)
    try:
        yield ambient
    finally:
        _AMBIENT.reset(token)
