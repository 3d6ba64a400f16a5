"""Tables as a user sees them: in a real terminal 80 and 200 columns wide, and piped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from instrument.cli import EXIT_OK
from instrument.cli.layout import Col, Grid, fit, plain_lines
from tests.cli.conftest import Result, run_cli

EXECUTION_HEADERS = ["started", "execution", "agent", "user", "engine", "type", "status", "ms",
                     "tokens", "cost $", "tags", "error"]
AGENT_HEADERS = ["agent", "runs", "success %", "tokens", "mean ms", "measured score",
                 "combined score", "multiplier"]
BOX = set("┃│━─┏┓┗┛┡┩└┘┳┻╇╈┼")


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database holding one demo run (11 executions, 3 failed), made by `instrument demo`."""
    url = f"sqlite:///{tmp_path_factory.mktemp('tables') / 'demo.db'}"
    made = run_cli("demo", "--database-url", url)
    assert made.code == EXIT_OK, made.err
    return url


def _headers(out: str, title: str) -> list[str]:
    """The header cells of the boxed table under `title`, a wrapped header joined again."""
    section = out.split(title, 1)[1]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("┡"):
            break
        if line.startswith("┃"):
            rows.append([c.strip() for c in line.strip().strip("┃").split("┃")])
    return [" ".join(w for w in col if w) for col in zip(*rows, strict=True)]


def _hidden(out: str, columns: int) -> list[str]:
    joined = " ".join(out.split())
    m = re.search(rf"Not shown at {columns} columns: (.*?) \(widen", joined)
    return m.group(1).split(", ") if m else []


def _assert_fits(got: Result, columns: int) -> None:
    assert got.code == EXIT_OK, got.out + got.err
    too_wide = [ln for ln in got.out.splitlines() if cell_len(ln.rstrip()) > columns]
    assert too_wide == []
    assert "…" not in got.out  # nothing, header or value, is cut with an ellipsis


def test_tail_at_80_columns_keeps_whole_headers_and_names_what_it_left_out(demo_url: str
                                                                          ) -> None:
    got = run_cli("tail", "--database-url", demo_url, columns=80)
    _assert_fits(got, 80)
    shown = _headers(got.out, "agent_executions")
    hidden = _hidden(got.out, 80)
    assert hidden, "ten columns cannot fit in 80"
    assert sorted(shown + hidden) == sorted(EXECUTION_HEADERS)
    # the least important go first; these stay
    assert {"started", "agent", "status", "error"} <= set(shown)
    assert shown == [h for h in EXECUTION_HEADERS if h in shown]  # in their order
    status = shown.index("status")
    cells = [ln.strip("│").split("│")[status].strip() for ln in got.out.splitlines()
             if ln.startswith("│")]
    assert sorted(c for c in cells if c) == ["completed"] * 8 + ["failed"] * 3


def test_tail_at_200_columns_shows_every_column(demo_url: str) -> None:
    got = run_cli("tail", "--database-url", demo_url, columns=200)
    _assert_fits(got, 200)
    assert _headers(got.out, "agent_executions") == EXECUTION_HEADERS
    assert "Not shown" not in got.out
    # the error is shown (its cell may wrap: column widths follow the durations, which grow
    # on a loaded machine)
    assert "PluginTimeoutError" in got.out


def test_stats_at_80_columns(demo_url: str) -> None:
    got = run_cli("stats", "--database-url", demo_url, columns=80)
    _assert_fits(got, 80)
    shown = _headers(got.out, "Agents in ")
    assert sorted(shown + _hidden(got.out, 80)) == sorted(AGENT_HEADERS)
    assert {"agent", "runs", "combined score"} <= set(shown)
    for agent in ("invoice-pipeline", "lead-research", "order-assistant", "support-triage"):
        assert agent in got.out  # ids are not folded at this width
    assert _headers(got.out, "AIS components") == ["agent", "token", "execution", "plugin",
                                                    "workflow", "memory"]


def test_stats_at_200_columns(demo_url: str) -> None:
    got = run_cli("stats", "--database-url", demo_url, columns=200)
    _assert_fits(got, 200)
    assert _headers(got.out, "Agents in ") == AGENT_HEADERS


def test_doctor_at_80_columns(demo_url: str) -> None:
    got = run_cli("doctor", "--database-url", demo_url, columns=80)
    _assert_fits(got, 80)
    assert _headers(got.out, "instrument doctor") == ["check", "status", "detail", "fix"]


def _plain_rows(out: str, title: str) -> tuple[list[str], list[list[str]]]:
    lines = out.split(title + "\n", 1)[1].splitlines()
    split = [re.split(r"\s{2,}", ln.strip()) for ln in lines]
    return split[0], split[1:]


def test_piped_tail_is_plain_text_with_every_column_and_value(demo_url: str) -> None:
    got = run_cli("tail", "--database-url", demo_url)
    assert got.code == EXIT_OK, got.err
    assert not BOX & set(got.out)
    assert "\x1b" not in got.out
    header, rows = _plain_rows(got.out, "agent_executions")
    assert header == EXECUTION_HEADERS
    assert len(rows) == 11
    assert sorted(r[6] for r in rows) == ["completed"] * 8 + ["failed"] * 3
    # one line per execution, long values whole: what grep and awk need
    assert sum("PluginTimeoutError: plugin zendesk timed out after 3 attempts" in ln
               for ln in got.out.splitlines()) == 1


def test_piped_stats_is_plain_text(demo_url: str) -> None:
    got = run_cli("stats", "--database-url", demo_url)
    assert got.code == EXIT_OK, got.err
    assert not BOX & set(got.out)
    url = demo_url
    header, rows = _plain_rows(got.out, f"Agents in {url}")
    assert header == AGENT_HEADERS
    assert [r[0] for r in rows[:4]] == ["invoice-pipeline", "lead-research", "order-assistant",
                                        "support-triage"]


# -- the fitting itself -------------------------------------------------------------------------


def _grid() -> Grid:
    grid = Grid("t", (Col("id"), Col("name", wrap=6), Col("long header words", priority=2),
                      Col("note", priority=1, wrap=4)))
    grid.add("a1", "a-rather-long-name", "x", "a note that is long")
    grid.add("b2", "short", "yy", "–")
    return grid


def test_fit_keeps_everything_when_there_is_room() -> None:
    dropped, widths = fit(_grid(), 200)
    assert dropped == []
    assert widths == {0: 2, 1: 18, 2: 17, 3: 19}


def test_fit_wraps_the_wrapping_columns_before_dropping_any() -> None:
    dropped, widths = fit(_grid(), 40)
    assert dropped == []
    # 3 per column + 1 of border: 40 - 13 = 27 cells of content
    assert sum(widths.values()) <= 27
    assert widths[0] == 2
    assert widths[2] >= 6  # "header", its longest word: a header wraps, it is never cut
    assert widths[1] >= 6
    assert widths[3] >= 4


def test_fit_drops_the_least_important_column_first() -> None:
    dropped, widths = fit(_grid(), 24)
    assert dropped == [2]  # priority 2 goes before the note (priority 1)
    assert sum(widths.values()) + 3 * len(widths) + 1 <= 24
    dropped, widths = fit(_grid(), 12)
    assert dropped == [2, 3, 1]
    assert list(widths) == [0]  # the first column always stays


def test_plain_lines_align_columns_and_keep_values_whole(tmp_path: Path) -> None:
    lines = plain_lines(_grid())
    assert lines == [
        "t",
        "id  name                long header words  note",
        "a1  a-rather-long-name  x                  a note that is long",
        "b2  short               yy                 –",
    ]
