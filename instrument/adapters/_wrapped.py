"""Streams an instrumentation wrapped: the real stream inside, and finishing after the wrapper.

With OpenTelemetry's OpenAI instrumentation active, ``client.chat.completions.create(...,
stream=True)`` returns a ``ChatStreamWrapper`` (a plain class holding the real stream in
``.stream``); with OpenInference's, a wrapt ``ObjectProxy`` whose ``__wrapped__`` is the real
stream; with both, one inside the other. Each wrapper ends its own (child) span when *it* sees
the stream end, which is after the real stream ended.

:func:`unwrap` finds the real stream by behaviour, never by class name: an object whose type
iterates (``__next__`` or ``__anext__``) and whose ``__wrapped__`` or ``stream`` leads, within a
few layers, to an object the caller's predicate accepts.

:func:`follow_outer` makes our record end after the wrapper's span. The executor's caller must
keep the identical object, so nothing is wrapped around it: that one instance is given a
subclass of its own class (same name and module, ``isinstance`` unchanged, cached per class)
whose ``__next__``/``__anext__``/``close``/``aclose``/``__exit__``/``__aexit__`` call the
original first and then report to us. When the layout does not allow it, the caller falls
back to following the real stream only (the record is still complete; only the order of the
two span ends is not guaranteed).
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["follow_outer", "unwrap"]

_log = logging.getLogger(__name__)

#: Wrappers stacked deeper than this are not followed.
MAX_LAYERS = 8

Release = Callable[[BaseException | None], None]

_set_class = object.__dict__["__class__"].__set__
_lock = threading.Lock()
#: id(outer) -> what to tell when the outer layer is done; dropped when the object is collected
_pending: dict[int, list[Release]] = {}
_subclasses: dict[type, type | None] = {}


def unwrap(obj: object, is_target: Callable[[object], bool]) -> Any | None:
    """`obj` itself when `is_target(obj)`, else the target inside its wrappers, else None."""
    current = obj
    for _ in range(MAX_LAYERS):
        try:
            if is_target(current):
                return current
        except Exception:  # a foreign object whose inspection raises is not a stream
            return None
        if not _iterates(current):
            return None
        inner = _inner(current)
        if inner is None or inner is current:
            return None
        current = inner
    return None


def _iterates(obj: object) -> bool:
    try:
        tp = type(obj)
        return callable(getattr(tp, "__next__", None)) or callable(getattr(tp, "__anext__",
                                                                           None))
    except Exception:  # a hostile metaclass: not an iterator we can follow
        return False


def _inner(obj: object) -> Any:
    """The wrapped object: ``__wrapped__``, else an instance's own ``stream``; else None."""
    try:
        inner = getattr(obj, "__wrapped__", None)
    except Exception:  # a passthrough __getattr__ may raise anything: no __wrapped__
        inner = None
    if inner is not None:
        return inner
    try:
        d = object.__getattribute__(obj, "__dict__")
    except Exception:  # slotted or hostile: no instance attributes to look at
        return None
    return d.get("stream") if isinstance(d, dict) else None


def follow_outer(outer: object, release: Release) -> bool:
    """Call ``release(error)`` once `outer` itself has ended (exhausted, raised, closed, or
    collected). False when `outer` cannot be followed; nothing was changed then."""
    base = type(outer)
    followed = getattr(base, "_instrument_follows", None) is not None
    if not followed:
        sub = _subclass(base)
        if sub is None:
            return False
        try:
            weakref.finalize(outer, _forget, id(outer))
        except TypeError:  # not weak-referenceable: we could never clean up after it
            return False
        try:
            _set_class(outer, sub)
        except TypeError:  # an incompatible layout (a C type, __slots__ changes): not here
            _log.debug("cannot follow a %s", base.__qualname__, exc_info=True)
            with _lock:
                _pending.pop(id(outer), None)
            return False
    with _lock:
        _pending.setdefault(id(outer), []).append(release)
    return True


def _forget(key: int) -> None:
    """The outer object was collected before it ended: report it (as abandoned)."""
    _report(key, None)


def _report(key: int, error: BaseException | None) -> None:
    with _lock:
        releases = _pending.pop(key, None)
    for release in releases or ():
        try:
            release(error)
        except Exception:  # never raise into the host's iteration; the guard already logged
            _log.debug("a stream release callback failed", exc_info=True)


def _subclass(base: type) -> type | None:
    with _lock:
        if base in _subclasses:
            return _subclasses[base]
    ns: dict[str, Any] = {"__slots__": (), "__module__": base.__module__,
                          "__qualname__": base.__qualname__, "__doc__": base.__doc__,
                          "_instrument_follows": base}
    for name, make in _METHODS.items():
        original = getattr(base, name, None)
        if callable(original):
            ns[name] = make(original)
    sub: type | None
    try:
        sub = type(base.__name__, (base,), ns)
    except TypeError:  # a final class, or a metaclass that refuses: not followable
        sub = None
    with _lock:
        _subclasses[base] = sub
    return sub


def _next(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def __next__(self: Any) -> Any:
        try:
            return original(self)
        except BaseException as exc:  # its end or its failure: reported after its own span
            _report(id(self), None if isinstance(exc, StopIteration) else exc)
            raise

    return __next__


def _anext(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    async def __anext__(self: Any) -> Any:
        try:
            return await original(self)
        except BaseException as exc:  # includes CancelledError: the stream ends there
            _report(id(self), None if isinstance(exc, StopAsyncIteration) else exc)
            raise

    return __anext__


def _close(original: Callable[..., Any]) -> Callable[..., Any]:
    def close(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            result = original(self, *args, **kwargs)
        except BaseException as exc:  # reported, then re-raised unchanged
            _report(id(self), exc)
            raise
        if inspect.isawaitable(result):
            return _then_report(result, id(self))
        _report(id(self), None)
        return result

    return close


async def _then_report(awaitable: Any, key: int) -> Any:
    try:
        return await awaitable
    except BaseException as exc:  # reported, then re-raised unchanged
        _report(key, exc)
        raise
    finally:
        _report(key, None)  # a no-op after the line above


def _aclose(original: Callable[..., Any]) -> Callable[..., Any]:
    async def aclose(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await _then_report(original(self, *args, **kwargs), id(self))

    return aclose


def _exit(original: Callable[..., Any]) -> Callable[..., Any]:
    def __exit__(self: Any, *exc_info: Any) -> Any:
        try:
            return original(self, *exc_info)
        finally:
            _report(id(self), None)

    return __exit__


def _aexit(original: Callable[..., Any]) -> Callable[..., Any]:
    async def __aexit__(self: Any, *exc_info: Any) -> Any:
        try:
            return await original(self, *exc_info)
        finally:
            _report(id(self), None)

    return __aexit__


_METHODS: dict[str, Callable[[Callable[..., Any]], Callable[..., Any]]] = {
    "__next__": _next, "__anext__": _anext, "close": _close, "aclose": _aclose,
    "__exit__": _exit, "__aexit__": _aexit,
}
