"""``@logged_execution``: one record and one span per executor call, on every exit path.

The host call is sacred. Each wrapper is three steps: a guarded pre-step (identity, span), the
executor call itself (unguarded: its result and its exception pass through untouched, re-raised
with a bare ``raise``), and a guarded post-step (normalize, span end, non-blocking submit).
Per-function work (argument getters, adapter lookup, wrapper kind) happens once, here, at
decoration time.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import random
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, overload

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace

from instrument import runtime
from instrument.adapters import registry
from instrument.adapters.protocol import Adapter, StreamedItems
from instrument.adapters.registry import UnknownAdapterError, get_adapter
from instrument.binding import ArgumentPlan, FieldSpec, Literal_, _none, compile_field
from instrument.context import _AMBIENT, _CURRENT, ExecutionContext
from instrument.guard import internal_error
from instrument.record import (
    SCHEMA_VERSION,
    ErrorInfo,
    ExecutionRecord,
    ExecutionResult,
    construct,
    exception_text,
    failed_result,
    unmeasured_result,
)

__all__ = ["logged_execution"]

_log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_RETURNED, _RAISED, _CLOSED = "returned", "raised", "closed"
_getrandbits = random.getrandbits  # reseeded after fork by the random module itself


_V4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # version nibble and variant bits
_V4_SET = (4 << 76) | (0x8000 << 48)  # version 4, RFC 4122 variant
_UUID, _SAFE_UNKNOWN, _setattr = uuid.UUID, uuid.SafeUUID.unknown, object.__setattr__


def _new_execution_id() -> uuid.UUID:
    """A random (version 4) UUID without a syscall per call (uuid4() reads os.urandom).

    Equal to ``uuid.UUID(int=..., version=4)`` but without its argument parsing, which is
    most of the cost on the call path (a test pins the equivalence).
    """
    u = _UUID.__new__(_UUID)
    _setattr(u, "int", (_getrandbits(128) & _V4_CLEAR) | _V4_SET)
    _setattr(u, "is_safe", _SAFE_UNKNOWN)
    return u


@dataclass(frozen=True, slots=True)
class _Options:
    engine: str | None = None
    agent_id: FieldSpec = None
    user_id: FieldSpec = None
    agent_name: FieldSpec = None
    session_id: FieldSpec = None
    execution_type: FieldSpec = None
    name: str | None = None
    writers: tuple[str, ...] | None = None
    capture_content: bool | None = None


@overload
def logged_execution(func: F, /) -> F: ...


@overload
def logged_execution(
    *,
    engine: str | None = None,
    agent_id: FieldSpec = None,
    user_id: FieldSpec = None,
    agent_name: FieldSpec = None,
    session_id: FieldSpec = None,
    execution_type: FieldSpec = None,
    name: str | None = None,
    writers: tuple[str, ...] | list[str] | None = None,
    capture_content: bool | None = None,
) -> Callable[[F], F]: ...


def logged_execution(
    func: Any = None,
    /,
    *,
    engine: str | None = None,
    agent_id: FieldSpec = None,
    user_id: FieldSpec = None,
    agent_name: FieldSpec = None,
    session_id: FieldSpec = None,
    execution_type: FieldSpec = None,
    name: str | None = None,
    writers: tuple[str, ...] | list[str] | None = None,
    capture_content: bool | None = None,
) -> Any:
    """Trace and record every call of an executor.

    Works bare (``@logged_execution``) or called (``@logged_execution(engine="agentkit",
    agent_id="agent.id")``) on functions, coroutines, generators and async generators, and on
    instance, class and static methods in either stacking order.

    ``agent_id``, ``user_id``, ``agent_name`` and ``session_id`` are dotted paths into the bound
    call arguments (``"agent.id"``, ``"request.user_id"``; attribute or key access), callables
    taking the bound-arguments mapping, or literals via :func:`instrument.literal`.
    ``execution_type`` is a literal when given as a plain string (``"scheduled"``).
    """
    opts = _Options(
        engine=engine, agent_id=agent_id, user_id=user_id, agent_name=agent_name,
        session_id=session_id, execution_type=execution_type, name=name,
        writers=tuple(writers) if writers is not None else None,
        capture_content=capture_content,
    )
    if func is not None:
        return _decorate(func, opts)

    def decorator(f: F) -> F:
        return _decorate(f, opts)  # type: ignore[no-any-return]

    return decorator


class _Plan:
    """Everything about one decorated function that does not change between calls."""

    __slots__ = (
        "adapter", "by_keys", "by_type", "capture_content", "engine", "fields", "generation",
        "name", "no_fields", "qualname", "warned", "writers", "writers_checked",
    )

    def __init__(self, fn: Callable[..., Any], opts: _Options, *, static: bool) -> None:
        self.qualname: str = getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))
        self.name: str | None = opts.name
        self.engine: str | None = opts.engine
        self.writers: tuple[str, ...] | None = opts.writers
        self.writers_checked = opts.writers is None
        self.capture_content: bool | None = opts.capture_content
        self.adapter: Adapter | None = None
        if opts.engine is not None:
            try:
                self.adapter = get_adapter(opts.engine)
            except UnknownAdapterError:
                # Never break the host: fall back to auto-detection and say so once.
                internal_error(f"@logged_execution on {self.qualname}: unknown engine",
                               decoration=True)
        args = ArgumentPlan(fn, static=static, owner=self.qualname)
        et = opts.execution_type
        if isinstance(et, str):
            et = Literal_(et)  # a plain string is a literal for execution_type
        self.fields = (
            compile_field(args, "agent_id", opts.agent_id),
            compile_field(args, "user_id", opts.user_id),
            compile_field(args, "agent_name", opts.agent_name),
            compile_field(args, "session_id", opts.session_id),
            compile_field(args, "execution_type", et),
        )
        #: nothing to resolve per call (the bare decorator): the call path skips the resolvers
        self.no_fields = all(f is _none for f in self.fields)
        self.warned: set[str] = set()
        # Auto-detection memo for non-mapping result types (a type's shape does not change);
        # `None` marks a type no adapter understands. Reset when adapters are (un)registered.
        self.by_type: dict[type, Adapter | None] = {}
        #: plain dict results: detection per key set, when every adapter decides by keys
        self.by_keys: dict[frozenset[Any], Adapter | None] = {}
        self.generation = registry.generation()

    def check_writers(self, settings: Any) -> None:
        """Once per function, at its first call: every name in ``writers=`` must be a configured
        writer, or the record would silently reach nothing under that name."""
        self.writers_checked = True
        known = set(settings.writers) | {w.name for w in settings.custom_writers}
        unknown = [w for w in self.writers or () if w not in known]
        if unknown:
            internal_error(
                f"@logged_execution on {self.qualname}: writers={list(self.writers or ())} "
                f"names {unknown}, which is not a configured writer; configured: "
                f"{sorted(known)} (configure(writers=...) or INSTRUMENT_WRITERS)")

    def detect(self, result: object) -> Adapter | None:
        if self.generation != registry.generation():
            self.by_type.clear()
            self.by_keys.clear()
            self.generation = registry.generation()
        tp = type(result)
        found = self.by_type.get(tp, _UNCACHED)
        if found is _BY_SHAPE:
            if isinstance(result, dict) and tp is dict and len(result) <= 64 \
                    and registry.keys_decide():
                keys = frozenset(result)
                hit = self.by_keys.get(keys, _UNCACHED)
                if hit is _UNCACHED:
                    if len(self.by_keys) >= 64:
                        self.by_keys.clear()
                    hit = self.by_keys[keys] = registry.match_adapter(result)
                return hit  # type: ignore[no-any-return]
            return registry.match_adapter(result)
        if found is not _UNCACHED:
            return found  # type: ignore[no-any-return]
        if isinstance(result, Mapping):  # dict results are told apart by shape, per call
            self.by_type[tp] = _BY_SHAPE
            return registry.match_adapter(result)
        found = self.by_type[tp] = registry.match_adapter(result)
        return found


_UNCACHED: Any = object()
_BY_SHAPE: Any = object()


def _decorate(func: Any, opts: _Options) -> Any:
    static = isinstance(func, staticmethod)
    fn = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
    if not callable(fn):
        raise TypeError(f"@logged_execution needs a callable, got {type(func).__name__}")
    plan = _Plan(fn, opts, static=static)
    if inspect.isasyncgenfunction(fn):
        wrapper = _async_gen_wrapper(plan)
    elif inspect.isgeneratorfunction(fn):
        wrapper = _gen_wrapper(plan)
    elif inspect.iscoroutinefunction(fn):
        wrapper = _async_wrapper(plan)
    else:
        wrapper = _sync_wrapper(plan)
    return _Executor(func, wrapper)


def _import_by_qualname(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


if TYPE_CHECKING:  # wrapt's wrappers are generic from wrapt 2; pyproject allows 1.16 too
    _BoundBase = wrapt.BoundFunctionWrapper[..., Any]
    _FunctionBase = wrapt.FunctionWrapper[..., Any]
else:
    _BoundBase = wrapt.BoundFunctionWrapper
    _FunctionBase = wrapt.FunctionWrapper


class _BoundExecutor(_BoundBase):
    """A decorated method bound to its instance or class; pickles as ``getattr(owner, name)``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return getattr, (self._self_instance, self.__name__)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:  # wrapt 1.x's proxy raises
        return self.__reduce__()


