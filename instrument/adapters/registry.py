"""The adapter registry: built-ins (imported lazily), code registrations and entry points.

Auto-detection order (first `matches` wins), documented in docs/adapters.md:

1. adapters registered in code with :func:`register_adapter`, most recent first;
2. third-party adapters from the ``logged_execution.adapters`` entry-point group, by name;
3. the built-ins, most specific first (:data:`BUILTIN_ORDER`): the OpenAI engines
   (``openai_agents``, ``openai_responses``, ``openai_chat``), the provider clients and
   frameworks (``anthropic``, ``google_genai``, ``google_adk``, ``langgraph``,
   ``pydantic_ai``, ``crewai``, ``llama_index``, ``strands``), then our own dict shapes
   (``orchestrator``, ``agentkit``), ``text_stream``, and ``mapping`` last (the fallback).
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points

from instrument.adapters.protocol import Adapter

__all__ = [
    "BUILTIN_ORDER",
    "ENTRY_POINT_GROUP",
    "UnknownAdapterError",
    "available_adapters",
    "detect_adapter",
    "get_adapter",
    "register_adapter",
]

_log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "logged_execution.adapters"

#: name -> "module:attribute"; imported on first use so `import instrument` stays light.
_BUILTINS: dict[str, str] = {
    "openai_agents": "instrument.adapters.openai_agents:ADAPTER",
    "openai_responses": "instrument.adapters.openai_responses:ADAPTER",
    "openai_chat": "instrument.adapters.openai_chat:ADAPTER",
    "anthropic": "instrument.adapters.anthropic:ADAPTER",
    "google_genai": "instrument.adapters.google_genai:ADAPTER",
    "google_adk": "instrument.adapters.google_adk:ADAPTER",
    "langgraph": "instrument.adapters.langgraph:ADAPTER",
    "pydantic_ai": "instrument.adapters.pydantic_ai:ADAPTER",
    "crewai": "instrument.adapters.crewai:ADAPTER",
    "llama_index": "instrument.adapters.llama_index:ADAPTER",
    "strands": "instrument.adapters.strands:ADAPTER",
    "orchestrator": "instrument.adapters.orchestrator:ADAPTER",
    "agentkit": "instrument.adapters.agentkit:ADAPTER",
    "text_stream": "instrument.adapters.text_stream:ADAPTER",
    "mapping": "instrument.adapters.mapping:ADAPTER",
}
BUILTIN_ORDER: tuple[str, ...] = tuple(_BUILTINS)


class UnknownAdapterError(LookupError):
    """No adapter has that name."""


_lock = threading.Lock()
_registered: dict[str, Adapter] = {}
_loaded_builtins: dict[str, Adapter] = {}
_entry_point_adapters: dict[str, Adapter] | None = None
_order_cache: tuple[Adapter, ...] | None = None
_keys_decide_cache: tuple[int, bool] | None = None
_generation = 0


def register_adapter(adapter: Adapter, *, replace: bool = False) -> Adapter:
    """Register an adapter in code. It is tried before entry points and built-ins.

    Raises ValueError when the name is taken (pass ``replace=True`` to override) and TypeError
    when the object lacks ``name``, ``matches`` or ``normalize``.
    """
    global _order_cache
    _check_shape(adapter, where="register_adapter")
    with _lock:
        if adapter.name in _registered and not replace:
            raise ValueError(
                f"an adapter named {adapter.name!r} is already registered; "
                "pass replace=True to override it"
            )
        _registered.pop(adapter.name, None)
        _registered[adapter.name] = adapter
        _order_cache = None
        _bump()
    return adapter


def unregister_adapter(name: str) -> None:
    """Remove a code-registered adapter (tests use this)."""
    global _order_cache
    with _lock:
        _registered.pop(name, None)
        _order_cache = None
        _bump()


def get_adapter(name: str) -> Adapter:
    """The adapter called `name`; raises :class:`UnknownAdapterError` listing the known names."""
    with _lock:
        found = _registered.get(name)
    if found is not None:
        return found
    eps = _load_entry_points()
    if name in eps:
        return eps[name]
    if name in _BUILTINS:
        return _load_builtin(name)
    raise UnknownAdapterError(
        f"no adapter named {name!r}; known adapters: {', '.join(available_adapters())}. "
        "Register one with adapters.register_adapter() or the "
        f"{ENTRY_POINT_GROUP!r} entry-point group."
    )


def available_adapters() -> list[str]:
    """Names of every adapter that can be used, in auto-detection order."""
    with _lock:
        names = list(reversed(_registered))
    names += [n for n in _load_entry_points() if n not in names]
    names += [n for n in _BUILTINS if n not in names]
    return names


def generation() -> int:
    """Changes whenever the set of adapters changes (callers use it to invalidate caches)."""
    return _generation


def _bump() -> None:
    global _generation
    _generation += 1


def detect_adapter(result: object) -> Adapter:
    """The first adapter whose `matches(result)` is true; `mapping` (the fallback) otherwise."""
    found = match_adapter(result)
    return found if found is not None else _load_builtin("mapping")


def match_adapter(result: object) -> Adapter | None:
    """The first adapter whose `matches(result)` is true, or ``None`` when none does.

    A `matches` that raises is treated as a non-match and logged.
    """
    for adapter in _ordered():
        try:
            if adapter.matches(result):
                return adapter
        except Exception:  # a third-party matches() must not break detection for the rest
            _log.warning("adapter %r raised in matches(); skipping it", adapter.name,
                         exc_info=True)
    return None


def keys_decide() -> bool:
    """Whether every adapter's `matches` on a plain dict depends only on the dict's keys.

    True when each one declares ``detect_by_keys = True`` (all built-ins do); the decorator
    then memoizes detection per key set instead of asking every adapter on every call.
    """
    global _keys_decide_cache
    cached = _keys_decide_cache
    if cached is not None and cached[0] == _generation:
        return cached[1]
    decide = all(getattr(a, "detect_by_keys", False) is True for a in _ordered())
    _keys_decide_cache = (_generation, decide)
    return decide


def error_adapters() -> tuple[Adapter, ...]:
    """Adapters that can read a failed run's measurements from its exception, in detection
    order (those with an optional ``normalize_error(exc) -> ExecutionResult | None``)."""
    return tuple(a for a in _ordered() if callable(getattr(a, "normalize_error", None)))


def _ordered() -> tuple[Adapter, ...]:
    global _order_cache
    cached = _order_cache
    if cached is not None:
        return cached
    with _lock:
        ordered = list(reversed(_registered.values()))
    for adapter in _load_entry_points().values():
        if adapter not in ordered:
            ordered.append(adapter)
    for name in _BUILTINS:
        try:
            ordered.append(_load_builtin(name))
        except ImportError:  # a built-in whose optional dependency is missing is skipped
            _log.debug("built-in adapter %s unavailable", name, exc_info=True)
    _order_cache = tuple(ordered)
    return _order_cache


def _load_builtin(name: str) -> Adapter:
    found = _loaded_builtins.get(name)
    if found is None:
        module_name, _, attr = _BUILTINS[name].partition(":")
        found = getattr(importlib.import_module(module_name), attr)
        _loaded_builtins[name] = found
    return found


def _load_entry_points() -> dict[str, Adapter]:
    global _entry_point_adapters
    if _entry_point_adapters is not None:
        return _entry_point_adapters
    loaded: dict[str, Adapter] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            adapter = obj() if isinstance(obj, type) else obj
            _check_shape(adapter, where=f"entry point {ep.name!r}")
        except Exception:  # a broken plug-in must not break the SDK; it is reported and skipped
            _log.warning("could not load adapter entry point %r (%s); skipping it",
                         ep.name, ep.value, exc_info=True)
            continue
        loaded[adapter.name] = adapter
    _entry_point_adapters = loaded
    return loaded


def reload_entry_points() -> None:
    """Forget loaded entry points (after installing a plug-in in a running process)."""
    global _entry_point_adapters, _order_cache
    _entry_point_adapters = None
    _order_cache = None
    _bump()


def _check_shape(adapter: object, *, where: str) -> None:
    if not isinstance(adapter, Adapter) or not isinstance(getattr(adapter, "name", None), str):
        raise TypeError(
            f"{where}: {adapter!r} is not an adapter; it needs a str `name`, "
            "`matches(result) -> bool` and `normalize(result) -> ExecutionResult`"
        )
