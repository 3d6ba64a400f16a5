"""One message per key per interval, with a count of the ones held back. A leaf.

The SDK logs its own trouble from hot or looping code (the guard, the record's range checks,
the delivery worker); each of those says a thing once a minute, not once per call.
"""

from __future__ import annotations

import threading
import time

__all__ = ["RateLimiter"]


class RateLimiter:
    """Admits the first event per key in each `interval_s`; counts the ones it holds back."""

    __slots__ = ("_last", "_lock", "_suppressed", "interval_s")

    def __init__(self, interval_s: float = 60.0) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> int | None:
        """``None`` to hold this event back (it is counted); else the number held back for
        `key` since the last admitted one (say it with the message)."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)

    def reset(self) -> None:
        """Forget every key (tests)."""
        with self._lock:
            self._last.clear()
            self._suppressed.clear()


def held_back(n: int) -> str:
    """The suffix for a message admitted after `n` were held back."""
    return f" ({n} similar messages not logged)" if n else ""
