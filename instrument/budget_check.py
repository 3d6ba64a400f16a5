"""The budget check before each run: cached (no I/O on the call path) or strict (one store round
trip, bounded in time), and the store-down policy.

One :class:`BudgetState` per live runtime holds the store opened for budget queries (its own
connection, never the delivery worker's), the cached spend and its refresher thread
(:mod:`instrument.budget_ledger`), this process's own spend (fed at each finish and by the
pricer's listener), and, for strict budgets, a small thread pool so that a hung store costs a
caller at most ``Budget.timeout_s``. A new runtime (``configure()``) gets a new state; a forked
child starts its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from instrument.budget import PERS, Budget, exceeded, store_down, window_start
from instrument.budget_ledger import OwnSpend, SpendCache, since_day
from instrument.context import ExecutionContext
from instrument.errors import BudgetExceeded, ConfigurationError
from instrument.ratelimit import RateLimiter, held_back
from instrument.record import ExecutionRecord, exception_text
from instrument.runtime import Runtime
from instrument.stores import open_store
from instrument.stores.base import BudgetSource

__all__ = ["INFLIGHT_TTL_S", "BudgetState", "check", "count", "register", "state_for"]

_log = logging.getLogger(__name__)
_limiter = RateLimiter(60.0)

#: A strict budget's in-flight reservation expires after this (its process died mid-run).
INFLIGHT_TTL_S: Final = 900.0
#: Threads that run strict checks (a hung store holds them; callers still return in time).
_STRICT_THREADS: Final = 4

#: True once any decorated function has a budget: from then on every finished run of the
#: process counts towards its user's, tenant's and agent's spend.
ACTIVE = False
_pers: frozenset[str] = frozenset()
_state: BudgetState | None = None
_state_lock = threading.Lock()


def register(budgets: tuple[Budget, ...]) -> None:
    """A function with `budgets` was decorated: count own spend per their identities."""
    global ACTIVE, _pers
    _pers = _pers | {b.per for b in budgets}
    ACTIVE = True
    state = _state
    if state is not None:
        state.own.pers = _pers


def state_for(rt: Runtime) -> BudgetState:
    """The budget state of the live runtime `rt` (built on first use)."""
    global _state
    state = _state
    if state is not None and state.rt is rt:
        return state
    with _state_lock:
        old = _state
        if old is None or old.rt is not rt:
            _state = BudgetState(rt)
            if old is not None:
                old.close()
        return _state  # type: ignore[return-value]


def _forget_in_child() -> None:
    """A forked child has none of the parent's threads: it builds its own state."""
    global _state, _state_lock
    _state = None
    _state_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)


def check(rt: Runtime, budgets: tuple[Budget, ...], ctx: ExecutionContext,
          warned: set[str]) -> BudgetExceeded | None:
    """The refusal for this call, or None to run it. `warned`: the function's warn-once set."""
    return state_for(rt).check(budgets, ctx, warned)


def count(rt: Runtime, record: ExecutionRecord) -> None:
    """A run of this process finished (its record was just submitted)."""
    state_for(rt).own.count(record)


def _say(key: str, message: str) -> None:
    n = _limiter.admit(key)
    if n is not None:
        _log.warning("logged-execution: %s%s", message, held_back(n))


