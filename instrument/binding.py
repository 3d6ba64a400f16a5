"""Argument getters: dotted paths, callables and literals, compiled once per decorated function."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Union

from instrument.record import MAX_KEY_CHARS, bounded_key, bounded_text, exception_text

__all__ = [
    "ArgumentPlan", "FieldSpec", "Literal_", "ValueGetter", "compile_field", "compile_value",
    "literal",
]

_log = logging.getLogger("instrument")
_MISSING: Final = object()


class Literal_:
    """A constant value for a record field (see :func:`literal`)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"literal({self.value!r})"


def literal(value: str) -> Literal_:
    """Use `value` itself, not a path into the arguments: ``agent_id=literal("support-bot")``."""
    return Literal_(value)


FieldSpec = Union[str, Callable[[Mapping[str, Any]], Any], Literal_, None]  # noqa: UP007
Getter = Callable[[Any, tuple[Any, ...], dict[str, Any], Any], "str | None"]
#: getter(instance, args, kwargs, owner_plan) -> the converted value (see compile_value)
ValueGetter = Callable[[Any, tuple[Any, ...], dict[str, Any], Any], Any]
#: convert(raw value, warn) -> the stored value; never raises (tells `warn` instead)
Convert = Callable[[Any, Callable[[str], None]], Any]


