"""`instrument show`, `stats --by`, and `--since`/`--until`/`--tag` on tail and stats, against
SQLite, PostgreSQL and Supabase (the real supabase-py client through the PostgREST test
gateway), and as a user sees them at 80 and 200 columns and piped (issue 18 items 12-14,
issue 17 item 5)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from uuid import UUID

import pytest

from instrument.cli import EXIT_OK, EXIT_USAGE
from instrument.record import ExecutionRecord
from instrument.stores import open_store
from tests.cli.conftest import Run, assert_one_line_error, run_cli
from tests.cli.fleet import TRACE, WRITERS, fleet, loaded

__all__ = ["loaded"]  # the fixture, imported

def _ids(rows: list[dict[str, Any]]) -> list[str]:
    return [str(r["id"]) for r in rows]


def test_show_prints_the_execution_its_children_log_row_and_trace_link(
        run: Run, loaded: tuple[str, dict[str, ExecutionRecord]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    url, recs = loaded
    parent = str(recs["parent"].execution_id)
    monkeypatch.setenv("INSTRUMENT_TRACE_URL", "http://localhost:16686")
    got = run("show", parent[:8], "--database-url", url)
    assert got.code == EXIT_OK, got.err
    assert f"Execution {parent}" in got.out
    assert "tenant        acme" in got.out
    assert "Children (2)" in got.out
    for child in ("child1", "child2"):
        assert str(recs[child].execution_id)[:8] in got.out
    assert f"Trace {TRACE}:\nhttp://localhost:16686/trace/{TRACE}\n" in got.out
    data = run("show", parent, "--json", "--database-url", url).json()
    assert data["execution"]["id"] == parent
    assert sorted(_ids(data["children"])) == sorted(
        str(recs[c].execution_id) for c in ("child1", "child2"))
    assert [str(r["execution_id"]) for r in data["logs"]] == [parent]
    assert data["trace"] == {"trace_id": TRACE, "url": f"http://localhost:16686/trace/{TRACE}"}
    child = run("show", str(recs["child1"].execution_id), "--json", "--database-url", url).json()
    assert str(child["execution"]["parent_execution_id"]) == parent
    assert child["children"] == []


def test_show_says_what_to_do_with_an_unknown_or_bad_id(
        run: Run, loaded: tuple[str, dict[str, ExecutionRecord]]) -> None:
    url, _ = loaded
    missing = str(UUID(int=1))
    assert_one_line_error(run("show", missing, "--database-url", url), EXIT_USAGE,
                          f"no execution '{missing}'", "instrument tail")
    assert_one_line_error(run("show", "not-an-id", "--database-url", url), EXIT_USAGE,
                          "is not an execution id")


def test_tail_filters_by_tag_tenant_and_time(
        run: Run, loaded: tuple[str, dict[str, ExecutionRecord]]) -> None:
    url, recs = loaded

    def ids(*argv: str) -> list[str]:
        got = run("tail", "--json", "--database-url", url, *argv)
        assert got.code == EXIT_OK, got.err
        return sorted(str(r["id"]) for r in got.json_lines())

    def want(*names: str) -> list[str]:
        return sorted(str(recs[n].execution_id) for n in names)

    assert ids("--tag", "nightly") == want("parent", "child1")
    assert ids("--tag", "child") == want("child1")
    assert ids("--tenant", "globex") == want("other")
    assert ids("--since", "2026-01-06") == want("other")
    assert ids("--until", "2026-01-06") == want("parent", "child1", "child2")
    assert ids("--since", "2026-01-05T12:00:01", "--until", "2026-01-05T12:00:02") == \
        want("child1")
    assert ids("--since", "1h") == []  # the fleet is from January
    assert ids("--status", "failed", "--tag", "nightly") == []
    bad = run("tail", "--database-url", url, "--since", "2026-01-07", "--until", "2026-01-06")
    assert_one_line_error(bad, EXIT_USAGE, "--since", "must be before --until")


def test_stats_by_tenant_user_and_agent_with_days(
        run: Run, loaded: tuple[str, dict[str, ExecutionRecord]]) -> None:
    url, _ = loaded

    def rows(*argv: str) -> dict[str, dict[str, Any]]:
        got = run("stats", "--json", "--database-url", url, *argv)
        assert got.code == EXIT_OK, got.err
        data = got.json()
        return {str(r[data["by"]]): r for r in data["rows"]}

    tenants = rows("--by", "tenant")
    assert sorted(tenants) == ["acme", "globex"]
    acme = tenants["acme"]
    assert (acme["runs"], acme["successes"], acme["failures"], acme["unpriced_runs"]) == (
        3, 2, 1, 1)
    assert Decimal(acme["cost_usd"]) == Decimal("0.012")
    assert (acme["input_tokens"], acme["output_tokens"], acme["agents"]) == (300, 120, 3)
    assert Decimal(tenants["globex"]["cost_usd"]) == Decimal("0.005")
    users = rows("--by", "user", "--since", "2026-01-06")
    assert list(users) == ["user-b"]
    assert users["user-b"]["runs"] == 1
    agents = rows("--until", "2026-01-06")  # a time filter alone: per agent, from the ledger
    assert sorted(agents) == ["agent-1", "agent-2", "orchestrator-1"]
    assert agents["agent-1"]["runs"] == 1
    assert rows("--by", "agent", "--agent", "agent-1")["agent-1"]["runs"] == 2
    table = run("stats", "--by", "tenant", "--database-url", url)
    assert "Usage per tenant in" in table.out
    assert "1 run(s) unpriced" in table.out
    assert_one_line_error(run("stats", "--by", "user", "--recompute-ranges",
                              "--database-url", url), EXIT_USAGE, "--recompute-ranges")


# -- as a user sees them: 80 and 200 columns, and piped ------------------------------------------


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, ExecutionRecord]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('show') / 'fleet.db'}"
    records = fleet()
    store = open_store(url, keep_content=True)
    try:
        store.apply(list(records.values()), WRITERS)
    finally:
        store.close()
    return url, records


@pytest.mark.parametrize("columns", [80, 200, None])
@pytest.mark.parametrize("argv", [["show", "PARENT"], ["stats", "--by", "tenant"],
                                  ["tail", "--tag", "nightly"]])
def test_new_views_fit_the_terminal_and_pipe_as_plain_text(
        fleet_db: tuple[str, dict[str, ExecutionRecord]], argv: list[str],
        columns: int | None) -> None:
    url, recs = fleet_db
    args = [str(recs["parent"].execution_id) if a == "PARENT" else a for a in argv]
    got = run_cli(*args, "--database-url", url, columns=columns)
    assert got.code == EXIT_OK, got.err
    lines = got.out.splitlines()
    if columns is None:  # piped: plain text, every value whole
        assert not set("┃│━─┏┓┗┛┡┩└┘") & set(got.out)
        if argv[0] == "show":
            assert any(ln.startswith("tenant") and "acme" in ln for ln in lines)
        if argv[0] == "stats":
            assert any(ln.split()[:2] == ["acme", "3"] for ln in lines)
        if argv[0] == "tail":
            assert sum("nightly" in ln for ln in lines) == 2
        return
    assert max(len(ln.rstrip()) for ln in lines) <= columns
    assert "…" not in got.out
    if argv[0] == "stats":
        assert "acme" in got.out
        assert "0.012000" in got.out
    if argv[0] == "show":
        assert str(recs["parent"].execution_id) in got.out.replace("\n", "").replace("│", "")