class BudgetState:
    """Everything budgets keep for one runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.own = OwnSpend()
        self.own.pers = _pers
        self.cache = SpendCache(self.own, self._source)
        self._source_lock = threading.Lock()
        self._opened = False
        self._store: BudgetSource | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._running: dict[int, float] = {}  # strict checks in progress: id -> start
        self._ids = 0
        pricer = getattr(rt, "pricer", None)
        self._pricer = pricer
        if pricer is not None:
            pricer.add_listener(self.own.priced)
            pricer.add_settle_listener(self.own.settled)

    def close(self) -> None:
        if self._pricer is not None:
            self._pricer.remove_listener(self.own.priced)
            self._pricer.remove_settle_listener(self.own.settled)
        self.cache.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the store --------------------------------------------------------------------------
    def _source(self) -> BudgetSource | None:
        """The store budgets read (opened once, off the call path), or None when the
        configured store cannot answer spend queries."""
        with self._source_lock:
            if self._opened:
                return self._store
            self._opened = True
            settings = self.rt.settings
            try:
                store = open_store(
                    settings.database_url, supabase_url=settings.supabase_url,
                    supabase_key=settings.supabase_key,
                    connect_timeout_s=settings.connect_timeout_s,
                    statement_timeout_s=settings.statement_timeout_s,
                    network_timeout_s=settings.network_timeout_s)
            except ConfigurationError:
                _say("budget-source", "budgets: the configured store "
                     f"({settings.database_url}) cannot be read for spend; budgets count this "
                     "process's own runs only")
                return None
            if not isinstance(store, BudgetSource):
                _say("budget-source", f"budgets: the {store.dialect} store does not answer "
                     "spend queries; budgets count this process's own runs only")
                store.close()
                return None
            self._store = store
            return store

    # -- the check --------------------------------------------------------------------------
    def check(self, budgets: tuple[Budget, ...], ctx: ExecutionContext, warned: set[str]
              ) -> BudgetExceeded | None:
        wall = time.time()
        now = time.monotonic()
        for budget in budgets:
            key = getattr(ctx, PERS[budget.per])
            if key is None:
                self._no_key(budget, ctx, warned)
                continue
            since = window_start(budget.window, wall)
            refusal = (self._strict(budget, key, since, ctx, now) if budget.mode == "strict"
                       else self._cached(budget, key, since, now))
            if refusal is not None:
                return refusal
        return None

    @staticmethod
    def _no_key(budget: Budget, ctx: ExecutionContext, warned: set[str]) -> None:
        tag = f"budget:no-{budget.per}"
        if tag in warned:
            return
        warned.add(tag)
        field = PERS[budget.per]
        _log.warning(
            "logged-execution: %s: a call has no %s, so its budget per %s does not apply to it "
            "(the run is not limited). Set %s= on the decorator or execution_context(%s=...) "
            "(warned once per function)", ctx.name, field, budget.per, field, field)

    def _cached(self, budget: Budget, key: str, since: datetime, now: float
                ) -> BudgetExceeded | None:
        with self.own.lock:  # the store's answer and our runs it does not hold yet, together
            entry = self.cache.lookup(budget, key, since, now)
            own_usd, own_tokens = self.own.totals(budget.per, key, since_day(since),
                                                  entry.refreshed)
            usd, tokens = entry.usd + own_usd, entry.tokens + own_tokens
        down = None if self.cache.unsupported else self.cache.store_down(now)
        if down is not None:
            refusal = self._down(budget, key, down, usd, tokens)
            if refusal is not None:
                return refusal
        return exceeded(budget, key, since, usd, tokens)

    def _down(self, budget: Budget, key: str, why: str, usd: Decimal | None,
              tokens: int | None) -> BudgetExceeded | None:
        if budget.on_store_down == "deny":
            return store_down(budget, key, why, usd, tokens)
        _say(f"budget-allow:{budget.mode}", f"budgets: {why}; on_store_down='allow' lets runs "
             "start meanwhile" + (", checked against this process's own spend and the last "
                                  "spend read" if budget.mode == "cached" else " unchecked"))
        return None

    def _strict(self, budget: Budget, key: str, since: datetime, ctx: ExecutionContext,
                now: float) -> BudgetExceeded | None:
        if self.cache.unsupported or (self._opened and self._store is None):
            return self._cached(budget, key, since, now)  # no store to ask: own spend only
        self.cache.start()  # forgets this process's runs once the store holds them
        stuck = min(self._running.values(), default=None)
        if stuck is not None and now - stuck > budget.timeout_s:
            return self._down(budget, key, f"the store has not answered a budget check for "
                              f"{now - stuck:.1f} s", None, None)
        future = self._executor().submit(self._reserve, budget, key, since, ctx.execution_id)
        try:
            reservation = future.result(timeout=budget.timeout_s)
        except FutureTimeout:
            return self._down(budget, key, f"the store did not answer the budget check within "
                              f"{budget.timeout_s:g} s", None, None)
        except Exception as exc:  # the store is down or refuses: the policy decides
            return self._down(budget, key, f"the budget check failed ({type(exc).__name__}: "
                              f"{exception_text(exc)[:300]})", None, None)
        if reservation is None:
            return self._cached(budget, key, since, now)
        if reservation.allowed:
            return None
        usd = Decimal(reservation.spent_usd)
        tokens = int(reservation.spent_tokens) + self.own.queued_tokens(
            budget.per, key, since_day(since))
        refusal = exceeded(budget, key, since, usd, tokens)
        if refusal is None:  # refused for its runs in flight, below the committed limit
            refusal = BudgetExceeded(
                f"budget exceeded: {budget.per} {key!r} has runs in flight "
                f"({reservation.in_flight}) that may reach the limit for "
                f"{budget.describe_window()}; the run was not started. Retry when they "
                "finish, or raise the limit",
                limit=budget.usd if budget.usd is not None else budget.limit_tokens or 0,
                spent=usd if budget.usd is not None else tokens, window=budget.window,
                key=key, per=budget.per)
        return refusal

    def _executor(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(_STRICT_THREADS,
                                                    thread_name_prefix="instrument-budget")
                pool = self._pool
        return pool

    def _reserve(self, budget: Budget, key: str, since: datetime, execution_id: Any) -> Any:
        """In a pool thread: reserve the run in the store (None: no store answers)."""
        source = self._source()
        if source is None:
            return None
        with self._pool_lock:
            self._ids += 1
            ident = self._ids
            self._running[ident] = time.monotonic()
        try:
            for _ in range(3):
                gen = self.own.settle_gen
                limit_tokens = budget.limit_tokens
                if limit_tokens is not None:  # this process's runs still queued count too
                    queued = self.own.queued_tokens(budget.per, key, since_day(since))
                    limit_tokens = max(0, limit_tokens - queued)
                reservation = source.reserve(budget.per, key, since, budget.usd, limit_tokens,
                                             execution_id, INFLIGHT_TTL_S)
                # A refusal while one of our batches committed may have counted its runs
                # twice (queued here and committed in the store's read): ask again.
                if reservation.allowed or self.own.settle_gen == gen \
                        or budget.limit_tokens is None:
                    return reservation
            return reservation
        finally:
            with self._pool_lock:
                self._running.pop(ident, None)

