"""Draw docs/images/trace.svg from a real trace, exported over OTLP and decoded from protobuf.

Run from the repository root: ``python docs/images/make_trace_svg.py [out.svg]``.

Jaeger cannot run where the docs are built, so the picture is made the way Jaeger would see the
trace: an orchestrator calls two agents whose tool calls carry their timings; the decorator
exports the spans over OTLP/HTTP to the in-suite receiver (``tests/tracing/otlp_receiver.py``),
which decodes the official OTLP protobufs as a collector does; :func:`draw` (standard library
only) turns the received spans into a timeline. Nothing in the picture is typed by hand: span
names, kinds, nesting, times and attributes are what arrived.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).with_name("trace.svg")

# -- the trace ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One received span, as the picture needs it."""

    span_id: str
    parent_id: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    error: bool
    attributes: dict[str, Any]


def collect() -> tuple[str, str, list[Row]]:
    """Run the scenario against a local OTLP receiver: (trace id, service, rows)."""
    sys.path.insert(0, str(ROOT))
    from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

    import instrument
    from instrument import logged_execution
    from tests.tracing.otlp_receiver import OtlpReceiver

    def tool(name: str, seconds: float) -> dict[str, Any]:
        started = datetime.now(UTC)
        t0 = time.perf_counter()
        time.sleep(seconds)  # the tool's I/O
        return {"name": name, "call_id": f"call_{name.replace('.', '_')}", "success": True,
                "started_at": started.isoformat(),
                "duration_ms": (time.perf_counter() - t0) * 1000}

    @logged_execution(agent_id="agent_id", agent_name="agent_name", session_id="session_id")
    def agent(agent_id: str, agent_name: str, session_id: str,
              tools: list[tuple[str, float]]) -> dict[str, Any]:
        time.sleep(0.02)  # the model thinking
        calls = [tool(name, seconds) for name, seconds in tools]
        time.sleep(0.015)
        return {"success": True, "model": "gpt-4o-mini-2025-01-01", "provider": "openai",
                "iterations": len(calls) + 1, "tool_calls": calls,
                "tokens": {"input_tokens": 1830, "output_tokens": 214,
                           "cached_input_tokens": 1024}}

    @logged_execution(engine="orchestrator", name="nightly-report")
    def nightly_report() -> dict[str, Any]:
        agent("agent-7", "Researcher", "session-42",
              [("web.search", 0.06), ("docs.fetch", 0.035)])
        agent("agent-8", "Writer", "session-42", [("report.save", 0.025)])
        return {"success": True, "executionId": "wf-run-1", "stepsCompleted": 2,
                "stepsFailed": 0, "stepsSkipped": 0}

    with OtlpReceiver() as rx, tempfile.TemporaryDirectory() as tmp:
        os.environ.update({
            "OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none",
            "OTEL_SERVICE_NAME": "research-desk",
        })
        instrument.configure(database_url=f"sqlite:///{Path(tmp) / 'trace.db'}")
        nightly_report()
        instrument.shutdown(10.0)
        received = rx.wait_for_spans(6)
    ours = [r for r in received if r.scope == "logged-execution"]
    rows = [Row(r.span.span_id.hex(), r.span.parent_span_id.hex(), r.name,
                Span.SpanKind.Name(r.span.kind).removeprefix("SPAN_KIND_"),
                r.span.start_time_unix_nano, r.span.end_time_unix_nano,
                r.span.status.code == Status.STATUS_CODE_ERROR, r.attributes) for r in ours]
    return ours[0].span.trace_id.hex(), str(ours[0].resource.get("service.name")), rows


# -- the picture (standard library only) -------------------------------------------------------

WIDTH, LABEL_W, ROW_H, TOP, PAD = 1160, 590, 46, 78, 16
COLORS = {"invoke_workflow": "#7b61c9", "handle_conversation_turn": "#3b6fd4",
          "invoke_agent": "#3b8fd4", "execute_tool": "#2f9e6e"}
#: attribute -> how the picture labels it (the names are the span's own, shortened)
SHOWN = {"gen_ai.invocation.is_nested": "is_nested", "gen_ai.tool.call.id": "tool.call.id",
         "gen_ai.response.model": "response.model", "gen_ai.usage.input_tokens": "input_tokens",
         "gen_ai.usage.output_tokens": "output_tokens",
         "instrument.steps.completed": "instrument.steps.completed"}


