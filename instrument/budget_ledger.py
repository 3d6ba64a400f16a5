"""What a cached budget counts: the store's committed spend, read in the background, plus this
process's own runs, counted at once.

Nothing here does I/O on the call path. :class:`OwnSpend` counts each finished run of this
process (tokens when it finishes, USD when the delivery worker has priced it) until the store
surely holds it; :class:`SpendCache` keeps, per (per, key, window), the committed spend a
background thread reads from the store every ``refresh_s`` seconds (and at once for a key
seen the first time).

Counting each run exactly once: a run counts in :class:`OwnSpend` until the delivery worker
says its batch is committed (the pricer's settle listeners, called right after the store's
commit) and a refresh whose query started after that commit has replaced the store's figure.
Before the commit the store's answer cannot hold the run; after it, a query that starts later
does, so no run is missed or counted twice. A record the store refused for good (quarantined)
is settled too: it will never be in the store. A run tracked past :data:`MAX_TRACKED` is
forgotten as if delivered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Protocol
from uuid import UUID

from instrument.budget import Budget, window_start
from instrument.ratelimit import RateLimiter, held_back
from instrument.record import ExecutionRecord, exception_text

__all__ = [
    "MAX_KEYS",
    "MAX_TRACKED",
    "Committed",
    "OwnSpend",
    "SpendCache",
    "SpendReader",
    "record_tokens",
    "since_day",
]

_log = logging.getLogger(__name__)
_limiter = RateLimiter(60.0)

ZERO: Final = Decimal(0)
_DAY: Final = 86400
#: Most runs of this process tracked until the store holds them.
MAX_TRACKED: Final = 100_000
#: Most (per, key, window) spends cached; the least recently checked are forgotten.
MAX_KEYS: Final = 10_000
#: A key not checked for this many refresh intervals is no longer refreshed (its last value is
#: kept; the next check refreshes it at once).
_IDLE_REFRESHES: Final = 12


class SpendReader(Protocol):
    """What the cache reads: the store's committed spend since a time (``BudgetSource``)."""

    def spend(self, per: Any, key: str, since: datetime) -> Any: ...


def record_tokens(record: ExecutionRecord) -> int:
    """The tokens a run spent against a token limit, as the stores count them (their
    ``total_tokens``): the reported total, else input plus output when both were measured;
    0 when not measured (an unmeasured run cannot be counted)."""
    tokens = record.result.tokens
    if tokens is None:
        return 0
    if tokens.total_tokens is not None:
        return tokens.total_tokens
    if tokens.input_tokens is not None and tokens.output_tokens is not None:
        return tokens.input_tokens + tokens.output_tokens
    return 0


class _Run:
    __slots__ = ("day", "execution_id", "keys", "priced_at", "settled_at", "tokens", "usd")

    def __init__(self, execution_id: UUID, day: int, keys: list[tuple[str, str]],
                 tokens: int, usd: Decimal) -> None:
        self.execution_id = execution_id
        self.day = day
        self.keys = keys
        self.tokens = tokens
        self.usd = usd
        self.priced_at: float | None = None
        #: monotonic time its batch was committed (or it was quarantined); None: not yet
        self.settled_at: float | None = None


class _KeySpend:
    """One (per, key)'s runs not yet in the store, and their sums per UTC day."""

    __slots__ = ("by_day", "runs")

    def __init__(self) -> None:
        #: day -> [runs, tokens, usd, tokens of the runs not priced yet (still queued)]
        self.by_day: dict[int, list[Any]] = {}
        self.runs: list[_Run] = []


