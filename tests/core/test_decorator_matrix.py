"""The decorator matrix: 4 callable kinds x 4 bindings x every exit path x healthy/failing writer.

In every cell the host must see the identical object (`is`) it would have seen undecorated, and
exactly one record must be produced with the right success/error.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from instrument import logged_execution
from instrument.record import ExecutionRecord
from instrument.testing import Captured, assert_parity, capture


class Boom(Exception):
    pass


class FailingWriter:
    name = "failing"

    def write(self, records: Sequence[ExecutionRecord]) -> None:
        raise RuntimeError("writer down")


RESULT = {"success": True, "iterations": 1}
ITEMS = [object(), object(), object()]


def _make(kind: str, outcome: str) -> Callable[..., Any]:
    """The undecorated executor body for one kind and outcome."""
    exc = Boom("executor failed")
    if kind == "sync":
        def f(*_a: Any) -> Any:
            if outcome == "raise":
                raise exc
            return RESULT
        return f
    if kind == "async":
        async def af(*_a: Any) -> Any:
            if outcome == "raise":
                raise exc
            if outcome == "cancel":
                await asyncio.sleep(10)
            await asyncio.sleep(0)
            return RESULT
        return af
    if kind == "gen":
        def g(*_a: Any) -> Any:
            for i, item in enumerate(ITEMS):
                if outcome == "raise" and i == 1:
                    raise exc
                yield item
            return RESULT
        return g

    async def ag(*_a: Any) -> Any:
        for i, item in enumerate(ITEMS):
            if outcome == "raise" and i == 1:
                raise exc
            if outcome == "cancel" and i == 1:
                await asyncio.sleep(10)
            await asyncio.sleep(0)
            yield item
    return ag


_TEMPLATES = {
    "sync": "def run({p}agent_id):\n    return body(agent_id)\n",
    "async": "async def run({p}agent_id):\n    return await body(agent_id)\n",
    "gen": "def run({p}agent_id):\n    return (yield from body(agent_id))\n",
    "agen": "async def run({p}agent_id):\n    async for x in body(agent_id):\n        yield x\n",
}


def _executor(body: Callable[..., Any], kind: str, first: str | None = None) -> Callable[..., Any]:
    """A real function of `kind` with an exact signature ([self|cls,] agent_id) calling `body`."""
    ns: dict[str, Any] = {"body": body}
    exec(_TEMPLATES[kind].format(p=f"{first}, " if first else ""), ns)
    return ns["run"]  # type: ignore[no-any-return]


def _bind(body: Callable[..., Any], kind: str, binding: str, order: str) -> Callable[..., Any]:
    """Decorate `body` as a function or as an instance/class/static method (either order)."""
    deco = logged_execution(agent_id="agent_id")
    if binding == "function":
        return deco(_executor(body, kind))  # type: ignore[no-any-return]
    if binding == "instance":
        attr: Any = deco(_executor(body, kind, "self"))
    elif binding == "class":
        fn = _executor(body, kind, "cls")
        attr = deco(classmethod(fn)) if order == "outer" else classmethod(deco(fn))
    else:
        fn = _executor(body, kind)
        attr = deco(staticmethod(fn)) if order == "outer" else staticmethod(deco(fn))
    return type("Executor", (), {"run": attr})().run  # type: ignore[no-any-return]


KINDS = ["sync", "async", "gen", "agen"]
BINDINGS = [("function", "-"), ("instance", "-"), ("class", "outer"), ("class", "inner"),
            ("static", "outer"), ("static", "inner")]
OUTCOMES = {
    "sync": ["return", "raise"],
    "async": ["return", "raise", "cancel"],
    "gen": ["return", "raise", "close", "abandon"],
    "agen": ["return", "raise", "cancel", "close", "abandon"],
}
CELLS = [(k, b, o, out) for k in KINDS for (b, o) in BINDINGS for out in OUTCOMES[k]]


def _drive(kind: str, outcome: str, call: Callable[..., Any]) -> tuple[Any, BaseException | None]:
    """Run one call as a host would; return what the host saw (value, exception)."""
    if kind == "sync":
        try:
            return call("agent-1"), None
        except BaseException as exc:
            return None, exc
    if kind == "async":
        async def main() -> Any:
            task = asyncio.ensure_future(call("agent-1"))
            if outcome == "cancel":
                await asyncio.sleep(0.01)
                task.cancel()
            return await task
        try:
            return asyncio.run(main()), None
        except BaseException as exc:
            return None, exc
    if kind == "gen":
        gen = call("agent-1")
        seen: list[Any] = []
        try:
            if outcome == "close":
                seen.append(next(gen))
                gen.close()
                return seen, None
            if outcome == "abandon":
                seen.append(next(gen))
                del gen
                gc.collect()
                return seen, None
            while True:
                seen.append(next(gen))
        except StopIteration as stop:
            return (seen, stop.value), None
        except BaseException as exc:
            return seen, exc

    async def amain() -> Any:
        agen = call("agent-1")
        seen: list[Any] = []
        if outcome == "close":
            seen.append(await agen.__anext__())
            await agen.aclose()
            return seen
        if outcome == "abandon":
            seen.append(await agen.__anext__())
            del agen
            gc.collect()
            await asyncio.sleep(0.01)  # let asyncio's finalizer hook run aclose()
            return seen
        if outcome == "cancel":
            async def consume() -> None:
                async for item in agen:
                    seen.append(item)
            task = asyncio.ensure_future(consume())
            await asyncio.sleep(0.01)
            task.cancel()
            await task
            return seen
        async for item in agen:
            seen.append(item)
        return seen

    try:
        return asyncio.run(amain()), None
    except BaseException as exc:
        return None, exc


def _expected(kind: str, outcome: str, raw: Callable[..., Any]) -> tuple[Any, type | None]:
    got, exc = _drive(kind, outcome, raw)
    return got, (type(exc) if exc is not None else None)


@pytest.mark.parametrize("writer", ["healthy", "failing"])
@pytest.mark.parametrize(("kind", "binding", "order", "outcome"), CELLS)
def test_matrix(kind: str, binding: str, order: str, outcome: str, writer: str) -> None:
    body = _make(kind, outcome)
    expected, expected_exc = _expected(kind, outcome, _executor(body, kind))
    writers: list[Any] = ["executions", "logs", "stats", "intensity"]
    if writer == "failing":
        writers.append(FailingWriter())
    with capture(writers=writers) as cap:
        call = _bind(body, kind, binding, order)
        got, exc = _drive(kind, outcome, call)
    # The host sees exactly what it would have seen without the decorator.
    assert (type(exc) if exc is not None else None) is expected_exc
    _assert_identical(kind, got, expected)
    if outcome == "raise":
        assert isinstance(exc, Boom)
        assert str(exc) == "executor failed"
    # Exactly one record, with the right outcome.
    assert len(cap.records) == 1, cap.records
    record = cap.records[0]
    assert record.agent_id == "agent-1"
    if outcome in ("raise", "cancel"):
        assert record.result.success is False
        assert record.result.error is not None
        assert record.result.error.type == ("Boom" if outcome == "raise" else "CancelledError")
    else:
        assert record.result.error is None
    if outcome in ("close", "abandon"):
        assert record.result.extras.get("stream_closed_early") is True
    if writer == "healthy":
        assert_parity(cap)
    else:
        assert [name for name, _ in cap.errors] == ["failing"]
        _assert_builtin_parity(cap)


def _assert_builtin_parity(cap: Captured) -> None:
    for name in ("executions", "logs", "stats", "intensity"):
        assert [r.execution_id for r in cap.writes[name]] == [cap.records[0].execution_id]


def _assert_identical(kind: str, got: Any, expected: Any) -> None:
    if kind in ("sync", "async"):
        assert got is expected
    elif kind == "gen" and isinstance(expected, tuple):
        assert len(got[0]) == len(expected[0])
        assert all(a is b for a, b in zip(got[0], expected[0], strict=True))
        assert got[1] is expected[1]
    elif expected is not None:
        assert len(got) == len(expected)
        assert all(a is b for a, b in zip(got, expected, strict=True))
