"""The peers side by side: each installed peer's decorator on the same function as ours.

Each peer runs in its own process (peers install global providers, processors and
instrumentations that would otherwise tax every other variant), interleaved round by round with
a raw OpenTelemetry span and our decorator in that same process, so the ratios in one row are
comparable (a peer that installs the global provider itself, Traceloop, is set up first, so
the raw span and ours use its provider). Every peer is set up to send nothing over the network,
with its own defaults
otherwise (Langfuse and LangSmith capture inputs and outputs by default; that is part of what
they cost). A peer that is not installed is reported as such; install them into the benchmark
environment with ``pip install traceloop-sdk logfire openinference-instrumentation langfuse
langsmith`` (Traceloop pins older OpenTelemetry packages: give it its own virtualenv).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: peer -> (the module that tells whether it is installed, what it decorates with)
PEERS: dict[str, tuple[str, str]] = {
    "traceloop": ("traceloop.sdk", "Traceloop @task"),
    "logfire": ("logfire", "Logfire @instrument"),
    "openinference": ("openinference.instrumentation", "OpenInference @tracer.chain"),
    "langfuse": ("langfuse", "Langfuse @observe"),
    "langsmith": ("langsmith", "LangSmith @traceable"),
}
_CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens: an export attempt fails at once


def _f(x: int) -> int:
    return x + 1


def _traceloop(provider: Any) -> Callable[[int], int]:
    from traceloop.sdk import Traceloop
    from traceloop.sdk.decorators import task

    from benchmarks.overhead import NoopExporter

    Traceloop.init(app_name="bench", exporter=NoopExporter(), disable_batch=False,
                   telemetry_enabled=False)
    return task(name="f")(_f)  # type: ignore[no-any-return]


def _logfire(provider: Any) -> Callable[[int], int]:
    import logfire

    logfire.configure(send_to_logfire=False, console=False)
    return logfire.instrument("f")(_f)  # type: ignore[no-any-return]


def _openinference(provider: Any) -> Callable[[int], int]:
    from openinference.instrumentation import OITracer, TraceConfig

    tracer = OITracer(provider.get_tracer("bench-openinference"), config=TraceConfig())
    return tracer.chain(_f)  # type: ignore[no-any-return]


def _langfuse(provider: Any) -> Callable[[int], int]:
    from langfuse import Langfuse, observe
    from opentelemetry.sdk.trace import TracerProvider

    from benchmarks.overhead import NoopExporter

    # Its own provider: given none, Langfuse adds its processor to the global one, which
    # would tax the raw span and our decorator in this process too.
    Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=_CLOSED_PORT,
             tracer_provider=TracerProvider(), span_exporter=NoopExporter())
    return observe()(_f)  # type: ignore[no-any-return]


def _langsmith(provider: Any) -> Callable[[int], int]:
    from langsmith import Client, traceable

    client = Client(api_url=_CLOSED_PORT, api_key="lsv2-bench")
    return traceable(name="f", client=client)(_f)  # type: ignore[no-any-return]


#: peers that set the global tracer provider themselves
_OWNS_GLOBAL = frozenset({"traceloop"})
_SETUP: dict[str, Callable[[Any], Callable[[int], int]]] = {
    "traceloop": _traceloop, "logfire": _logfire, "openinference": _openinference,
    "langfuse": _langfuse, "langsmith": _langsmith,
}


def installed(peer: str) -> bool:
    try:
        return importlib.util.find_spec(PEERS[peer][0]) is not None
    except ModuleNotFoundError:
        return False


def measure_one(peer: str, *, rounds: int, calls: int) -> dict[str, float]:
    """In this process: medians (µs) of a raw span, our decorator and `peer`, interleaved."""
    import statistics

    import instrument
    from benchmarks.common import interleaved, timed
    from benchmarks.overhead import _provider
    from instrument import runtime

    if peer == "langsmith":
        os.environ.setdefault("LANGSMITH_TRACING", "true")
    if peer in _OWNS_GLOBAL:
        # It installs the global provider (or adds its processor to one already there): set it
        # up first, so the raw span and our decorator use its provider, with its one processor
        theirs = _SETUP[peer](None)
        provider = _provider()
    else:
        provider = _provider()
        theirs = _SETUP[peer](provider)
    tracer = provider.get_tracer("bench")
    tmp = Path(tempfile.mkdtemp(prefix="instrument-peers-"))
    instrument.configure(database_url=f"sqlite:///{tmp / 'bench.db'}", traces="none",
                         strict=False, batch_size=calls * 8, flush_interval_s=3600.0)
    ours = instrument.logged_execution(_f)

    def raw() -> int:
        with tracer.start_as_current_span("f"):
            return _f(1)

    label = PEERS[peer][1]
    samples = interleaved({
        "raw OTel span": timed(raw),
        "@logged_execution": timed(lambda: ours(1)),
        label: timed(lambda: theirs(1)),
    }, rounds, calls, between=lambda: runtime.current().flush(60.0))
    instrument.shutdown(10.0)
    return {k: statistics.median(v) for k, v in samples.items()}


def run(*, rounds: int = 15, calls: int = 2000, print_table: bool = True,
        python: str | None = None) -> dict[str, dict[str, float] | str]:
    """Every peer in its own process (`python`: the interpreter of the benchmark environment)."""
    out: dict[str, dict[str, float] | str] = {}
    exe = python or sys.executable
    root = Path(__file__).resolve().parents[1]
    for peer in PEERS:
        probe = subprocess.run(
            [exe, "-c", f"import benchmarks.peers as p, sys; sys.exit(0 if p.installed({peer!r})"
             " else 3)"], cwd=root, capture_output=True, text=True, timeout=120, check=False)
        if probe.returncode == 3:
            out[peer] = "not installed"
            continue
        proc = subprocess.run(
            [exe, "-m", "benchmarks.peers", peer, str(rounds), str(calls)], cwd=root,
            capture_output=True, text=True, timeout=1800, check=False,
            env={**os.environ, "OTEL_SDK_DISABLED": "false"})
        lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            out[peer] = f"failed: {tail[:200]}"
            continue
        out[peer] = json.loads(lines[-1])
    if print_table:
        from benchmarks.report import table

        rows = []
        for peer, res in out.items():
            if isinstance(res, str):
                rows.append([PEERS[peer][1], res, "", ""])
                continue
            base = res["raw OTel span"]
            theirs = res[PEERS[peer][1]]
            ours = res["@logged_execution"]
            rows.append([PEERS[peer][1], f"{theirs:,.2f} µs ({theirs / base:.2f}x)",
                         f"{ours:,.2f} µs ({ours / base:.2f}x)", f"{base:,.2f} µs"])
        table("The peers, each in its own process (µs per call; × raw OTel span in that process)",
              ["peer", "peer", "@logged_execution (same process)", "raw span"], rows)
    return out


if __name__ == "__main__":
    name, n_rounds, n_calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(measure_one(name, rounds=n_rounds, calls=n_calls)))
