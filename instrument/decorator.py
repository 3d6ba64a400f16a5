"""``@logged_execution``: one record and one span per executor call, on every exit path.

The host call is sacred. Each wrapper is three steps: a guarded pre-step (identity, span), the
executor call itself (unguarded: its result and its exception pass through untouched, re-raised
with a bare ``raise``), and a guarded post-step (normalize, span end, non-blocking submit).
Per-function work (argument getters, adapter lookup, wrapper kind) happens once, at decoration
time (:mod:`instrument.plan`); the per-call state and its single finish are in
:mod:`instrument.call`. This module holds the public decorator and the four wrappers.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, overload
from uuid import UUID

import wrapt

from instrument.adapters.protocol import StreamedItems
from instrument.binding import FieldSpec
from instrument.budget import Budget
from instrument.call import CLOSED as _CLOSED
from instrument.call import RAISED as _RAISED
from instrument.call import RETURNED as _RETURNED
from instrument.call import begin as _begin
from instrument.plan import Options, Plan

__all__ = ["logged_execution"]

F = TypeVar("F", bound=Callable[..., Any])


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
    tenant_id: FieldSpec = None,
    owner_id: FieldSpec = None,
    tags: Sequence[str] | FieldSpec = None,
    metadata: Mapping[str, Any] | FieldSpec = None,
    budget: Budget | Sequence[Budget] | None = None,
    resumes: UUID | FieldSpec = None,
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
    tenant_id: FieldSpec = None,
    owner_id: FieldSpec = None,
    tags: Sequence[str] | FieldSpec = None,
    metadata: Mapping[str, Any] | FieldSpec = None,
    budget: Budget | Sequence[Budget] | None = None,
    resumes: UUID | FieldSpec = None,
) -> Any:
    """Trace and record every call of an executor.

    Works bare (``@logged_execution``) or called (``@logged_execution(engine="agentkit",
    agent_id="agent.id")``) on functions, coroutines, generators and async generators, and on
    instance, class and static methods in either stacking order.

    ``agent_id``, ``user_id``, ``agent_name`` and ``session_id`` are dotted paths into the bound
    call arguments (``"agent.id"``, ``"request.user_id"``; attribute or key access), callables
    taking the bound-arguments mapping, or literals via :func:`instrument.literal`.
    ``execution_type`` is a literal when given as a plain string (``"scheduled"``).
    ``tenant_id`` (who pays) and ``owner_id`` (whose agent it is) take the same forms.

    ``tags`` (a sequence of str) and ``metadata`` (a mapping of str to JSON values) are
    literals, or a dotted path / callable giving them per call; they are added to those of
    :func:`instrument.execution_context` (its tags are kept, the decorator's metadata wins per
    key) and bounded (64 tags, 16 KiB of metadata). ``resumes`` names the paused execution
    this run continues: an execution id (UUID or its text), or a path / callable giving one.
    ``budget`` is an :class:`instrument.Budget` or a sequence of them, checked before each
    run: over a limit, the executor does not run and :class:`instrument.BudgetExceeded` is
    raised (docs/accounting.md, "Budgets"). A call started inside another decorated call
    records that call's id as its ``parent_execution_id``.
    """
    opts = Options(
        engine=engine, agent_id=agent_id, user_id=user_id, agent_name=agent_name,
        session_id=session_id, execution_type=execution_type, name=name,
        writers=tuple(writers) if writers is not None else None,
        capture_content=capture_content, tenant_id=tenant_id, owner_id=owner_id, tags=tags,
        metadata=metadata, budget=budget, resumes=resumes,
    )
    if func is not None:
        return _decorate(func, opts)

    def decorator(f: F) -> F:
        return _decorate(f, opts)  # type: ignore[no-any-return]

    return decorator


def _decorate(func: Any, opts: Options) -> Any:
    static = isinstance(func, staticmethod)
    fn = func.__func__ if isinstance(func, (classmethod, staticmethod)) else func
    if not callable(fn):
        raise TypeError(f"@logged_execution needs a callable, got {type(func).__name__}")
    plan = Plan(fn, opts, static=static)
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
# The four wrappers (chosen at decoration time)
# --------------------------------------------------------------------------------------------


def _sync_wrapper(plan: Plan) -> Callable[..., Any]:
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


def _async_wrapper(plan: Plan) -> Callable[..., Any]:
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


def _gen_wrapper(plan: Plan) -> Callable[..., Any]:
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


def _async_gen_wrapper(plan: Plan) -> Callable[..., Any]:
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
