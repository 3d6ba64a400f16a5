"""The one rate limiter the guard, the record's range checks and the worker's log share."""

from __future__ import annotations

import logging

import pytest

from instrument.ratelimit import RateLimiter, held_back


def test_admits_once_per_interval_and_counts_the_rest() -> None:
    limiter = RateLimiter(3600)
    assert limiter.admit("a") == 0
    assert [limiter.admit("a") for _ in range(3)] == [None, None, None]
    assert limiter.admit("b") == 0  # keys are independent
    limiter.interval_s = 0
    assert limiter.admit("a") == 3  # the next admitted one says how many were held back
    assert limiter.admit("a") == 0
    assert held_back(3) == " (3 similar messages not logged)"
    assert held_back(0) == ""


def test_the_guard_logs_a_repeated_failure_once(caplog: pytest.LogCaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from instrument import guard

    monkeypatch.setattr(guard, "_limiter", RateLimiter(3600))
    guard.set_strict(False)
    try:
        with caplog.at_level(logging.WARNING, logger="instrument"):
            for _ in range(5):
                guard.internal_error("the same trouble")
    finally:
        guard.set_strict(None)
    assert [r.getMessage() for r in caplog.records] == ["logged-execution: the same trouble"]
