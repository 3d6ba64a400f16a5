"""Property tests: arbitrary nested junk never escapes an adapter or the decorator.

The junk mixes the engines' real field names with wrong types, NaN/inf, huge and
surrogate-laden strings, bytes, cycles, catch-all proxies and objects whose attributes,
comparisons, conversions and iteration raise.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instrument import logged_execution
from instrument.adapters import get_adapter
from instrument.adapters.protocol import StreamedItems
from instrument.adapters.registry import BUILTIN_ORDER
from instrument.record import ExecutionResult
from instrument.testing import capture

OURS = ("orchestrator", "agentkit", "mapping")

KEYS = (
    "success", "error", "response", "output", "message", "model", "provider", "iterations",
    "toolCalls", "tool_calls", "plugin", "action", "parameters", "result", "emails", "items",
    "executionTime", "tokensUsed", "prompt", "completion", "total", "memoryData", "tokens",
    "entryCount", "types", "stepsCompleted", "stepsFailed", "stepsSkipped", "totalExecutionTime",
    "totalTokensUsed", "executionId", "errorStack", "failedStep", "completedStepIds",
    "orchestrationMetrics", "extras", "steps", "memory", "workflow", "retries", "input_tokens",
    "duration_ms", "name", "code", "password", "api_key", "orchestration_ms", "started_at",
)
HUGE = "h" * 300_000


ARMED = [False]


@contextmanager
def armed() -> Iterator[None]:
    """Hostile objects raise on ``__class__`` only inside this block (hypothesis itself runs
    isinstance on the values it draws)."""
    ARMED[0] = True
    try:
        yield
    finally:
        ARMED[0] = False


class Hostile:
    """Attribute access (even ``__class__``), comparison, conversion, iteration: all raise."""

    def __getattribute__(self, name: str) -> Any:
        if name == "__class__" and not ARMED[0]:
            return object.__getattribute__(self, name)
        raise RuntimeError(f"hostile {name}")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile __eq__")

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise RuntimeError("hostile __bool__")

    def __len__(self) -> int:
        raise RuntimeError("hostile __len__")

    def __iter__(self) -> Iterator[object]:
        raise RuntimeError("hostile __iter__")

    def __str__(self) -> str:
        raise RuntimeError("hostile __str__")

    def __repr__(self) -> str:
        return "<Hostile>"


class RaisingProps:
    """Looks like an engine result; every field access raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")

    @property
    def success(self) -> bool:
        raise RuntimeError("success raised")

    @property
    def stepsCompleted(self) -> int:
        raise RuntimeError("stepsCompleted raised")

    @property
    def toolCalls(self) -> list[Any]:
        raise ValueError("toolCalls raised")


class Anything:
    def __getattr__(self, name: str) -> Any:
        return self


class HostileMapping(Mapping[str, Any]):
    def __init__(self, keys: tuple[str, ...] = ("success", "toolCalls", "stepsCompleted")):
        self._keys = keys

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("hostile __getitem__")

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class HostileInt(int):
    def __int__(self) -> int:
        raise RuntimeError("hostile __int__")

    def __float__(self) -> float:
        raise RuntimeError("hostile __float__")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile int __eq__")

    __hash__ = int.__hash__


class HostileStr(str):
    __slots__ = ()

    def __len__(self) -> int:
        raise RuntimeError("hostile __len__")

    def lower(self) -> str:
        raise RuntimeError("hostile lower")


@dataclass
class Box:
    success: Any = None
    toolCalls: Any = None
    stepsCompleted: Any = None


def _hostile_leaves() -> st.SearchStrategy[object]:
    # Factories, not instances: hypothesis must be able to repr its own strategy.
    factories: list[Callable[[], object]] = [
        Hostile, RaisingProps, Anything, HostileMapping, lambda: HostileInt(7),
        lambda: HostileStr("MAX_ITERATIONS_REACHED"), object,
        lambda: ValueError("an exception value"), lambda: b"\x00\xff",
        lambda: bytearray(b"ab"), lambda: HUGE, lambda: dt.datetime(2026, 1, 1),
        lambda: float("nan"), lambda: float("inf"), lambda: 2**100, lambda: -5,
        lambda: StreamedItems([1, None]),
    ]
    return st.sampled_from(factories).map(lambda make: make())


