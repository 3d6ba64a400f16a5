"""Exponential backoff with jitter, and a circuit breaker per store (and waiting on it)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Backoff", "BreakerStopped", "CircuitBreaker", "wait_for_breaker"]


@dataclass(slots=True)
class Backoff:
    """Delay before attempt n+1: ``min(cap, base * 2**n)``, half fixed and half random.

    The random half ("equal jitter") spreads out the retries of many processes that lost the
    database at the same moment; the fixed half keeps a minimum spacing.
    """

    base_s: float = 0.1
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        d = min(self.cap_s, self.base_s * (2.0 ** min(attempt, 32)))
        return d / 2 + self.rng.uniform(0, d / 2)


BreakerState = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class CircuitBreaker:
    """Stops hammering a failing store: a failure opens the breaker for a backoff delay (growing
    after `threshold` consecutive failures); then one probe batch is allowed (half open); a
    success closes it.

    Not thread safe: one worker thread owns it.
    """

    threshold: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    failures: int = 0
    opened_until: float = 0.0
    state: BreakerState = "closed"

    def allow(self, now: float | None = None) -> bool:
        if self.state == "closed":
            return True
        now = time.monotonic() if now is None else now
        if now >= self.opened_until:
            self.state = "half_open"
            return True
        return False

    def wait_s(self, now: float | None = None) -> float:
        """Seconds until the next attempt is allowed (0 when it is allowed now)."""
        if self.state == "closed":
            return 0.0
        now = time.monotonic() if now is None else now
        return max(0.0, self.opened_until - now)

    def success(self) -> None:
        self.failures = 0
        self.state = "closed"
        self.opened_until = 0.0

    def failure(self, *, min_delay_s: float = 0.0, now: float | None = None) -> float:
        """Record a failed attempt and open the breaker; returns the delay before the probe.

        Below `threshold` consecutive failures the delay stays at the first backoff step (a
        blip); from then on it grows exponentially up to ``backoff.cap_s``.
        """
        self.failures += 1
        step = 0 if self.failures < self.threshold else self.failures - self.threshold + 1
        delay = max(min_delay_s, self.backoff.delay(step))
        now = time.monotonic() if now is None else now
        self.opened_until = now + delay
        self.state = "open"
        return delay

    def force_probe(self) -> None:
        """Allow one attempt now (flush() asks for it: a serverless request is ending)."""
        if self.state != "closed":
            self.opened_until = 0.0


class BreakerStopped(Exception):
    """The pipeline is shutting down while a batch is still undelivered (it stays spooled)."""


def wait_for_breaker(breaker: CircuitBreaker, *, stop: threading.Event, probe: threading.Event,
                     flushing: Callable[[], bool]) -> None:
    """Block until `breaker` allows an attempt; raise :class:`BreakerStopped` once `stop` is set.

    While ``flushing()`` (a serverless request is ending), `probe` set means "try now": the
    breaker is forced to let one attempt through, and the wait is at most 0.5 s at a time.
    Otherwise a set `probe` only cuts one wait short and is cleared.
    """
    while not breaker.allow():
        if stop.is_set():
            raise BreakerStopped
        if probe.is_set() and flushing():
            probe.clear()
            breaker.force_probe()
            continue
        wait = breaker.wait_s()
        if flushing():
            wait = min(wait, 0.5)
        probe.wait(wait)
        if probe.is_set() and not flushing() and not stop.is_set():
            probe.clear()
