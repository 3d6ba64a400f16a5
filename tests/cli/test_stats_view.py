"""`stats` says when the creation score still stands, names its columns apart from the AIS
components, and shows unmeasured tokens as "–" (unmeasured is not 0), as `tail` does."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing

import pytest

import instrument
from instrument.cli import EXIT_OK
from tests.cli.conftest import Run


@pytest.fixture
def young(db_url: str) -> object:
    instrument.configure(database_url=db_url)

    @instrument.logged_execution(agent_id="agent_id")
    def step(agent_id: str) -> dict[str, object]:
        return {"success": True, "iterations": 3}  # no token counts: tokens are unmeasured

    return step


def _row(out: str, agent: str) -> list[str]:
    line = next(ln for ln in out.splitlines() if ln.startswith(agent + " "))
    return re.split(r"\s{2,}", line.strip())


def test_a_young_agent_shows_the_creation_score_and_why(run: Run, db_url: str,
                                                        young: object) -> None:
    for _ in range(3):
        young("young-agent")  # type: ignore[operator]
    assert instrument.flush(10)
    with closing(sqlite3.connect(db_url.removeprefix("sqlite:///"))) as conn:
        stored = conn.execute("SELECT total_tokens, token_run_count FROM agent_stats "
                              "WHERE agent_id = 'young-agent'").fetchone()
    assert stored == (0, 0)  # the sum the table holds; no run measured tokens

    data = run("stats", "--json").json()["agents"][0]
    assert data["agent_id"] == "young-agent"
    assert data["total_tokens"] is None
    assert data["score_basis"] == "creation"
    assert data["scored_from_run"] == 5
    assert data["combined_score"] == data["creation_score"] == 5.0
    assert data["execution_score"] is not None  # measured, but it does not count yet

    table = run("stats")
    assert table.code == EXIT_OK
    header = _row(table.out, "agent")
    assert header == ["agent", "runs", "success %", "tokens", "mean ms", "measured score",
                      "combined score", "multiplier"]
    assert "execution score" not in table.out  # "execution" is only the AIS component
    row = dict(zip(header, _row(table.out, "young-agent"), strict=True))
    assert row["tokens"] == "–"
    assert row["combined score"] == "5.00*"
    assert ("* the creation score: it stands until an agent's 5th run and its first measured "
            "component (young-agent 3 of 5 runs); then combined = 0.3 × creation + 0.7 × "
            "measured score.") in table.out


def test_from_the_fifth_run_the_score_is_blended(run: Run, db_url: str, young: object) -> None:
    for _ in range(5):
        young("grown-agent")  # type: ignore[operator]
    assert instrument.flush(10)
    data = run("stats", "--json").json()["agents"][0]
    assert data["score_basis"] == "blended"
    assert data["combined_score"] == pytest.approx(
        0.3 * data["creation_score"] + 0.7 * data["execution_score"])
    table = run("stats")
    assert "*" not in _row(table.out, "grown-agent")[6]
    assert "the creation score" not in table.out
