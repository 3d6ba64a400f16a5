"""The live execution context: what an executor can read about the call it is running in."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from uuid import UUID

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


@dataclass(frozen=True, slots=True)
class AmbientContext:
    """Values supplied from outside the executor by :func:`execution_context`."""

    agent_id: str | None = None
    user_id: str | None = None
    agent_name: str | None = None
    session_id: str | None = None
    execution_type: str | None = None


_log = logging.getLogger(__name__)


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
) -> Iterator[AmbientContext]:
    """Supply identity from outside (a request handler, a scheduler) to decorated calls within.

    Nested blocks inherit the outer values they do not set. Decorator options win over these.
    Values are stored as the record stores them: valid text of at most 256 characters (a
    longer one as a prefix and its hash, see :func:`instrument.record.bounded_key`).
    """
    outer = _AMBIENT.get() or AmbientContext()
    agent_id, user_id, agent_name, session_id, execution_type = (
        _identity(name, value) for name, value in (
            ("agent_id", agent_id), ("user_id", user_id), ("agent_name", agent_name),
            ("session_id", session_id), ("execution_type", execution_type)))
    ambient = AmbientContext(
        agent_id=agent_id if agent_id is not None else outer.agent_id,
        user_id=user_id if user_id is not None else outer.user_id,
        agent_name=agent_name if agent_name is not None else outer.agent_name,
        session_id=session_id if session_id is not None else outer.session_id,
        execution_type=execution_type if execution_type is not None else outer.execution_type,
    )
    token = _AMBIENT.set(ambient)
    try:
        yield ambient
    finally:
        _AMBIENT.reset(token)
