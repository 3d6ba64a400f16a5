"""Backoff and circuit breaker arithmetic."""

from __future__ import annotations

import random

from instrument.pipeline.retry import Backoff, CircuitBreaker


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    b = Backoff(base_s=0.1, cap_s=2.0, rng=random.Random(1))
    for attempt, full in enumerate([0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]):
        d = b.delay(attempt)
        assert full / 2 <= d <= full
    assert len({round(b.delay(3), 6) for _ in range(20)}) > 1  # jittered


def test_breaker_opens_waits_probes_and_closes() -> None:
    br = CircuitBreaker(threshold=2, backoff=Backoff(base_s=1.0, cap_s=8.0,
                                                     rng=random.Random(2)))
    assert br.allow(now=0.0)
    d1 = br.failure(now=0.0)
    assert br.state == "open"
    assert not br.allow(now=d1 / 2)
    assert br.allow(now=d1)
    assert br.state == "half_open"
    d2 = br.failure(now=10.0)
    d3 = br.failure(now=20.0)
    assert d3 > d2 / 2  # grows after the threshold
    assert abs(br.wait_s(now=20.0) - d3) < 1e-9
    br.force_probe()
    assert br.allow(now=20.0)
    br.success()
    assert br.state == "closed"
    assert br.failures == 0


def test_a_schema_problem_waits_at_least_the_minimum() -> None:
    br = CircuitBreaker()
    assert br.failure(min_delay_s=30.0, now=0.0) >= 30.0
    assert not br.allow(now=29.0)
