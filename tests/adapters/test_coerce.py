"""The shared coercions: total, never raising, None for anything unusable."""

from __future__ import annotations

import datetime as dt
import enum
import json
from dataclasses import dataclass

import pytest

from instrument.adapters._coerce import (
    MISSING,
    field,
    has_field,
    to_bool,
    to_count,
    to_datetime,
    to_float,
    to_str,
    truncate,
)
from instrument.adapters._jsonsafe import is_json_safe, json_safe


class Color(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(("value", "expected"), [
    (3, 3), (0, 0), (3.0, 3), ("12", 12), (" 7 ", 7), ("1e3", 1000), (-1, None), (2.5, None),
    (float("nan"), None), (float("inf"), None), (True, None), (None, None), ("abc", None),
    (2**70, None), ([], None), ("9" * 100, None),
])
def test_to_count(value: object, expected: int | None) -> None:
    assert to_count(value) == expected


@pytest.mark.parametrize(("value", "expected"), [
    (1.5, 1.5), (2, 2.0), ("0.25", 0.25), (-1.0, None), (float("nan"), None),
    (float("-inf"), None), (False, None), ("nan", None), ({}, None),
])
def test_to_float(value: object, expected: float | None) -> None:
    assert to_float(value) == expected


def test_to_float_negative_allowed_on_request() -> None:
    assert to_float(-2, nonneg=False) == -2.0


@pytest.mark.parametrize(("value", "expected"), [
    (True, True), (False, False), (1, True), (0, False), (2, None), ("yes", True),
    ("FAILED", False), ("maybe", None), (None, None), (1.0, None),
])
def test_to_bool(value: object, expected: bool | None) -> None:
    assert to_bool(value) is expected


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-12-05T10:00:00Z", dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)),
    ("2026-12-05T11:00:00+01:00", dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)),
    ("2026-12-05T10:00:00", dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)),  # naive: UTC
    (1_796_464_800_000, dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)),  # Date.now(): ms
    (1_796_464_800, dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)),  # seconds
    (dt.datetime(2026, 12, 5, 10), dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)),
    (0, None), (True, None), (float("nan"), None), (-5, None), (1e300, None),
    ("yesterday", None), (None, None), ([], None),
])
def test_to_datetime(value: object, expected: dt.datetime | None) -> None:
    assert to_datetime(value) == expected


def test_to_str() -> None:
    assert to_str("abc") == "abc"
    assert to_str(5) == "5"
    assert to_str(5, scalars=False) is None
    assert to_str(float("nan")) is None
    assert to_str(Color.RED) == "red"
    assert to_str(["x"]) is None
    long = to_str("y" * 1000, 10)
    assert long is not None
    assert long.startswith("y" * 10)
    assert "truncated 990 chars" in long
    assert to_str("bad \ud800 surrogate") == "bad ? surrogate"


def test_truncate_str_subclass() -> None:
    class Weird(str):
        def __getitem__(self, key: object) -> str:
            raise RuntimeError("no")

    assert truncate(Weird("abcdef"), 3).startswith("abc")


def test_field_and_has_field() -> None:
    @dataclass
    class D:
        a: int
        b: int | None = None

        @property
        def boom(self) -> int:
            raise RuntimeError("property raised")

    class Proxy:
        def __getattr__(self, name: str) -> object:
            return 1

    d = D(1)
    assert field(d, "x", "a") == 1
    assert field(d, "b") is None
    assert field(d, "missing") is MISSING
    assert has_field(d, "boom")
    assert field(d, "boom") is MISSING
    assert not has_field(Proxy(), "anything")  # a catch-all proxy does not match everything
    assert field({"a": 2}, "a") == 2
    assert field(None, "a") is MISSING


def test_json_safe() -> None:
    cyclic: dict[str, object] = {"n": float("nan")}
    cyclic["self"] = cyclic
    out = json_safe({
        "c": cyclic, "b": b"abc", "d": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "e": Color.RED,
        "s": {3}, 7: "int key", "o": object(), "big": 2**80, "deep": [[[[[[[[[[1]]]]]]]]]],
    })
    assert isinstance(out, dict)
    assert out["c"] == {"n": None, "self": "<cycle>"}
    assert out["b"] == "<bytes len=3>"
    assert out["d"] == "2026-01-01T00:00:00+00:00"
    assert out["e"] == "red"
    assert out["s"] == [3]
    assert out["7"] == "int key"
    assert out["o"] == "<object>"
    assert out["big"] == str(2**80)
    assert "<too deep>" in json.dumps(out["deep"])
    assert is_json_safe(out)


def test_is_json_safe() -> None:
    assert is_json_safe({"a": [1, 2.5, "x", None, True]})
    assert not is_json_safe({"a": float("nan")})
    assert not is_json_safe({1: 2})
    assert not is_json_safe((1, 2))
    assert not is_json_safe("x" * 5000)
    lst: list[object] = []
    lst.append(lst)
    assert not is_json_safe(lst)