class _Executor(_FunctionBase):
    """The decorated callable. Pickles by reference (module + qualname), like a plain function,
    so decorated executors can be sent to ProcessPoolExecutor and multiprocessing workers."""

    __bound_function_wrapper__ = _BoundExecutor

    def __reduce__(self) -> tuple[Any, ...]:
        return _import_by_qualname, (self.__module__, self.__qualname__)

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:  # wrapt 1.x's proxy raises
        return self.__reduce__()


# --------------------------------------------------------------------------------------------
# One call in flight
# --------------------------------------------------------------------------------------------


class _Call:
    """The state of one execution between its pre-step and its single finish."""

    __slots__ = ("ctx", "done", "plan", "rt", "span", "span_ctx", "t0", "wall0")

    def __init__(
        self, plan: _Plan, rt: runtime.Runtime, instance: Any, args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.plan = plan
        self.rt = rt
        self.done = False
        values: list[str | None] = ([None, None, None, None, None] if plan.no_fields
                                    else [f(instance, args, kwargs, plan) for f in plan.fields])
        amb = _AMBIENT.get()
        if amb is not None:
            values[0] = values[0] if values[0] is not None else amb.agent_id
            values[1] = values[1] if values[1] is not None else amb.user_id
            values[2] = values[2] if values[2] is not None else amb.agent_name
            values[3] = values[3] if values[3] is not None else amb.session_id
            values[4] = values[4] if values[4] is not None else amb.execution_type
        agent_name = values[2]
        name = plan.name or agent_name or plan.qualname
        execution_id = _new_execution_id()
        self.span: trace.Span | None = None
        self.span_ctx: otel_context.Context | None = None
        tracing = rt.tracing
        ctx = ExecutionContext(execution_id, name, plan.engine, values[0], values[1], agent_name,
                               values[3], values[4] or "manual")
        if tracing is not None:
            try:
                span = tracing.start(ctx)
                sc = span.get_span_context()
                if sc.is_valid:  # ctx is not visible to anyone yet: fill in its ids
                    _setattr(ctx, "trace_id", format(sc.trace_id, "032x"))
                    _setattr(ctx, "span_id", format(sc.span_id, "016x"))
                self.span = span
                self.span_ctx = trace.set_span_in_context(span)
            except Exception as exc:  # telemetry must not break the host; see guard
                internal_error("span start failed", exc)
        self.ctx = ctx
        self.wall0 = time.time_ns()
        self.t0 = time.perf_counter_ns()

    # Context is attached only while executor code runs, never across a yield.
    def enter(self) -> tuple[Any, Any]:
        tok = _CURRENT.set(self.ctx)
        otok = otel_context.attach(self.span_ctx) if self.span_ctx is not None else None
        return tok, otok

    def exit(self, tokens: tuple[Any, Any]) -> None:
        tok, otok = tokens
        if otok is not None:
            otel_context.detach(otok)
        _CURRENT.reset(tok)

    def finish(self, outcome: object, exc: BaseException | None, how: str) -> None:
        """Build the record, end the span, submit. Runs once; guarded."""
        if self.done:
            return
        self.done = True
        duration_ms = (time.perf_counter_ns() - self.t0) / 1e6
        try:
            if exc is None and how != _CLOSED:
                adapter, result = self._normalize(outcome)
                watch = getattr(adapter, "watch", None)
                if (watch is not None and adapter is not None
                        and type(outcome) is not StreamedItems):
                    self.done = False
                    if watch(outcome, self._deferred(adapter)):
                        return
                    self.done = True
            elif exc is None:  # a stream closed or abandoned by its consumer
                adapter, result = self._normalize(outcome)
                extras = dict(result.extras)
                extras["stream_closed_early"] = True
                result = result.model_copy(update={"extras": extras})
            else:
                adapter, result = self._failed(exc)
            self._emit(adapter, result, exc, duration_ms)
        except Exception as err:  # never break the host; strict mode re-raises
            internal_error("building the execution record failed", err)

    def _failed(self, exc: BaseException, known: Adapter | None = None
                ) -> tuple[Adapter | None, ExecutionResult]:
        """The record of an executor that raised: what its engine measured before failing
        (an adapter's optional ``normalize_error``), else nothing but the error itself."""
        error = construct(ErrorInfo, {"type": type(exc).__name__,
                                      "message": self.rt.redactor.text(exception_text(exc))})
        plan = self.plan
        known = known or plan.adapter
        candidates = (known,) if known is not None else registry.error_adapters()
        for adapter in candidates:
            recover = getattr(adapter, "normalize_error", None)
            if recover is None:
                continue
            try:
                partial = recover(exc)
            except Exception as err:  # recovery is best effort; the failure is recorded anyway
                internal_error(f"adapter {adapter.name!r} could not read the failed run",
                               err, strict_raise=False)
                continue
            if partial is not None:
                return adapter, partial.model_copy(
                    update={"success": False, "error": error, "response": None})
        return known, failed_result(error.type, error.message)

    def _deferred(self, adapter: Adapter) -> Callable[[ExecutionResult | BaseException], None]:
        def done(outcome: ExecutionResult | BaseException) -> None:
            if self.done:
                return
            self.done = True
            duration_ms = (time.perf_counter_ns() - self.t0) / 1e6
            try:
                if isinstance(outcome, BaseException):
                    found, result = self._failed(outcome, adapter)
                    self._emit(found, result, outcome, duration_ms)
                else:
                    self._emit(adapter, outcome, None, duration_ms)
            except Exception as err:  # never break the host; strict mode re-raises
                internal_error("building a deferred execution record failed", err)

        return done

    def _normalize(self, outcome: object) -> tuple[Adapter | None, ExecutionResult]:
        plan = self.plan
        adapter = plan.adapter
        try:
            if adapter is None:
                adapter = plan.detect(outcome)
                if adapter is None:
                    return None, _unrecognized(plan, outcome)
            return adapter, adapter.normalize(outcome)
        except Exception as err:  # a misbehaving result must not break the host
            internal_error(
                f"adapter {getattr(adapter, 'name', None)!r} could not normalize the result "
                f"of {plan.qualname}",
                err,
                strict_raise=False,
            )
            message = self.rt.redactor.text(f"{type(err).__name__}: {err}")[:2000]
            return adapter, unmeasured_result(True, extras={"normalization_error": message})

    def _emit(
        self, adapter: Adapter | None, result: ExecutionResult, exc: BaseException | None,
        duration_ms: float,
    ) -> None:
        rt = self.rt
        plan = self.plan
        # Content (response text, tool arguments) policy for this call: the decorator's
        # capture_content= overrides the configured per-sink policy for its executor.
        capture = plan.capture_content
        to_spans = rt.settings.content_to_spans if capture is None else capture
        to_db = rt.settings.content_to_db if capture is None else capture
        update: dict[str, Any] = {}  # one copy of the result at most, and none when clean
        if result.response is not None and not (to_spans or to_db):
            update["response"] = None
        if result.extras and id(result) not in _PREBUILT:
            extras = rt.redactor.json(result.extras)
            if extras is not result.extras:  # the redactor returns its input when clean
                update["extras"] = extras
        if result.error is not None and exc is None:
            message = rt.redactor.text(result.error.message)
            if message != result.error.message:
                update["error"] = ErrorInfo.model_construct(type=result.error.type,
                                                            message=message)
        if result.tool_calls and any(c.error for c in result.tool_calls):  # persisted too
            update["tool_calls"] = [
                c.model_copy(update={"error": rt.redactor.text(c.error)}) if c.error else c
                for c in result.tool_calls]
        if update:
            result = result.model_copy(update=update)
        ctx = self.ctx
        started = datetime.fromtimestamp(self.wall0 / 1e9, UTC)
        record = construct(ExecutionRecord, {
            "schema_version": SCHEMA_VERSION,
            "execution_id": ctx.execution_id,
            "agent_id": ctx.agent_id,
            "user_id": ctx.user_id,
            "agent_name": ctx.agent_name,
            "session_id": ctx.session_id,
            "execution_type": ctx.execution_type,
            "engine": adapter.name if adapter is not None else (plan.engine or "unknown"),
            "name": ctx.name,
            "started_at": started,
            "completed_at": started + timedelta(milliseconds=duration_ms),
            "duration_ms": duration_ms,
            "trace_id": ctx.trace_id,
            "span_id": ctx.span_id,
            "result": result,
            "writers": plan.writers,
        })
        span = self.span
        if span is not None and rt.tracing is not None:
            try:
                rt.tracing.finish(span, record, exc, content=capture,
                                  started_engine=plan.engine)
            except Exception as err:  # telemetry must not break the host
                internal_error("span finish failed", err)
        if result.response is not None and not to_db:
            # The span may show the text; the spool, the stores and custom writers must not.
            record = construct(ExecutionRecord, {
                **record.__dict__, "result": result.model_copy(update={"response": None})})
        rt.pipeline.submit(record)


_UNRECOGNIZED: dict[type, ExecutionResult] = {}
_PREBUILT: set[int] = set()  # ids of the results above: our own text, nothing to redact


def _unrecognized(plan: _Plan, outcome: object) -> ExecutionResult:
    """A record for a result no adapter understands: success from "no exception", and a note.

    Built once per type (records are immutable, so the result object is shared) and warned
    about once per function and type: the fallback path does no per-call formatting.
    """
    tp = type(outcome)
    result = _UNRECOGNIZED.get(tp)
    if result is None:
        note = (f"no adapter recognizes a {tp.__module__}.{tp.__qualname__} result; pass "
                "engine=... or register an adapter (docs/adapters.md)")
        result = _UNRECOGNIZED[tp] = unmeasured_result(
            True, extras={"normalization_error": note})
        _PREBUILT.add(id(result))
    key = f"unrecognized:{tp.__qualname__}"
    if key not in plan.warned:
        plan.warned.add(key)
        _log.warning("logged-execution: %s returned a %s.%s that no adapter recognizes; the "
                     "record has success=True and extras.normalization_error", plan.qualname,
                     tp.__module__, tp.__qualname__)
    return result


def _begin(plan: _Plan, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
           ) -> _Call | None:
    """The guarded pre-step. `None` means: run the executor untraced (disabled or broken)."""
    try:
        rt = runtime.current()
        if rt.settings.disabled:
            return None
        if not plan.writers_checked:
            plan.check_writers(rt.settings)
        return _Call(plan, rt, instance, args, kwargs)
    except Exception as err:  # a broken pre-step must never stop the executor from running
        runtime.note_unrecorded()
        internal_error("preparing the execution failed", err)
        return None


# --------------------------------------------------------------------------------------------
# The four wrappers (chosen at decoration time)
# --------------------------------------------------------------------------------------------


def _sync_wrapper(plan: _Plan) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        call = _begin(plan, instance, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        tokens = call.enter()
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            call.exit(tokens)
            call.finish(None, exc, _RAISED)
            raise
        call.exit(tokens)
        call.finish(result, None, _RETURNED)
        return result

    return wrapper


def _async_wrapper(plan: _Plan) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> Any:
        call = _begin(plan, instance, args, kwargs)
        if call is None:
            return await wrapped(*args, **kwargs)
        tokens = call.enter()
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:  # includes asyncio.CancelledError
            call.exit(tokens)
            call.finish(None, exc, _RAISED)
            raise
        call.exit(tokens)
        call.finish(result, None, _RETURNED)
        return result

    return wrapper


def _gen_wrapper(plan: _Plan) -> Callable[..., Any]:
    def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
        call = _begin(plan, instance, args, kwargs)
        gen = wrapped(*args, **kwargs)
        if call is None:
            return (yield from gen)
        items = StreamedItems()
        how = _RAISED
        error: BaseException | None = None
        try:
            method: Callable[[Any], Any] = gen.send
            value: Any = None
            while True:
                tokens = call.enter()
                try:
                    item = method(value)
                except StopIteration as stop:
                    how = _RETURNED
                    return stop.value
                finally:
                    call.exit(tokens)
                items.append(item)
                try:
                    value = yield item
                    method = gen.send
                except GeneratorExit:
                    how = _CLOSED
                    tokens = call.enter()
                    try:
                        gen.close()
                    finally:
                        call.exit(tokens)
                    raise
                except BaseException as thrown:  # caller's throw(): forward it to the executor
                    method, value = gen.throw, thrown
        except BaseException as exc:
            if how == _RAISED:
                error = exc
            raise
        finally:
            call.finish(items, error, how)

    return wrapper


def _async_gen_wrapper(plan: _Plan) -> Callable[..., Any]:
    async def wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> AsyncGenerator[Any, Any]:
        call = _begin(plan, instance, args, kwargs)
        agen = wrapped(*args, **kwargs)
        if call is None:
            async for item in agen:
                yield item
            return
        items = StreamedItems()
        how = _RAISED
        error: BaseException | None = None
        try:
            method: Callable[[Any], Any] = agen.asend
            value: Any = None
            while True:
                tokens = call.enter()
                try:
                    item = await method(value)
                except StopAsyncIteration:
                    how = _RETURNED
                    return
                finally:
                    call.exit(tokens)
                items.append(item)
                try:
                    value = yield item
                    method = agen.asend
                except GeneratorExit:
                    how = _CLOSED
                    tokens = call.enter()
                    try:
                        await agen.aclose()
                    finally:
                        call.exit(tokens)
                    raise
                except BaseException as thrown:  # caller's athrow(): forward it to the executor
                    method, value = agen.athrow, thrown
        except BaseException as exc:
            if how == _RAISED:
                error = exc
            raise
        finally:
            call.finish(items, error, how)

    return wrapper
