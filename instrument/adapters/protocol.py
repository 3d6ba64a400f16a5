"""What an engine adapter is: a name, a cheap `matches`, and a total `normalize`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from instrument.record import ExecutionResult

__all__ = ["Adapter", "DeferredAdapter", "StreamedItems"]


class StreamedItems(list[object]):
    """The items a generator executor yielded, handed to an adapter as one result.

    A distinct type so `matches` can tell a streamed run from an executor that returned a list.
    """

    __slots__ = ()


@runtime_checkable
class Adapter(Protocol):
    """Turns one engine's result into an :class:`ExecutionResult`.

    `matches` must be cheap and must never raise or import heavy modules for foreign objects.
    `normalize` may raise; the decorator then records a `normalization_error` and the host
    result is untouched.
    """

    name: str

    def matches(self, result: object) -> bool: ...

    def normalize(self, result: object) -> ExecutionResult: ...


@runtime_checkable
class DeferredAdapter(Adapter, Protocol):
    """An adapter for results that are still running when the executor returns them.

    Example: the Agents SDK's `RunResultStreaming`, or an OpenAI stream object. `watch` returns
    True when it took responsibility: it then calls `done` exactly once, with the normalized
    result or with the exception that ended the stream, when the stream ends or is abandoned.
    """

    def watch(
        self, result: object, done: Callable[[ExecutionResult | BaseException], None]
    ) -> bool: ...
