"""Budgets: a spending limit in USD or tokens, per user, tenant or agent, per window.

``@logged_execution(budget=Budget(limit_usd=5, per="user", window="day"))`` checks, before the
executor runs, what the call's user has spent in the window; at or over the limit the executor
does not run, :class:`~instrument.errors.BudgetExceeded` is raised to the caller, and a record
with status ``refused`` is written. This module is the value (validated once, at decoration
time) and its windows; the check itself is :mod:`instrument.budget_check`, the spend it reads
:mod:`instrument.budget_ledger`. docs/accounting.md ("Budgets") explains the modes and the
overshoot each allows.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final, Literal

from instrument.errors import BudgetExceeded, ConfigurationError
from instrument.record import usd_amount

__all__ = [
    "PERS",
    "Budget",
    "budgets_from",
    "exceeded",
    "store_down",
    "window_end",
    "window_start",
]

Per = Literal["user", "tenant", "agent"]
Mode = Literal["cached", "strict"]
OnStoreDown = Literal["allow", "deny"]
Window = Literal["day", "month"] | timedelta

#: The identities a budget can be counted per, and the record field each one reads.
PERS: Final = {"user": "user_id", "tenant": "tenant_id", "agent": "agent_id"}
_MODES: Final = ("cached", "strict")
_ON_DOWN: Final = ("allow", "deny")


def _usd(value: object) -> Decimal:
    return usd_amount(value, ConfigurationError(
        f"Budget(limit_usd={value!r}): give the limit in USD as a non-negative number or "
        "decimal string, e.g. Budget(limit_usd=5) or Budget(limit_usd='2.50')"))


@dataclass(frozen=True, slots=True)
class Budget:
    """A limit on what runs may spend, checked before each run of the decorated executor.

    ``limit_usd`` (USD, any number or decimal string; exact) and/or ``limit_tokens`` (total
    tokens) over ``window`` (``"day"`` and ``"month"`` are UTC calendar windows; a
    ``timedelta`` is a rolling window), counted ``per`` ``"user"``, ``"tenant"`` or
    ``"agent"`` (the record's ``user_id``, ``tenant_id`` or ``agent_id``; a call without that
    identity is not limited by this budget, which is logged once per function).

    ``mode="cached"`` (the default) makes no network call on the call path: a background thread
    reads the store's spend every ``refresh_s`` seconds, and this process's own runs count at
    once. ``mode="strict"`` asks the store before every run (one round trip on the call path,
    at most ``timeout_s`` seconds), so no run starts once the committed spend reached the
    limit. When the store cannot answer, ``on_store_down`` decides: ``"allow"`` runs (logged
    once) and ``"deny"`` refuses with :class:`~instrument.errors.BudgetExceeded`.

    Validated when built: a bad value raises :class:`~instrument.errors.ConfigurationError`
    naming the fix.
    """

    limit_usd: Decimal | float | str | None = None
    limit_tokens: int | None = None
    per: Per = "user"
    window: Window = "day"
    mode: Mode = "cached"
    on_store_down: OnStoreDown = "allow"
    refresh_s: float = 5.0
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if self.limit_usd is None and self.limit_tokens is None:
            raise ConfigurationError(
                "Budget() needs a limit: limit_usd=... (USD) and/or limit_tokens=... (tokens)")
        if self.limit_usd is not None:
            object.__setattr__(self, "limit_usd", _usd(self.limit_usd))
        tokens = self.limit_tokens
        if tokens is not None and (isinstance(tokens, bool) or not isinstance(tokens, int)
                                   or tokens < 0):
            raise ConfigurationError(
                f"Budget(limit_tokens={tokens!r}): give a whole number of tokens >= 0")
        if self.per not in PERS:
            raise ConfigurationError(
                f"Budget(per={self.per!r}): use one of {', '.join(map(repr, PERS))}")
        window = self.window
        if isinstance(window, timedelta):
            if window <= timedelta(0):
                raise ConfigurationError(
                    f"Budget(window={window!r}): a rolling window must be longer than zero, "
                    "e.g. timedelta(hours=6)")
        elif window not in ("day", "month"):
            raise ConfigurationError(
                f"Budget(window={window!r}): use 'day', 'month' (UTC calendar windows) or a "
                "datetime.timedelta (a rolling window)")
        if self.mode not in _MODES:
            raise ConfigurationError(
                f"Budget(mode={self.mode!r}): use 'cached' (no network call on the call path) "
                "or 'strict' (the store is asked before each run)")
        if self.on_store_down not in _ON_DOWN:
            raise ConfigurationError(
                f"Budget(on_store_down={self.on_store_down!r}): use 'allow' (run unchecked "
                "while the store is down) or 'deny' (refuse runs while it is down)")
        for name in ("refresh_s", "timeout_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value <= 0:
                raise ConfigurationError(
                    f"Budget({name}={value!r}): give a number of seconds greater than zero")
            object.__setattr__(self, name, float(value))

    @property
    def usd(self) -> Decimal | None:
        """`limit_usd` as the exact Decimal it was validated into."""
        return self.limit_usd if isinstance(self.limit_usd, Decimal) else None

    @property
    def field(self) -> str:
        """The record field the budget is counted per (``user_id``...)."""
        return PERS[self.per]

    def describe_window(self) -> str:
        window = self.window
        if isinstance(window, timedelta):
            return f"the last {_span(window)} (rolling)"
        return f"the current {window} (UTC)"


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{delta.total_seconds():g} seconds"


def budgets_from(value: object, owner: str) -> tuple[Budget, ...] | None:
    """The decorator's ``budget=`` (a Budget, a sequence of them, or None) as a tuple."""
    if value is None:
        return None
    items = (value,) if isinstance(value, Budget) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ConfigurationError(
            f"@logged_execution on {owner}: budget= takes instrument.Budget(...) or a list of "
            f"them, got a {type(value).__qualname__}")
    out = tuple(items)
    for b in out:
        if not isinstance(b, Budget):
            raise ConfigurationError(
                f"@logged_execution on {owner}: budget= takes instrument.Budget(...) or a list "
                f"of them; one item is a {type(b).__qualname__}")
    return out or None