def ordered(rows: list[Row]) -> list[tuple[int, Row]]:
    """Depth-first, children by start time: (depth, row)."""
    ids = {r.span_id for r in rows}
    children: dict[str, list[Row]] = {}
    for r in rows:
        children.setdefault(r.parent_id if r.parent_id in ids else "", []).append(r)
    out: list[tuple[int, Row]] = []

    def walk(parent: str, depth: int) -> None:
        for r in sorted(children.get(parent, []), key=lambda r: r.start_ns):
            out.append((depth, r))
            walk(r.span_id, depth + 1)

    walk("", 0)
    return out


def draw(trace_id: str, service: str, rows: list[Row]) -> str:
    tree = ordered(rows)
    t0 = min(r.start_ns for r in rows)
    span_ns = max(r.end_ns for r in rows) - t0 or 1
    plot_x, plot_w = LABEL_W + PAD, WIDTH - LABEL_W - 2 * PAD
    height = TOP + ROW_H * len(tree) + 44
    total_ms = span_ns / 1e6

    def x(ns: int) -> float:
        return plot_x + (ns - t0) / span_ns * plot_w

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="Helvetica, Arial, sans-serif" '
        'role="img">',
        f"<title>Trace {trace_id} of {escape(service)}: {len(rows)} spans</title>",
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{PAD}" y="26" font-size="16" font-weight="bold">Trace {trace_id[:16]}… '
        f"· service {escape(service)} · {len(rows)} spans · {total_ms:.1f} ms</text>",
        f'<text x="{PAD}" y="46" font-size="11" fill="#666">Received over OTLP/HTTP and decoded '
        "from the official protobufs (docs/images/make_trace_svg.py)</text>",
    ]
    for i in range(6):  # time axis
        ns = t0 + span_ns * i // 5
        out.append(f'<line x1="{x(ns):.1f}" y1="{TOP - 12}" x2="{x(ns):.1f}" '
                   f'y2="{height - 36}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{x(ns):.1f}" y="{TOP - 16}" font-size="10" fill="#888" '
                   f'text-anchor="middle">{(ns - t0) / 1e6:.0f} ms</text>')
    for n, (depth, r) in enumerate(tree):
        y = TOP + n * ROW_H
        op = str(r.attributes.get("gen_ai.operation.name", ""))
        color = "#d64545" if r.error else COLORS.get(op, "#888888")
        if n % 2:
            out.append(f'<rect x="0" y="{y - 4}" width="{WIDTH}" height="{ROW_H}" '
                       'fill="#f7f8fa"/>')
        indent = PAD + depth * 18
        duration = (r.end_ns - r.start_ns) / 1e6
        out.append(f'<text x="{indent}" y="{y + 14}" font-size="13" font-weight="bold">'
                   f"{escape(r.name)}</text>")
        shown = " · ".join(f"{label}={r.attributes[k]}" for k, label in SHOWN.items()
                           if k in r.attributes)
        out.append(f'<text x="{indent}" y="{y + 30}" font-size="10" fill="#555">'
                   f"{r.kind} · {duration:.1f} ms{' · ' + escape(shown) if shown else ''}"
                   "</text>")
        width = max(2.0, x(r.end_ns) - x(r.start_ns))
        out.append(f'<rect x="{x(r.start_ns):.1f}" y="{y + 4}" width="{width:.1f}" height="18" '
                   f'rx="3" fill="{color}"><title>{escape(r.name)}: {duration:.1f} ms'
                   "</title></rect>")
    legend_y = height - 14
    present = {r.attributes.get("gen_ai.operation.name") for r in rows}
    for i, (op, color) in enumerate((o, c) for o, c in COLORS.items() if o in present):
        lx = PAD + i * 200
        out.append(f'<rect x="{lx}" y="{legend_y - 10}" width="12" height="12" rx="2" '
                   f'fill="{color}"/>')
        out.append(f'<text x="{lx + 18}" y="{legend_y}" font-size="11">{op}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else OUT
    out.write_text(draw(*collect()), encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