class OwnSpend:
    """This process's runs that the store may not hold yet, summed per (per, key, day)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._runs: dict[UUID, _Run] = {}
        self._keys: dict[tuple[str, str], _KeySpend] = {}
        #: which identities are counted (the `per` of every budget in the process)
        self.pers: frozenset[str] = frozenset()
        #: bumped by every :meth:`settled` call: a strict check that counted queued runs and
        #: sees it change knows a batch committed meanwhile (its store read may hold them)
        self.settle_gen = 0

    def count(self, record: ExecutionRecord) -> None:
        """A run finished (call path: a few dict operations under a lock)."""
        if record.result.refused:
            return
        pers = self.pers
        keys = [(per, value) for per, value in (
            ("user", record.user_id), ("tenant", record.tenant_id), ("agent", record.agent_id))
            if value is not None and per in pers]
        if not keys:
            return
        usd = record.result.cost_usd or ZERO
        run = _Run(record.execution_id, int(record.started_at.timestamp() // _DAY), keys,
                   record_tokens(record), usd)
        with self._lock:
            if len(self._runs) >= MAX_TRACKED:
                self._forget_locked(next(iter(self._runs.values())))
            self._runs[run.execution_id] = run
            for k in keys:
                ks = self._keys.get(k)
                if ks is None:
                    ks = self._keys[k] = _KeySpend()
                ks.runs.append(run)
                row = ks.by_day.get(run.day)
                if row is None:
                    ks.by_day[run.day] = [1, run.tokens, usd, run.tokens]
                else:
                    row[0] += 1
                    row[1] += run.tokens
                    row[2] += usd
                    row[3] += run.tokens

    def priced(self, record: ExecutionRecord) -> None:
        """The delivery worker priced the run's record; its batch is written next."""
        cost = record.result.cost_usd
        with self._lock:
            run = self._runs.get(record.execution_id)
            if run is None or run.priced_at is not None:
                return
            run.priced_at = time.monotonic()
            delta = ZERO
            if cost is not None and cost != run.usd:
                delta, run.usd = cost - run.usd, cost
            for k in run.keys:
                row = self._keys[k].by_day[run.day]
                row[2] += delta
                row[3] -= run.tokens

    def settled(self, records: list[ExecutionRecord]) -> None:
        """The delivery worker committed these records' batch (or quarantined them): a store
        query that starts from now on holds them."""
        now = time.monotonic()
        with self._lock:
            self.settle_gen += 1
            for record in records:
                run = self._runs.get(record.execution_id)
                if run is not None and run.settled_at is None:
                    run.settled_at = now

    @property
    def lock(self) -> threading.RLock:
        """Held while a refresh installs the store's answer and while a check reads it with
        this process's runs, so a check never sees one without the other."""
        return self._lock

    def totals(self, per: str, key: str, since_day: int,
               included_before: float | None = None) -> tuple[Decimal, int]:
        """USD and tokens of the runs counted for (per, key) on UTC days from `since_day`,
        less those settled before `included_before` (when a store read started: its answer
        holds them already)."""
        ks = self._keys.get((per, key))
        if ks is None:
            return ZERO, 0
        usd, tokens = ZERO, 0
        with self._lock:
            for day, (_, t, u, _) in ks.by_day.items():
                if day >= since_day:
                    usd += u
                    tokens += t
            if included_before is not None:
                # runs settle in the order they were counted (the spool is delivered in
                # order): the ones the store's answer holds are at the front, until pruned
                for run in ks.runs:
                    if run.settled_at is None or run.settled_at >= included_before:
                        break
                    if run.day >= since_day:
                        usd -= run.usd
                        tokens -= run.tokens
        return usd, tokens

    def queued_tokens(self, per: str, key: str, since_day: int) -> int:
        """Tokens of (per, key)'s runs no store query can see yet (a strict budget adds them
        to the committed spend): those not priced yet (still queued), and those priced whose
        batch is not committed yet."""
        ks = self._keys.get((per, key))
        if ks is None:
            return 0
        with self._lock:
            queued: int = sum(row[3] for day, row in ks.by_day.items() if day >= since_day)
            return queued + sum(run.tokens for run in ks.runs if run.day >= since_day
                                and run.priced_at is not None and run.settled_at is None)

    def prune(self, per: str, key: str, cutoff: float) -> None:
        """Forget (per, key)'s runs settled before `cutoff` (monotonic, when a store query
        started): its answer holds them."""
        k = (per, key)
        with self._lock:
            ks = self._keys.get(k)
            if ks is None:
                return
            kept: list[_Run] = []
            for run in ks.runs:
                if run.settled_at is not None and run.settled_at < cutoff:
                    self._drop_locked(ks, k, run)
                else:
                    kept.append(run)
            ks.runs = kept
            if not kept:
                del self._keys[k]

    def tracked_keys(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._keys)

    def tracked(self) -> int:
        return len(self._runs)

    def _drop_locked(self, ks: _KeySpend, k: tuple[str, str], run: _Run) -> None:
        row = ks.by_day[run.day]
        row[0] -= 1
        row[1] -= run.tokens
        row[2] -= run.usd
        if run.priced_at is None:
            row[3] -= run.tokens
        if row[0] <= 0:
            del ks.by_day[run.day]
        run.keys.remove(k)
        if not run.keys:
            self._runs.pop(run.execution_id, None)

    def _forget_locked(self, run: _Run) -> None:
        for k in list(run.keys):
            ks = self._keys[k]
            ks.runs.remove(run)
            self._drop_locked(ks, k, run)
            if not ks.runs:
                del self._keys[k]


@dataclass(slots=True)
class Committed:
    """The store's committed spend for one (per, key, window), as last read."""

    since: datetime
    refresh_s: float
    usd: Decimal = ZERO
    tokens: int = 0
    #: monotonic time the query behind these values started; None: never read yet
    refreshed: float | None = None
    #: monotonic time a check last used it
    used: float = 0.0


