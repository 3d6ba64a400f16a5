"""What the OpenAI adapters share: token usage, and watching a live stream in place.

Nothing here imports ``openai``: objects are read by attribute, so a foreign or partial object
yields ``None`` ("not measured") rather than an error.

:func:`watch_stream` is how a deferred adapter follows an ``openai.Stream`` /
``openai.AsyncStream`` that an executor *returned* (rather than iterated itself). The host must
get the identical object back, so nothing is wrapped from the outside: the instance's own
``_iterator`` is replaced by an observing generator and ``close`` is shadowed on the instance.
The record is finished exactly once, when the stream is exhausted, raises, is closed, or is
garbage-collected unread (a ``weakref.finalize`` that holds no reference to the stream).

A stream an instrumentation wrapped (OpenTelemetry's ``ChatStreamWrapper``, OpenInference's
wrapt proxy; see :mod:`instrument.adapters._wrapped`) is recognized through its wrappers; its
items are still observed on the real stream, but the record is finished only once the
outermost wrapper is done, so our span ends after the wrapper's own.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from instrument.adapters._wrapped import follow_outer, unwrap
from instrument.adapters.protocol import StreamedItems
from instrument.record import ExecutionResult, TokenUsage

__all__ = [
    "StreamWatch", "count", "ends", "is_openai_stream", "openai_stream_in", "text", "usage_from",
    "watch_stream",
]

_log = logging.getLogger(__name__)

Done = Callable[[ExecutionResult | BaseException], None]


def count(value: object) -> int | None:
    """A non-negative int, or None: tokens are never invented from junk."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if value >= 0 else None


def text(value: object, limit: int = 65_536) -> str | None:
    if not isinstance(value, str):
        return None
    return value if len(value) <= limit else value[:limit]


def ends(items: StreamedItems, n: int = 32) -> list[object]:
    """The first and last ``n`` items: what ``matches`` looks at, so detection stays cheap on
    long streams."""
    if len(items) <= 2 * n:
        return list(items)
    return [*items[:n], *items[-n:]]


def usage_from(usage: object) -> TokenUsage | None:
    """TokenUsage from a Chat Completions ``CompletionUsage`` or a Responses ``ResponseUsage``
    (or the Agents SDK's ``Usage``, which has the Responses field names)."""
    if usage is None:
        return None
    if hasattr(usage, "prompt_tokens"):  # chat completions
        inp = count(getattr(usage, "prompt_tokens", None))
        out = count(getattr(usage, "completion_tokens", None))
        in_details = getattr(usage, "prompt_tokens_details", None)
        out_details = getattr(usage, "completion_tokens_details", None)
    else:  # responses / agents
        inp = count(getattr(usage, "input_tokens", None))
        out = count(getattr(usage, "output_tokens", None))
        in_details = getattr(usage, "input_tokens_details", None)
        out_details = getattr(usage, "output_tokens_details", None)
    total = count(getattr(usage, "total_tokens", None))
    if total is None and inp is not None and out is not None:
        total = inp + out
    tokens = TokenUsage(
        input_tokens=inp,
        output_tokens=out,
        total_tokens=total,
        cached_input_tokens=count(getattr(in_details, "cached_tokens", None)),
        reasoning_tokens=count(getattr(out_details, "reasoning_tokens", None)),
    )
    if tokens == TokenUsage():
        return None
    return tokens


def is_openai_stream(result: object) -> bool:
    """An ``openai.Stream`` / ``openai.AsyncStream`` (checked by module, without importing)."""
    cls = type(result)
    return cls.__module__.startswith("openai") and cls.__name__ in ("Stream", "AsyncStream")


def openai_stream_in(result: object) -> Any | None:
    """The ``openai.Stream``/``AsyncStream`` that `result` is or wraps (an instrumentation's
    wrapper or proxy, recognized by behaviour), else None."""
    return unwrap(result, is_openai_stream)


