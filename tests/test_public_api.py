"""The public surface is pinned: adding or removing a name is a deliberate, reviewed change."""

from __future__ import annotations

import importlib

import pytest

INSTRUMENT_ALL = [
    "SCHEMA_VERSION",
    "Budget",
    "BudgetExceeded",
    "ConfigurationError",
    "ErrorInfo",
    "ExecutionContext",
    "ExecutionRecord",
    "ExecutionResult",
    "InstrumentError",
    "MemoryUsage",
    "RecordRejected",
    "SchemaMismatch",
    "StepCounts",
    "StoreUnavailable",
    "TokenUsage",
    "ToolCall",
    "WorkflowShape",
    "configure",
    "current_execution",
    "execution_context",
    "flush",
    "literal",
    "logged_execution",
    "shutdown",
]

ADAPTERS_ALL = [
    "ENTRY_POINT_GROUP",
    "Adapter",
    "DeferredAdapter",
    "StreamedItems",
    "UnknownAdapterError",
    "available_adapters",
    "detect_adapter",
    "get_adapter",
    "register_adapter",
    "unregister_adapter",
]


def _isort_key(name: str) -> tuple[int, str]:
    """isort-style order (ruff RUF022): CONSTANTS, then Classes, then functions, each A-Z."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


@pytest.mark.parametrize(("module", "expected"), [("instrument", INSTRUMENT_ALL),
                                                   ("instrument.adapters", ADAPTERS_ALL)])
def test_all_is_pinned_sorted_and_importable(module: str, expected: list[str]) -> None:
    mod = importlib.import_module(module)
    assert list(mod.__all__) == expected, (
        f"{module}.__all__ changed; if that is intended, update tests/test_public_api.py "
        "and the docs"
    )
    assert list(mod.__all__) == sorted(mod.__all__, key=_isort_key)
    assert len(set(mod.__all__)) == len(mod.__all__)
    for name in mod.__all__:
        assert not name.startswith("_")
        assert getattr(mod, name) is not None


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from instrument import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == sorted(INSTRUMENT_ALL)


def test_api_md_names_are_exported() -> None:
    """The names docs/ and API.md promise users."""
    import instrument
    import instrument.testing
    from instrument import adapters

    for name in ("logged_execution", "configure", "flush", "shutdown", "current_execution",
                 "execution_context", "literal", "ExecutionRecord", "ExecutionResult",
                 "TokenUsage", "ToolCall", "ErrorInfo", "MemoryUsage", "StepCounts",
                 "WorkflowShape"):
        assert name in instrument.__all__
    for name in ("register_adapter", "get_adapter", "available_adapters"):
        assert name in adapters.__all__
    assert callable(instrument.testing.capture)
    assert callable(instrument.testing.assert_parity)
    assert adapters.ENTRY_POINT_GROUP == "logged_execution.adapters"
