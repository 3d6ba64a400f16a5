"""What an engine adapter is: a name, a cheap `matches`, and a total `normalize`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from instrument.record import ExecutionResult

__all__ = ["Adapter", "DeferredAdapter", "StreamedItems"]


class StreamedItems(list[object]):
    """The items a generator executor yielded, handed to an adapter as one result.

    A distinct type so `matches` can tell a streamed run from an executor that returned a list.
    It also times its own filling: :attr:`first_item_ms` is the time from its creation (the
    stream's start) to the first :meth:`append`; it is ``None`` when the items were given at
    construction (nobody timed them) or none arrived.
    """

    __slots__ = ("_created_ns", "_first_ns")

    def __init__(self, items: Iterable[object] = ()) -> None:
        super().__init__(items)
        self._created_ns = time.perf_counter_ns()
        self._first_ns: int | None = None

    def append(self, item: object) -> None:
        if self._first_ns is None:
            self._first_ns = time.perf_counter_ns()
        list.append(self, item)

    def __reduce__(self) -> tuple[Any, ...]:
        # Copies and pickles keep the timing as measured (the default would re-append).
        return _rebuild, (list(self), self._created_ns, self._first_ns)

    @property
    def first_item_ms(self) -> float | None:
        """Milliseconds from the stream's start to its first item, when measured."""
        first: int | None = getattr(self, "_first_ns", None)
        created: int | None = getattr(self, "_created_ns", None)
        if first is None or created is None:
            return None
        return (first - created) / 1e6


def _rebuild(items: list[object], created_ns: int, first_ns: int | None) -> StreamedItems:
    out = StreamedItems(items)
    out._created_ns, out._first_ns = created_ns, first_ns
    return out


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