LEAVES: st.SearchStrategy[object] = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=st.characters(categories=["Cs", "Lu", "Nd"]), max_size=10),
    st.sampled_from(KEYS), _hostile_leaves(),
)
KEY = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(), st.none())


def _objects(children: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    attrs = st.dictionaries(st.sampled_from(KEYS), children, max_size=6)
    return st.one_of(
        attrs.map(lambda d: SimpleNamespace(**d)),
        st.builds(Box, children, children, children),
    )


def _with_cycle(value: object) -> object:
    if isinstance(value, dict):
        value["self"] = value
        value["toolCalls"] = [value]
    elif isinstance(value, list):
        value.append(value)
    return value


JUNK: st.SearchStrategy[object] = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(KEY, children, max_size=8),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=8),
        _objects(children),
        st.dictionaries(st.sampled_from(KEYS), children, max_size=6).map(_with_cycle),
        st.lists(children, max_size=3).map(_with_cycle),
        st.lists(children, max_size=4).map(StreamedItems),
    ),
    max_leaves=25,
)

SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _assert_valid(result: object) -> None:
    assert isinstance(result, ExecutionResult)
    text = result.model_dump_json()
    assert isinstance(json.loads(text), dict)
    ExecutionResult.model_validate(result.model_dump())


@pytest.mark.parametrize("name", OURS)
@SETTINGS
@given(junk=JUNK)
def test_our_adapters_are_total_on_junk(name: str, junk: object) -> None:
    adapter = get_adapter(name)
    with armed():
        matched = adapter.matches(junk)
        assert isinstance(matched, bool)
        if matched:
            result = adapter.normalize(junk)  # what we claim, we normalize without raising
        else:
            try:
                result = adapter.normalize(junk)  # chosen explicitly with engine=
            except TypeError:
                return
    _assert_valid(result)


@pytest.mark.parametrize("name", BUILTIN_ORDER)
@SETTINGS
@given(junk=JUNK)
def test_every_builtin_survives_junk(name: str, junk: object) -> None:
    adapter = get_adapter(name)
    if name not in OURS and type(junk) is Hostile:
        return  # an object whose __class__ raises breaks isinstance itself (see conformance)
    matched = adapter.matches(junk)
    assert isinstance(matched, bool)
    if matched:
        try:
            result = adapter.normalize(junk)
        except Exception:  # allowed: the decorator records a normalization_error
            return
        _assert_valid(result)


ENGINES: tuple[str | None, ...] = (None, *BUILTIN_ORDER)


def _executor(engine: str | None) -> Callable[[object], object]:
    @logged_execution(engine=engine, agent_id="value.agent_id")
    def run(value: object) -> object:
        return value

    return run


EXECUTORS = {engine: _executor(engine) for engine in ENGINES}


@pytest.mark.parametrize("engine", ENGINES)
@SETTINGS
@given(junk=JUNK)
def test_decorator_never_breaks_the_host(engine: str | None, junk: object) -> None:
    run = EXECUTORS[engine]
    with capture(capture_content=True) as cap, armed():
        out = run(junk)
    assert out is junk
    assert len(cap.records) == 1
    record = cap.records[0]
    json.loads(record.model_dump_json())
    json.dumps(record.to_json_dict())


@settings(SETTINGS, max_examples=50)
@given(items=st.lists(JUNK, max_size=5))
def test_generator_executor_yielding_junk(items: list[object]) -> None:
    @logged_execution
    def stream() -> Iterator[object]:
        yield from items

    with capture() as cap, armed():
        got = list(stream())
    assert len(got) == len(items)
    assert all(a is b for a, b in zip(got, items, strict=True))
    (record,) = cap.records
    record.model_dump_json()
