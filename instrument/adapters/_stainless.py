"""Watching a returned SDK stream in place, for clients built like ``openai``'s (``anthropic``).

Both SDKs come from the same generator: a ``Stream`` / ``AsyncStream`` reads its items through
the instance's ``_iterator`` generator and releases the connection in ``close``. So the
technique of :func:`instrument.adapters._openai.watch_stream` applies unchanged: replace that
instance's ``_iterator`` with an observing generator and shadow ``close`` on the instance; the
caller keeps the identical object. This module only takes the stream already found (the
OpenAI helper finds its own by class), and reuses the OpenAI module's observers, so both
adapters finish records the same way: once, when the stream is exhausted, raises, is closed,
or is garbage-collected unread, and after an instrumentation's wrapper when there is one.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

from instrument.adapters._openai import (
    StreamWatch,
    _async_close,
    _observe_async,
    _observe_sync,
    _sync_close,
)
from instrument.adapters._wrapped import follow_outer
from instrument.adapters.protocol import StreamedItems
from instrument.record import ExecutionResult

__all__ = ["watch_stream"]

Done = Callable[[ExecutionResult | BaseException], None]


def watch_stream(result: object, stream: Any,
                 normalize: Callable[[StreamedItems], ExecutionResult], done: Done) -> bool:
    """Follow `stream` (the SDK stream that `result` is, wraps or reads from) in place; call
    `done` once with the normalized items or the exception that ended it. False when the
    stream's shape is unknown (nothing was changed then)."""
    try:
        inner = stream._iterator  # made on first use by some SDKs: this is that use
    except Exception:  # a stream without one is not a shape we can follow
        return False
    close = getattr(stream, "close", None)
    if close is None:
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
    if stream is not result and _is_wrapper(result, stream) and follow_outer(result,
                                                                             watch.release):
        watch.defer()
    weakref.finalize(stream, watch.abandoned)
    return True


def _is_wrapper(result: object, stream: object) -> bool:
    """`result` wraps `stream` (an instrumentation's proxy), rather than reading from it as the
    SDK's own ``MessageStream`` helper does (which closes its stream itself)."""
    return getattr(result, "_raw_stream", None) is not stream