class SpendCache:
    """Committed spend per (per, key, window), refreshed by a background thread.

    `open_source` is called in that thread (never on the call path) and returns the store to
    read, or None when the configured store cannot answer spend queries (then only this
    process's own spend counts). `down` says why the store could not be read, or is None.
    """

    def __init__(self, own: OwnSpend, open_source: Callable[[], SpendReader | None],
                 hung_after_s: float = 10.0) -> None:
        self.own = own
        self._open_source = open_source
        self._source: SpendReader | None = None
        self._opened = False
        self.unsupported = False
        self.entries: dict[tuple[str, str, str | timedelta], Committed] = {}
        self._lock = threading.Lock()
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.down: str | None = None
        self._querying_since: float | None = None
        self.hung_after_s = hung_after_s

    # -- call path --------------------------------------------------------------------------
    def lookup(self, budget: Budget, key: str, since: datetime, now: float) -> Committed:
        """The cached spend for `budget` and `key` (a new key is read in the background now)."""
        k = (budget.per, key, budget.window)
        entry = self.entries.get(k)
        rolling = isinstance(budget.window, timedelta)
        if entry is None or (not rolling and entry.since != since):
            with self._lock:
                if len(self.entries) >= MAX_KEYS:
                    oldest = min(self.entries, key=lambda x: self.entries[x].used)
                    del self.entries[oldest]
                entry = self.entries[k] = Committed(since=since, refresh_s=budget.refresh_s)
            self._wake()
        elif now - entry.used > entry.refresh_s * _IDLE_REFRESHES:
            self._wake()  # idle until now: read it again soon
        elif budget.refresh_s < entry.refresh_s:
            entry.refresh_s = budget.refresh_s
        entry.used = now
        return entry

    def store_down(self, now: float) -> str | None:
        """Why the store cannot be read now (a failed read, or one hung too long), or None."""
        started = self._querying_since
        if started is not None and now - started > self.hung_after_s:
            return f"the store has not answered a spend query for {now - started:.0f} s"
        return self.down

    def start(self) -> None:
        """Run the refresher (it also forgets own runs once the store holds them)."""
        if self._thread is None:
            with self._lock:
                if self._thread is None and not self._stop.is_set():
                    self._thread = threading.Thread(target=self._loop, daemon=True,
                                                    name="instrument-budgets")
                    self._thread.start()

    def _wake(self) -> None:
        self.start()
        self._kick.set()

    # -- the refresher thread ---------------------------------------------------------------
    def close(self) -> None:
        self._stop.set()
        self._kick.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.refresh_once()
            except Exception as exc:  # the refresher must not die; the checks go on
                _say("budget-refresher", f"the budget refresher failed ({type(exc).__name__}: "
                     f"{exception_text(exc)}); retrying")
                wait = 5.0
            self._kick.wait(wait)
            self._kick.clear()
        self._close_source()

    def source(self) -> SpendReader | None:
        if not self._opened:
            self._opened = True
            self._source = self._open_source()
            self.unsupported = self._source is None
        return self._source

    def refresh_once(self) -> float:
        """Read every due entry once; the seconds until the next one is due."""
        source = self.source()
        if source is None:
            return 3600.0
        now = time.monotonic()
        wall = time.time()
        next_due = 1.0 if self.own.tracked() else 60.0  # own runs to forget once delivered
        for k, entry in list(self.entries.items()):
            per, key, window = k
            if now - entry.used > entry.refresh_s * _IDLE_REFRESHES:
                continue  # idle: kept as it is; the next check wakes us
            due = entry.refreshed is None or now - entry.refreshed >= entry.refresh_s
            if not due:
                assert entry.refreshed is not None
                next_due = min(next_due, entry.refresh_s - (now - entry.refreshed))
                continue
            since = window_start(window, wall) if isinstance(window, timedelta) else entry.since
            started = time.monotonic()
            self._querying_since = started
            try:
                spent = source.spend(per, key, since)
            except Exception as exc:  # the store is down or refuses: the policy decides
                self.down = f"reading spend from the store failed ({type(exc).__name__}: " \
                            f"{exception_text(exc)[:300]})"
                _say("budget-down", f"budgets: {self.down}; cached budgets count this "
                     "process's own spend and the last spend read until it answers (those "
                     "with on_store_down='deny' refuse runs meanwhile)")
                return min(e.refresh_s for e in self.entries.values()) if self.entries else 5.0
            finally:
                self._querying_since = None
            with self.own.lock:  # a check reads these and this process's runs together
                entry.usd = Decimal(spent.usd)
                entry.tokens = int(spent.tokens)
                entry.since = since
                entry.refreshed = started
            next_due = min(next_due, entry.refresh_s)
        self.down = None
        self._prune(now)
        return max(0.05, next_due)

    def _prune(self, now: float) -> None:
        """Forget own runs the store holds: for each (per, key), those settled before the
        oldest of its entries' reads started."""
        oldest: dict[tuple[str, str], float | None] = {}
        for (per, key, _), entry in list(self.entries.items()):
            k = (per, key)
            prev = oldest.get(k, now)
            oldest[k] = None if prev is None or entry.refreshed is None else min(
                prev, entry.refreshed)
        for per, key in self.own.tracked_keys():
            read = oldest.get((per, key), now)  # no entry: nothing checks it, the store has it
            if read is not None:
                self.own.prune(per, key, read)

    def _close_source(self) -> None:
        source = self._source
        close = getattr(source, "close", None)
        if close is not None:
            try:
                close()
            except Exception:  # closing a dead connection may fail; nothing is lost
                _log.debug("closing the budget store failed", exc_info=True)


def _say(key: str, message: str) -> None:
    n = _limiter.admit(key)
    if n is not None:
        _log.warning("logged-execution: %s%s", message, held_back(n))


def since_day(since: datetime) -> int:
    """The UTC day number (days since the epoch) `since` falls on."""
    return int(since.timestamp() // _DAY)
