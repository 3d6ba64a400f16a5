"""instrument.Budget: validated when built, its windows, and BudgetExceeded's message."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from instrument import Budget, BudgetExceeded, ConfigurationError, InstrumentError, logged_execution
from instrument.budget import exceeded, store_down, window_end, window_start


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "needs a limit"),
    ({"limit_usd": -1}, "non-negative"),
    ({"limit_usd": float("nan")}, "non-negative"),
    ({"limit_usd": "lots"}, "non-negative"),
    ({"limit_usd": True}, "non-negative"),
    ({"limit_tokens": 1.5}, "whole number"),
    ({"limit_tokens": -3}, "whole number"),
    ({"limit_tokens": 10, "per": "team"}, "'user', 'tenant', 'agent'"),
    ({"limit_tokens": 10, "window": "week"}, "'day', 'month'"),
    ({"limit_tokens": 10, "window": timedelta(0)}, "longer than zero"),
    ({"limit_tokens": 10, "mode": "fast"}, "'cached'"),
    ({"limit_tokens": 10, "on_store_down": "maybe"}, "'allow'"),
    ({"limit_tokens": 10, "refresh_s": 0}, "greater than zero"),
    ({"limit_tokens": 10, "timeout_s": float("inf")}, "greater than zero"),
])
def test_a_bad_budget_is_refused_when_built_with_the_fix_named(kwargs: dict[str, Any],
                                                               message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Budget(**kwargs)


def test_limits_are_exact_and_the_budget_is_frozen() -> None:
    b = Budget(limit_usd=0.1, limit_tokens=5, per="tenant", window=timedelta(hours=6))
    assert b.limit_usd == Decimal("0.1")
    assert b.usd == Decimal("0.1")
    assert Budget(limit_usd="2.50").usd == Decimal("2.50")
    with pytest.raises(AttributeError):
        b.per = "user"  # type: ignore[misc]
    assert b == Budget(limit_usd=Decimal("0.1"), limit_tokens=5, per="tenant",
                       window=timedelta(hours=6))


def test_the_decorator_takes_one_budget_or_a_list_and_nothing_else() -> None:
    logged_execution(budget=[Budget(limit_tokens=1), Budget(limit_usd=1, per="tenant")])(
        lambda: None)
    with pytest.raises(ConfigurationError, match=r"budget= takes instrument\.Budget"):
        logged_execution(budget={"limit_usd": 5})(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="one item is a int"):
        logged_execution(budget=[Budget(limit_tokens=1), 3])(lambda: None)  # type: ignore[list-item]


def test_windows_are_utc_calendar_days_and_months_or_rolling() -> None:
    now = datetime(2026, 12, 31, 23, 59, 30, tzinfo=UTC).timestamp()
    day = window_start("day", now)
    assert day == datetime(2026, 12, 31, tzinfo=UTC)
    assert window_end("day", day) == datetime(2027, 1, 1, tzinfo=UTC)
    month = window_start("month", now)
    assert month == datetime(2026, 12, 1, tzinfo=UTC)
    assert window_end("month", month) == datetime(2027, 1, 1, tzinfo=UTC)
    assert window_end("month", datetime(2027, 1, 1, tzinfo=UTC)) == datetime(2027, 2, 1,
                                                                                tzinfo=UTC)
    rolling = window_start(timedelta(hours=6), now)
    assert rolling == datetime(2026, 12, 31, 17, 59, 30, tzinfo=UTC)
    assert window_end(timedelta(hours=6), rolling) is None


def test_budget_exceeded_names_the_limit_the_spend_the_window_and_what_to_do() -> None:
    b = Budget(limit_usd="10", per="user")
    since = datetime(2026, 12, 14, tzinfo=UTC)
    assert exceeded(b, "u-1", since, Decimal("9.99"), 10**9) is None
    err = exceeded(b, "u-1", since, Decimal("10.0213"), 0)
    assert isinstance(err, BudgetExceeded)
    assert isinstance(err, InstrumentError)
    assert (err.limit, err.spent, err.window, err.key, err.per) == (
        Decimal("10"), Decimal("10.0213"), "day", "u-1", "user")
    text = str(err)
    for part in ("user 'u-1'", "$10.0213", "$10 limit", "current day (UTC)",
                 "2026-12-14 00:00", "2026-12-15 00:00", "not started", "limit_usd"):
        assert part in text, part
    tok = exceeded(Budget(limit_tokens=1000, per="agent", window=timedelta(hours=1)), "bot",
                   since, Decimal(0), 1000)
    assert tok is not None
    assert tok.limit == 1000
    assert tok.spent == 1000
    assert "1,000 tokens" in str(tok)
    assert "last 1 hour (rolling)" in str(tok)
    down = store_down(b, "u-1", "the store did not answer within 2 s", None, None)
    assert down.store_down
    assert "did not answer" in str(down)
    assert "on_store_down" in str(down)
    copy = pickle.loads(pickle.dumps(err))  # crosses process pools intact
    assert (str(copy), copy.limit, copy.spent, copy.key) == (text, err.limit, err.spent, "u-1")
