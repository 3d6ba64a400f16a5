"""Shared helpers: timing rounds, summaries, synthetic records, process memory."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from instrument.record import (
    ExecutionRecord,
    ExecutionResult,
    StepCounts,
    TokenUsage,
    ToolCall,
)


@dataclass(frozen=True)
class Summary:
    name: str
    median: float
    p10: float
    p90: float

    def row(self, unit: str, baseline: float | None = None) -> list[str]:
        ratio = f"{self.median / baseline:.2f}x" if baseline else ""
        return [self.name, f"{self.median:,.2f} {unit}", f"{self.p10:,.2f}–{self.p90:,.2f}",
                ratio]


def summarize(name: str, samples: Sequence[float]) -> Summary:
    ordered = sorted(samples)
    n = len(ordered)
    return Summary(name, statistics.median(ordered), ordered[int(0.1 * (n - 1))],
                   ordered[int(0.9 * (n - 1))])


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def interleaved(variants: dict[str, Callable[[int], float]], rounds: int, calls: int,
                between: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """Run every variant once per round, in a shuffled order, `rounds` times.

    Each callable runs `calls` calls and returns the per-call time in microseconds. Interleaving
    spreads machine noise evenly over the variants, so their ratios are comparable.
    """
    out: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for _ in range(rounds):
        random.shuffle(names)
        for name in names:
            out[name].append(variants[name](calls))
            if between is not None:
                between()  # untimed: e.g. let the store drain before the next variant
    return out


def timed(fn: Callable[[], object]) -> Callable[[int], float]:
    def run(calls: int) -> float:
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        return (time.perf_counter_ns() - t0) / calls / 1000

    return run


def rss_mb() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_records(n: int, *, agents: int = 3, seed: int = 7) -> list[ExecutionRecord]:
    """Realistic mixed records (agentkit-like with tools, orchestrator-like with steps)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        agent = f"agent-{i % agents}"
        ok = rng.random() > 0.1
        started = now - timedelta(seconds=n - i)
        if i % 2:
            result = ExecutionResult(
                success=ok, iterations=rng.randint(1, 6),
                tokens=TokenUsage(input_tokens=rng.randint(100, 3000),
                                  output_tokens=rng.randint(10, 800)),
                tool_calls=[ToolCall(name="gmail.search", plugin="gmail", action="search",
                                     success=True, duration_ms=12.5, items_returned=3)],
                model="gpt-4o", provider="openai",
            )
            engine = "agentkit"
        else:
            result = ExecutionResult(
                success=ok, tokens=TokenUsage(total_tokens=rng.randint(100, 5000)),
                steps=StepCounts(completed=rng.randint(1, 8), failed=0 if ok else 1, skipped=0),
            )
            engine = "orchestrator"
        out.append(ExecutionRecord(
            execution_id=uuid.UUID(int=rng.getrandbits(128), version=4), agent_id=agent,
            user_id=f"user-{i % 2}", agent_name=agent, engine=engine, name=agent,
            started_at=started, completed_at=started + timedelta(milliseconds=250),
            duration_ms=250.0, result=result,
        ))
    return out
