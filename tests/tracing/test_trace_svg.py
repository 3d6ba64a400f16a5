"""docs/images/trace.svg is what docs/images/make_trace_svg.py draws from a real OTLP export."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "images" / "make_trace_svg.py"
COMMITTED = ROOT / "docs" / "images" / "trace.svg"
SVG = "{http://www.w3.org/2000/svg}"
#: depth-first, as the picture lists them: the orchestrator, each agent and its tools
TREE = ["invoke_workflow nightly-report", "invoke_agent Researcher", "execute_tool web.search",
        "execute_tool docs.fetch", "invoke_agent Writer", "execute_tool report.save"]


def _span_rows(svg: Path) -> tuple[list[str], list[str], str]:
    root = ET.parse(svg).getroot()
    bold = [t.text or "" for t in root.iter(f"{SVG}text") if t.get("font-weight") == "bold"
            and t.get("font-size") == "13"]
    details = [t.text or "" for t in root.iter(f"{SVG}text") if t.get("font-size") == "10"
               and (t.text or "").startswith("INTERNAL")]
    title = root.find(f"{SVG}title")
    return bold, details, (title.text or "") if title is not None else ""


def test_the_script_draws_the_trace_it_received(tmp_path: Path) -> None:
    out = tmp_path / "trace.svg"
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    names, details, title = _span_rows(out)
    assert names == TREE
    assert title.endswith("of research-desk: 6 spans")
    # attributes as received: nesting, what answered, the tool call ids
    assert "is_nested=False" in details[0]
    assert "is_nested=True" in details[1]
    assert "response.model=gpt-4o-mini-2025-01-01" in details[1]
    assert "tool.call.id=call_web_search" in details[2]


def test_the_committed_picture_is_one_such_drawing_and_the_doc_shows_it() -> None:
    names, details, _ = _span_rows(COMMITTED)
    assert names == TREE
    assert len(details) == len(TREE)
    doc = (ROOT / "docs" / "tracing-and-jaeger.md").read_text()
    assert "](images/trace.svg)" in doc
    assert "docs/images/make_trace_svg.py" in doc
