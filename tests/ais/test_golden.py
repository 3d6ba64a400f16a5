"""The worked example in docs/ais.md: its code prints exactly the documented numbers, and
those numbers are what the formulas give by hand."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from instrument import ais

DOC = Path(__file__).resolve().parents[2] / "docs" / "ais.md"


def _example() -> tuple[str, str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Worked example", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    output = re.search(r"```output\n(.*?)```", section, re.S)
    assert code, "docs/ais.md: the worked example needs a python block"
    assert output, "docs/ais.md: the worked example needs an output block"
    return code.group(1), output.group(1)


def _run() -> tuple[str, dict[str, object]]:
    code, _ = _example()
    namespace: dict[str, object] = {"__name__": "ais_worked_example"}
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(compile(code, str(DOC), "exec"), namespace)  # the doc's own code
    return buf.getvalue(), namespace


def test_worked_example_prints_exactly_the_documented_output() -> None:
    printed, _ = _run()
    assert printed == _example()[1]


def test_worked_example_numbers_match_the_formulas_by_hand() -> None:
    _, ns = _run()
    s = ns["s"]
    assert isinstance(s, ais.Scores)
    token = 0.7 * 10 + 1.25 * (1 + 0.2)           # ratio 0.225 -> efficiency 10; growth 100 %
    execution = (0.35 * (3.4 - 1) / 9 * 10 + 0.30 * 13_000 / 30_000 * 10
                 + 0.20 * 20 / 50 * 10 + 0.15 * 0.4 / 3 * 10)
    plugin = (0.40 * 4 + 0.35 * 2.2 / 8 * 10) / 0.75  # orchestration unmeasured
    execution_score = (0.30 * token + 0.25 * execution + 0.20 * plugin) / 0.75
    creation = 0.5 * 4 + 0.3 * 6 + 0.2 * 6.25 + 1
    combined = 0.3 * creation + 0.7 * execution_score
    assert s.token == pytest.approx(token, abs=1e-12)
    assert s.execution == pytest.approx(execution, abs=1e-12)
    assert s.plugin == pytest.approx(plugin, abs=1e-12)
    assert s.workflow is None
    assert s.memory is None
    assert s.execution_score == pytest.approx(execution_score, abs=1e-12)
    assert s.creation_score == pytest.approx(creation, abs=1e-12)
    assert s.combined_score == pytest.approx(combined, abs=1e-12)
    assert s.multiplier == pytest.approx(1 + combined / 10, abs=1e-12)
    assert ns["d"].output_token_alert_level == "upgrade"  # type: ignore[attr-defined]