class StreamWatch:
    """Collects one stream's items and reports the outcome exactly once.

    When the stream is wrapped (``defer()``), the end seen on the real stream is kept and
    reported by :meth:`release`, which the outermost wrapper's end calls.
    """

    __slots__ = ("__weakref__", "_deferred", "_done", "_fired", "_lock", "_normalize",
                 "_outcome", "items")

    def __init__(self, normalize: Callable[[StreamedItems], ExecutionResult], done: Done) -> None:
        self.items = StreamedItems()
        self._normalize = normalize
        self._done = done
        self._fired = False
        self._deferred = False
        self._outcome: tuple[BaseException | None, bool] | None = None
        self._lock = threading.Lock()

    def defer(self) -> None:
        """Wait for :meth:`release` (set before the stream is iterated)."""
        self._deferred = True

    def finish(self, *, error: BaseException | None = None, closed_early: bool = False) -> None:
        with self._lock:
            if self._fired:
                return
            if self._deferred:
                if self._outcome is None:  # the first end seen is the one that counts
                    self._outcome = (error, closed_early)
                return
            self._fired = True
        self._report(error, closed_early)

    def release(self, error: BaseException | None = None) -> None:
        """The outer wrapper is done: report how the stream ended (what the real stream
        showed; else `error`; else closed early, as when the wrapper was dropped unread)."""
        with self._lock:
            if self._fired:
                return
            self._fired = True
            outcome = self._outcome
        if outcome is None:
            outcome = (error, error is None)
        self._report(*outcome)

    def _report(self, error: BaseException | None, closed_early: bool) -> None:
        if error is not None:
            self._done(error)
            return
        try:
            result = self._normalize(self.items)
        except Exception as exc:  # a stream we cannot read must still produce a record
            _log.warning("could not normalize a watched OpenAI stream", exc_info=True)
            result = ExecutionResult(
                success=True,
                extras={"normalization_error": f"{type(exc).__name__}: {exc}"[:2000]},
            )
        if closed_early:
            extras = dict(result.extras)
            extras["stream_closed_early"] = True
            result = result.model_copy(update={"extras": extras})
        self._done(result)

    def abandoned(self) -> None:
        self.release()


def watch_stream(result: Any, normalize: Callable[[StreamedItems], ExecutionResult],
                 done: Done) -> bool:
    """Follow an openai ``Stream``/``AsyncStream``, bare or wrapped, in place. False when its
    shape is unknown."""
    stream = openai_stream_in(result)
    inner = getattr(stream, "_iterator", None)
    close = getattr(stream, "close", None)
    if stream is None or inner is None or close is None:
        return False
    watch = StreamWatch(normalize, done)
    if inspect.isasyncgen(inner):
        stream._iterator = _observe_async(inner, watch)
        stream.close = _async_close(close, watch)
    elif inspect.isgenerator(inner):
        stream._iterator = _observe_sync(inner, watch)
        stream.close = _sync_close(close, watch)
    else:
        return False
    # A wrapper that cannot be followed: the real stream's own end finishes the record.
    if stream is not result and follow_outer(result, watch.release):
        watch.defer()
    weakref.finalize(stream, watch.abandoned)
    return True


def _observe_sync(inner: Iterator[Any], watch: StreamWatch) -> Iterator[Any]:
    completed = False
    try:
        for item in inner:
            watch.items.append(item)
            yield item
        completed = True
    except GeneratorExit:
        raise
    except BaseException as exc:  # the consumer sees it unchanged; the record says it failed
        watch.finish(error=exc)
        raise
    finally:
        if completed:
            watch.finish()
        else:
            close = getattr(inner, "close", None)
            try:
                if close is not None:
                    close()
            finally:
                watch.finish(closed_early=True)


async def _observe_async(inner: AsyncIterator[Any], watch: StreamWatch) -> AsyncIterator[Any]:
    completed = False
    try:
        async for item in inner:
            watch.items.append(item)
            yield item
        completed = True
    except GeneratorExit:
        raise
    except BaseException as exc:  # includes CancelledError: the record says it failed
        watch.finish(error=exc)
        raise
    finally:
        if completed:
            watch.finish()
        else:
            aclose = getattr(inner, "aclose", None)
            try:
                if aclose is not None:
                    await aclose()
            finally:
                watch.finish(closed_early=True)


def _sync_close(original: Callable[[], None], watch: StreamWatch) -> Callable[[], None]:
    def close() -> None:
        try:
            original()
        finally:
            watch.finish(closed_early=True)

    return close


def _async_close(original: Callable[[], Awaitable[None]], watch: StreamWatch
                 ) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        try:
            await original()
        finally:
            watch.finish(closed_early=True)

    return close