_DAY: Final = 86400


def window_start(window: Window, now: float) -> datetime:
    """Where the window that holds `now` (epoch seconds) starts, in UTC."""
    if isinstance(window, timedelta):
        return datetime.fromtimestamp(now, UTC) - window
    if window == "day":
        return datetime.fromtimestamp(now - now % _DAY, UTC)
    today = datetime.fromtimestamp(now, UTC)
    return today.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def window_end(window: Window, start: datetime) -> datetime | None:
    """When a calendar window that began at `start` ends (None: a rolling window)."""
    if isinstance(window, timedelta):
        return None
    if window == "day":
        return start + timedelta(days=1)
    return (start + timedelta(days=32)).replace(day=1)


def _money(value: Decimal) -> str:
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return f"${text}"


def exceeded(budget: Budget, key: str, since: datetime, spent_usd: Decimal,
             spent_tokens: int) -> BudgetExceeded | None:
    """The refusal when spend reached a limit (USD checked first), else None."""
    usd = budget.usd
    if usd is not None and spent_usd >= usd:
        limit: Decimal | int = usd
        spent: Decimal | int = spent_usd
        amount = f"{_money(spent_usd)} of its {_money(usd)} limit"
        raise_hint = "limit_usd"
    elif budget.limit_tokens is not None and spent_tokens >= budget.limit_tokens:
        limit, spent = budget.limit_tokens, spent_tokens
        amount = f"{spent_tokens:,} tokens of its {budget.limit_tokens:,}-token limit"
        raise_hint = "limit_tokens"
    else:
        return None
    end = window_end(budget.window, since)
    wait = (f"wait for the window to reset at {end:%Y-%m-%d %H:%M} UTC" if end is not None
            else "wait until older runs leave the rolling window")
    return BudgetExceeded(
        f"budget exceeded: {budget.per} {key!r} has spent {amount} for "
        f"{budget.describe_window()}, since {since:%Y-%m-%d %H:%M} UTC; the run was not "
        f"started. Raise Budget({raise_hint}=...), {wait}, or catch "
        "instrument.BudgetExceeded to tell the user",
        limit=limit, spent=spent, window=budget.window, key=key, per=budget.per)


def store_down(budget: Budget, key: str, why: str, spent_usd: Decimal | None,
               spent_tokens: int | None) -> BudgetExceeded:
    """The refusal of ``on_store_down="deny"`` when the spend cannot be read."""
    usd = budget.usd
    limit: Decimal | int = usd if usd is not None else budget.limit_tokens or 0
    spent: Decimal | int | None = spent_usd if usd is not None else spent_tokens
    return BudgetExceeded(
        f"budget check unavailable: {why}, and Budget(on_store_down='deny') refuses runs while "
        f"the spend of {budget.per} {key!r} for {budget.describe_window()} cannot be read; the "
        "run was not started. Bring the store back (instrument doctor), or use "
        "on_store_down='allow' to run unchecked while it is down",
        limit=limit, spent=spent, window=budget.window, key=key, per=budget.per,
        store_down=True)
