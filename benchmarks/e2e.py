"""End to end, the way a user pays: whole-process CPU per execution, spans exported for real.

Every variant runs in a fresh interpreter (global providers and instrumentations would tax the
others otherwise) and calls the same one-line function ``calls`` times. Spans go over
OTLP/HTTP (protobuf) to a loopback sink that runs in *another* process, so its decoding is not
counted; ours also writes its rows to a SQLite file. The figure is ``getrusage(RUSAGE_SELF)``
user + system time, taken after warm-up and again after the variant's own shutdown has exported
every span and (ours) written every row: every thread of the process counts, the exporter's and
the delivery worker's included. Variants run interleaved, round by round, in a shuffled order.
The sink counts the spans it received, so a variant that drops spans under load shows it.

Peers run when they are importable by one of the ``--python`` interpreters (comma-separated:
Traceloop pins older OpenTelemetry packages and wants an environment of its own).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
#: variant -> what it is, in the report
VARIANTS: dict[str, str] = {
    "raw": "raw SDK span",
    "raw5": "raw span + 5 attributes",
    "ours": "ours: spans + rows",
    "ours_agentkit": "ours, agentkit-shaped result",
    "ours_rows": "ours: rows only (tracing off)",
    "traceloop": "Traceloop @task",
    "logfire": "Logfire @instrument",
    "openinference": "OpenInference @tracer.chain",
    "langfuse": "Langfuse @observe",
    "langsmith": "LangSmith @traceable",
}
_PEER_MODULES = {"traceloop": "traceloop.sdk", "logfire": "logfire",
                 "openinference": "openinference.instrumentation", "langfuse": "langfuse",
                 "langsmith": "langsmith"}
_AGENTKIT = {"success": True, "iterations": 2, "model": "gpt-4o", "provider": "openai",
             "tokensUsed": {"input": 812, "output": 96, "total": 908},
             "toolCalls": [{"plugin": "gmail", "action": "search", "success": True,
                            "duration": 12}]}


# --- the sink (its own process) -----------------------------------------------------------

def _count_spans(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    return sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)


def serve_sink(port_file: str) -> None:
    """Accept every POST with 200; count OTLP trace spans; GET /count?reset answers the count."""
    lock = threading.Lock()
    state = {"spans": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.endswith("/v1/traces"):
                try:
                    n = _count_spans(body)
                except Exception:  # a peer's non-OTLP batch: counted as received, not decoded
                    n = 0
                with lock:
                    state["spans"] += n
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_GET(self) -> None:
            with lock:
                n = state["spans"]
                if "reset" in self.path:
                    state["spans"] = 0
            payload = json.dumps({"spans": n}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


# --- one variant (its own process) --------------------------------------------------------

def _f(x: int) -> int:
    return x + 1


def _raw_provider(endpoint: str) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces")))
    return provider


def _setup(variant: str, endpoint: str, db: str) -> tuple[Callable[[int], Any],
                                                           Callable[[], object]]:
    """(the function to call, what exports/writes everything before the second reading)."""
    if variant in ("raw", "raw5"):
        provider = _raw_provider(endpoint)
        tracer = provider.get_tracer("bench")
        if variant == "raw":
            def call(x: int) -> int:
                with tracer.start_as_current_span("f"):
                    return _f(x)
        else:
            def call(x: int) -> int:
                with tracer.start_as_current_span("f") as span:
                    span.set_attribute("a.one", "agent-1")
                    span.set_attribute("a.two", "user-1")
                    span.set_attribute("a.three", "manual")
                    span.set_attribute("a.four", 4)
                    span.set_attribute("a.five", True)
                    return _f(x)
        return call, provider.shutdown
    if variant.startswith("ours"):
        import instrument

        instrument.configure(
            database_url=f"sqlite:///{db}",
            traces="none" if variant == "ours_rows" else "otlp",
            service_name="bench")
        if variant == "ours_agentkit":
            @instrument.logged_execution(engine="agentkit", agent_id=instrument.literal("a-1"))
            def ours(x: int) -> dict[str, Any]:
                return _AGENTKIT
        else:
            @instrument.logged_execution(agent_id=instrument.literal("a-1"))
            def ours(x: int) -> int:
                return _f(x)
        return ours, lambda: instrument.shutdown(120.0)
    return _peer(variant, endpoint)


def _peer(variant: str, endpoint: str) -> tuple[Callable[[int], Any], Callable[[], object]]:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    if variant == "traceloop":
        from opentelemetry import trace
        from traceloop.sdk import Traceloop
        from traceloop.sdk.decorators import task

        Traceloop.init(app_name="bench", api_endpoint=endpoint, telemetry_enabled=False)
        provider = trace.get_tracer_provider()
        return task(name="f")(_f), provider.shutdown  # type: ignore[attr-defined]
    if variant == "logfire":
        import logfire

        logfire.configure(send_to_logfire=False, console=False, additional_span_processors=[
            BatchSpanProcessor(OTLPSpanExporter(f"{endpoint}/v1/traces"))])
        return logfire.instrument("f")(_f), logfire.shutdown
    if variant == "openinference":
        from openinference.instrumentation import OITracer, TraceConfig

        provider = _raw_provider(endpoint)
        tracer = OITracer(provider.get_tracer("bench"), config=TraceConfig())
        return tracer.chain(_f), provider.shutdown
    if variant == "langfuse":
        from langfuse import Langfuse, get_client, observe

        Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=endpoint)
        return observe()(_f), lambda: get_client().shutdown()
    if variant == "langsmith":
        os.environ.update(LANGSMITH_TRACING="true", LANGSMITH_ENDPOINT=endpoint,
                          LANGSMITH_API_KEY="bench")
        from langsmith import traceable
        from langsmith.run_trees import get_cached_client

        return traceable(name="f")(_f), lambda: get_cached_client().flush()
    raise SystemExit(f"unknown variant {variant!r}")


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def run_variant(variant: str, calls: int, endpoint: str, db: str) -> dict[str, float]:
    fn, finish = _setup(variant, endpoint, db)
    for i in range(min(500, calls)):  # warm-up: imports, first-call caches, the first batch
        fn(i)
    cpu0 = _cpu_s()
    for i in range(calls):
        fn(i)
    finish()
    cpu = _cpu_s() - cpu0
    return {"cpu_us": cpu / calls * 1e6, "calls": calls + min(500, calls)}


# --- the driver ---------------------------------------------------------------------------

def _get(url: str) -> dict[str, Any]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:  # the loopback sink
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _importable(python: str, module: str) -> bool:
    probe = f"import importlib.util,sys; sys.exit(importlib.util.find_spec({module!r}) is None)"
    return subprocess.run([python, "-c", probe], capture_output=True, check=False).returncode == 0


def run(*, rounds: int, calls: int, python: str | None = None) -> dict[str, list[float]]:
    from benchmarks.report import table

    pythons = python.split(",") if python else [sys.executable]
    variants = ["raw", "raw5", "ours", "ours_agentkit", "ours_rows"]
    missing = []
    where: dict[str, str] = {}
    for peer, module in _PEER_MODULES.items():
        found = next((p for p in pythons if _importable(p, module)), None)
        if found is None:
            missing.append(peer)
        else:
            variants.append(peer)
            where[peer] = found
    tmp = Path(tempfile.mkdtemp(prefix="instrument-e2e-"))
    port_file = tmp / "port"
    sink = subprocess.Popen([sys.executable, "-m", "benchmarks.e2e", "--sink", str(port_file)],
                            cwd=ROOT)
    try:
        for _ in range(100):
            if port_file.exists() and port_file.read_text():
                break
            threading.Event().wait(0.05)
        endpoint = f"http://127.0.0.1:{port_file.read_text()}"
        cpu: dict[str, list[float]] = {v: [] for v in variants}
        received: dict[str, list[float]] = {v: [] for v in variants}
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "INSTRUMENT_SPOOL_DIR": str(tmp / "spool")}
        for r in range(rounds):
            order = list(variants)
            random.shuffle(order)
            for v in order:
                db = tmp / f"{v}-{r}.db"
                _get(f"{endpoint}/count?reset")
                exe = where.get(v, sys.executable)
                proc = subprocess.run(
                    [exe, "-m", "benchmarks.e2e", "--variant", v, "--calls", str(calls),
                     "--endpoint", endpoint, "--db", str(db)],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
                if proc.returncode != 0:
                    raise SystemExit(f"e2e variant {v} failed:\n{proc.stderr[-3000:]}")
                out = json.loads(proc.stdout.strip().splitlines()[-1])
                cpu[v].append(out["cpu_us"])
                if v not in ("ours_rows", "langsmith"):  # LangSmith speaks its own protocol
                    received[v].append(_get(f"{endpoint}/count?reset")["spans"] / out["calls"])
    finally:
        sink.terminate()
        sink.wait(10)
    base = statistics.median(cpu["raw"])
    rows = []
    for v in variants:
        med = statistics.median(cpu[v])
        lo, hi = min(cpu[v]) / base, max(cpu[v]) / base
        got = (f"{min(received[v]):.0%}" if received[v] else "–")
        rows.append([VARIANTS[v], f"{med:,.1f} µs", f"{med / base:.2f}x ({lo:.2f}–{hi:.2f})",
                     got])
    table(f"End to end: whole-process CPU per execution, {calls:,} calls x {rounds} "
          "interleaved rounds, spans over OTLP/HTTP to a loopback sink in another process",
          ["variant", "CPU / execution", "x raw span (min–max)", "spans received (worst)"],
          rows)
    if missing:
        print(f"not installed for {', '.join(pythons)}: {', '.join(missing)}")
    return cpu


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sink")
    parser.add_argument("--variant")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--endpoint")
    parser.add_argument("--db")
    args = parser.parse_args()
    if args.sink:
        serve_sink(args.sink)
        return 0
    out = run_variant(args.variant, args.calls, args.endpoint, args.db)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