class ArgumentPlan:
    """Where each parameter of a function is found in a call, for bound and unbound calls."""

    __slots__ = (
        "defaults", "has_var_kw", "index", "keyword_only", "names", "owner", "signature",
        "static",
    )

    def __init__(self, fn: Callable[..., Any], *, static: bool, owner: str) -> None:
        self.owner = owner
        self.static = static
        try:
            self.signature: inspect.Signature | None = inspect.signature(fn)
        except (TypeError, ValueError):
            self.signature = None
        params = list(self.signature.parameters.values()) if self.signature else []
        self.names = [p.name for p in params
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}
        self.has_var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
        self.keyword_only = {p.name for p in params if p.kind is p.KEYWORD_ONLY}

    def knows(self, name: str) -> bool:
        return name in self.index or name in self.keyword_only or self.has_var_kw

    def getter(self, name: str) -> Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]:
        idx = self.index.get(name)
        default = self.defaults.get(name, _MISSING)
        static = self.static

        def get(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if idx is not None:
                i = idx
                if instance is not None and not static:
                    if idx == 0:
                        return instance  # self / cls, bound by the method call
                    i = idx - 1
                if i < len(args):
                    return args[i]
            return kwargs.get(name, default)

        return get

    def bound(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
              ) -> dict[str, Any]:
        """The full name -> value mapping (only built when a callable field needs it)."""
        full = (instance, *args) if instance is not None and not self.static else args
        mapping = dict(self.defaults)
        mapping.update(zip(self.names, full, strict=False))
        mapping.update(kwargs)
        return mapping


def _as_text(value: Any, owner_plan: Any, field: str) -> str | None:
    """The field's value as stored: bounded, valid text (:func:`~instrument.record.bounded_key`).

    A value whose ``__str__`` raises gives ``None`` and one warning per function and field:
    the call is still recorded.
    """
    if value is None or value is _MISSING:
        return None
    if type(value) is str and len(value) <= MAX_KEY_CHARS and value.isascii():
        return value  # the common case: nothing to check
    try:
        return bounded_key(value if isinstance(value, str) else str(value))
    except Exception as exc:  # a hostile __str__ is the caller's data, never our error
        _warn_once(owner_plan, field, f"{field}: str() of a {_type_name(value)} raised "
                                      f"{type(exc).__name__}")
        return None


def _type_name(value: Any) -> str:
    try:
        return type(value).__qualname__
    except Exception:  # a hostile metaclass; the name is only used in a warning
        return "object"


def compile_field(plan: ArgumentPlan, field: str, spec: FieldSpec) -> Getter:
    """A getter(instance, args, kwargs, owner_plan) -> str | None for one record field."""
    if spec is None:
        return _none
    if isinstance(spec, Literal_):
        value = _as_text(spec.value, _DecorationTime(plan.owner), field)  # once

        def const(_i: Any, _a: tuple[Any, ...], _k: dict[str, Any], _p: Any) -> str | None:
            return value

        return const
    if callable(spec):
        fn = spec

        def call(i: Any, a: tuple[Any, ...], k: dict[str, Any], p: Any) -> str | None:
            try:
                value = fn(plan.bound(i, a, k))
            except Exception as exc:  # a user callable that fails yields None, never an error
                _warn_once(p, field, f"{field}= callable raised {type(exc).__name__}: "
                                     f"{bounded_text(exception_text(exc), 200)}")
                return None
            return _as_text(value, p, field)

        return call
    if not isinstance(spec, str) or not spec:
        raise TypeError(
            f"{field}= must be a dotted path string, a callable or instrument.literal(...), "
            f"got {spec!r}"
        )
    root, *parts = spec.split(".")
    if not plan.knows(root):
        _log.warning(
            "logged-execution: %s has no parameter %r (from %s=%r); the field will be None. "
            "Use instrument.literal(%r) for a constant.", plan.owner, root, field, spec, spec,
        )
    get_root = plan.getter(root)

    def path(i: Any, a: tuple[Any, ...], k: dict[str, Any], p: Any) -> str | None:
        obj = get_root(i, a, k)
        for part in parts:
            if obj is None or obj is _MISSING:
                break
            try:
                if isinstance(obj, Mapping):
                    obj = obj.get(part, _MISSING)
                else:
                    obj = getattr(obj, part, _MISSING)
            except Exception:  # a raising property/__getitem__/__class__: the path is unresolved
                obj = _MISSING
        if obj is _MISSING:
            _warn_once(p, field, f"{field}={spec!r} did not resolve in a call")
            return None
        return _as_text(obj, p, field)

    return path


def compile_value(plan: ArgumentPlan, field: str, spec: object, convert: Convert) -> ValueGetter:
    """A getter(instance, args, kwargs, owner_plan) for a field that is not text (tags,
    metadata, an execution id): `spec` is a dotted path (``str``), a callable taking the
    bound-arguments mapping, :func:`literal`, or the value itself (a list of tags, a dict).

    A literal or a value is converted once, here; a path or callable's value per call. What
    `convert` says about a value is logged once per function and field.
    """
    if spec is None:
        return _none
    if isinstance(spec, str) and spec:
        root, *parts = spec.split(".")
        if not plan.knows(root):
            _log.warning(
                "logged-execution: %s has no parameter %r (from %s=%r); the field will be "
                "None. Use instrument.literal(%r) for a constant.", plan.owner, root, field,
                spec, spec)
        get_root = plan.getter(root)

        def path(i: Any, a: tuple[Any, ...], k: dict[str, Any], p: Any) -> Any:
            obj = _walk(get_root(i, a, k), parts)
            if obj is _MISSING:
                _warn_once(p, field, f"{field}={spec!r} did not resolve in a call")
                return None
            return convert(obj, _warner(p, field))

        return path
    if callable(spec):
        fn = spec

        def call(i: Any, a: tuple[Any, ...], k: dict[str, Any], p: Any) -> Any:
            try:
                value = fn(plan.bound(i, a, k))
            except Exception as exc:  # a user callable that fails yields None, never an error
                _warn_once(p, field, f"{field}= callable raised {type(exc).__name__}: "
                                     f"{bounded_text(exception_text(exc), 200)}")
                return None
            return convert(value, _warner(p, field))

        return call
    value = spec.value if isinstance(spec, Literal_) else spec
    const = convert(value, _warner(_DecorationTime(plan.owner), field))
    if const is None:
        return _none

    def constant(_i: Any, _a: tuple[Any, ...], _k: dict[str, Any], _p: Any) -> Any:
        return const

    return constant


def _walk(obj: Any, parts: list[str]) -> Any:
    """Follow attribute or key `parts` from `obj`; `_MISSING` when one is not there."""
    for part in parts:
        if obj is None or obj is _MISSING:
            break
        try:
            if isinstance(obj, Mapping):
                obj = obj.get(part, _MISSING)
            else:
                obj = getattr(obj, part, _MISSING)
        except Exception:  # a raising property/__getitem__/__class__: the path is unresolved
            obj = _MISSING
    return obj


def _warner(owner_plan: Any, field: str) -> Callable[[str], None]:
    def warn(message: str) -> None:
        _warn_once(owner_plan, f"{field}:value", message, outcome="")

    return warn


class _DecorationTime:
    """Stands for the function's plan while that is being built (warnings are per function)."""

    __slots__ = ("qualname", "warned")

    def __init__(self, qualname: str) -> None:
        self.qualname = qualname
        self.warned: set[str] = set()


def _none(_i: Any, _a: tuple[Any, ...], _k: dict[str, Any], _p: Any) -> None:
    return None


def _warn_once(owner_plan: Any, field: str, message: str,
               outcome: str = "; the field is None") -> None:
    warned: set[str] | None = getattr(owner_plan, "warned", None)
    if warned is None or field in warned:
        return
    warned.add(field)
    _log.warning("logged-execution: %s: %s%s (warned once per function)",
                 getattr(owner_plan, "qualname", "?"), message, outcome)
