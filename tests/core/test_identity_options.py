"""tenant_id, owner_id, tags, metadata, resumes and the automatic parent_execution_id: from the
decorator and execution_context() into the record, current_execution() and the SQLite rows."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import instrument
from instrument import current_execution, execution_context, literal, logged_execution
from instrument.plan import Options, Plan
from instrument.testing import capture


class Org:
    def __init__(self, id: str, plan: str) -> None:
        self.id = id
        self.plan = plan


@logged_execution(
    agent_id="agent_id", user_id="user_id", tenant_id="org.id", owner_id=literal("owner-1"),
    tags=["support", "beta"], metadata=lambda bound: {"plan": bound["org"].plan, "n": 3},
    resumes="resumes",
)
def agent(agent_id: str, user_id: str, org: Org, resumes: str | None = None) -> dict[str, Any]:
    run = current_execution()
    assert run is not None
    return {"success": True, "tokens": {"input_tokens": 10, "output_tokens": 5},
            "extras": {"tenant": run.tenant_id, "owner": run.owner_id,
                       "parent": str(run.parent_execution_id)}}


def _rows(db: Path, table: str, where: str = "1=1") -> list[dict[str, Any]]:
    with closing(sqlite3.connect(db)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table} WHERE {where}")]


def test_every_option_reaches_the_record_and_current_execution() -> None:
    paused = uuid.uuid4()
    with capture() as cap:
        out = agent("a-1", "u-1", Org("org-9", "pro"), resumes=str(paused))
    (rec,) = cap.records
    assert out["extras"] == {"tenant": "org-9", "owner": "owner-1", "parent": "None"}
    assert (rec.tenant_id, rec.owner_id) == ("org-9", "owner-1")
    assert rec.tags == ("support", "beta")
    assert rec.metadata == {"plan": "pro", "n": 3}
    assert rec.resumes_execution_id == paused
    assert rec.parent_execution_id is None


def test_execution_context_supplies_them_nested_blocks_merge_and_the_decorator_wins() -> None:
    @logged_execution(tags=["from-decorator"], metadata={"k": "decorator", "d": 1})
    def bare() -> None:
        return None

    with capture() as cap:
        with execution_context(tenant_id="t-outer", owner_id="o-1", tags=["outer", "shared"],
                               metadata={"k": "outer", "o": 1, "deep": {"x": [1, 2]}}):
            with execution_context(tenant_id="t-inner", tags=("shared", "inner"),
                                   metadata={"k": "inner", "i": 2}):
                bare()
            bare()
        bare()
    inner, outer, none = cap.records
    assert inner.tenant_id == "t-inner"
    assert inner.owner_id == "o-1"
    assert inner.tags == ("outer", "shared", "inner", "from-decorator")
    assert inner.metadata == {"k": "decorator", "o": 1, "deep": {"x": [1, 2]}, "i": 2, "d": 1}
    assert outer.tenant_id == "t-outer"
    assert outer.tags == ("outer", "shared", "from-decorator")
    assert outer.metadata == {"k": "decorator", "o": 1, "deep": {"x": [1, 2]}, "d": 1}
    assert none.tenant_id is None
    assert none.owner_id is None
    assert none.tags == ("from-decorator",)
    assert none.metadata == {"k": "decorator", "d": 1}


def test_decorator_identity_wins_over_execution_context() -> None:
    with capture() as cap, execution_context(tenant_id="ctx-tenant", owner_id="ctx-owner",
                                             user_id="ctx-user"):
        agent("a-1", "u-1", Org("org-1", "free"))
        instrument.logged_execution(lambda: None)()
    decorated, bare = cap.records
    assert (decorated.tenant_id, decorated.owner_id, decorated.user_id) == (
        "org-1", "owner-1", "u-1")
    assert (bare.tenant_id, bare.owner_id, bare.user_id) == ("ctx-tenant", "ctx-owner",
                                                             "ctx-user")


@logged_execution(agent_id=literal("orchestrator"))
def orchestrator(n: int) -> dict[str, Any]:
    me = current_execution()
    assert me is not None
    for i in range(n):
        agent(f"sub-{i}", "u-1", Org("org-1", "free"))
    return {"success": True, "extras": {"me": str(me.execution_id)}}


@logged_execution(agent_id=literal("async-orchestrator"))
async def async_orchestrator() -> dict[str, Any]:
    await asyncio.gather(async_agent(), async_agent())
    return {"success": True}


@logged_execution(agent_id=literal("async-agent"))
async def async_agent() -> dict[str, Any]:
    await asyncio.sleep(0)
    run = current_execution()
    assert run is not None
    return {"success": True, "extras": {"parent": str(run.parent_execution_id)}}


@logged_execution(agent_id=literal("streamer"))
def streaming_agent() -> Any:
    yield "a"
    agent("inside-stream", "u-1", Org("org-1", "free"))
    yield "b"


def test_a_call_inside_another_is_its_child_sync_async_and_streamed() -> None:
    with capture() as cap:
        out = orchestrator(2)
        asyncio.run(async_orchestrator())
        assert list(streaming_agent()) == ["a", "b"]
        agent("after", "u-1", Org("org-1", "free"))
    by_agent = {r.agent_id: r for r in cap.records}
    parent = by_agent["orchestrator"]
    assert str(parent.execution_id) == out["extras"]["me"]
    assert parent.parent_execution_id is None
    for child in ("sub-0", "sub-1"):
        assert by_agent[child].parent_execution_id == parent.execution_id
        assert by_agent[child].result.extras["parent"] == str(parent.execution_id)
    async_parent = by_agent["async-orchestrator"]
    async_children = [r for r in cap.records if r.agent_id == "async-agent"]
    assert len(async_children) == 2
    assert {r.parent_execution_id for r in async_children} == {async_parent.execution_id}
    assert by_agent["inside-stream"].parent_execution_id == by_agent["streamer"].execution_id
    assert by_agent["after"].parent_execution_id is None  # nothing leaks after the calls


def test_options_and_nesting_land_in_the_sqlite_rows(tmp_path: Path) -> None:
    db = tmp_path / "rows.db"
    instrument.configure(database_url=f"sqlite:///{db}", spool_dir=tmp_path / "spool",
                         traces="none")
    paused = uuid.uuid4()
    with execution_context(tags=["ctx"], metadata={"request": "r-1"}):
        orchestrator(1)
        agent("a-2", "u-2", Org("org-2", "team"), resumes=str(paused))
    assert instrument.flush(10.0)
    parent, = _rows(db, "agent_executions", "agent_id = 'orchestrator'")
    child, = _rows(db, "agent_executions", "agent_id = 'sub-0'")
    resumed, = _rows(db, "agent_executions", "agent_id = 'a-2'")
    assert child["parent_execution_id"] == parent["id"]
    assert parent["parent_execution_id"] is None
    assert (child["tenant_id"], child["owner_id"]) == ("org-1", "owner-1")
    assert json.loads(child["tags"]) == ["ctx", "support", "beta"]
    assert json.loads(child["metadata"]) == {"request": "r-1", "plan": "free", "n": 3}
    assert json.loads(parent["tags"]) == ["ctx"]
    assert resumed["resumes_execution_id"] == str(paused)
    assert resumed["tenant_id"] == "org-2"
    log, = _rows(db, "agent_logs", f"execution_id = '{child['id']}'")
    assert log["tenant_id"] == "org-1"
    stats, = _rows(db, "agent_stats", "agent_id = 'sub-0'")
    assert stats["user_id"] == "owner-1"  # the per-agent row belongs to the agent's owner


def test_resumes_takes_an_id_literal_uuid_path_or_callable() -> None:
    rid = uuid.uuid4()

    @logged_execution(resumes=rid)
    def by_uuid() -> None: ...

    @logged_execution(resumes=str(rid))  # an id's text is the id itself, not a path
    def by_text() -> None: ...

    @logged_execution(resumes=lambda bound: bound["state"]["paused_run"])
    def by_callable(state: dict[str, Any]) -> None: ...

    @logged_execution(resumes="previous")
    def by_path(previous: uuid.UUID | None = None) -> None: ...

    with capture() as cap:
        by_uuid()
        by_text()
        by_callable({"paused_run": str(rid)})
        by_path(rid)
        by_path()
    assert [r.resumes_execution_id for r in cap.records] == [rid, rid, rid, rid, None]


def test_a_value_that_is_not_an_id_is_dropped_with_one_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    @logged_execution(resumes="previous")
    def run(previous: object) -> None: ...

    with capture() as cap, caplog.at_level("WARNING"):
        run("not-a-uuid")
        run(12)
    assert [r.resumes_execution_id for r in cap.records] == [None, None]
    said = [m for m in caplog.messages if "resumes" in m]
    assert len(said) == 1
    assert "not an execution id" in said[0]


def test_wrong_kinds_of_options_fail_at_decoration_time() -> None:
    with pytest.raises(TypeError, match="tags= must be a sequence of str"):
        logged_execution(tags=5)(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metadata= must be a mapping"):
        logged_execution(metadata=["a"])(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="resumes= must be an execution id"):
        logged_execution(resumes=3.5)(lambda: None)  # type: ignore[arg-type]


def test_the_bare_decorator_resolves_nothing_per_call() -> None:
    """The fast path stays: no field or label getter runs for a bare decorator."""
    def f() -> None: ...

    plan = Plan(f, Options(), static=False)
    assert plan.no_fields
    assert plan.no_labels
    assert plan.budgets is None
    tagged = Plan(f, Options(tags=["x"]), static=False)
    assert tagged.no_fields
    assert not tagged.no_labels
    owned = Plan(f, Options(owner_id=literal("o")), static=False)
    assert not owned.no_fields
    assert owned.no_labels


@logged_execution(agent_id=literal("sub-agent"))
def sub_agent() -> dict[str, Any]:
    return {"success": True}


@logged_execution(agent_id=literal("router"), user_id="user", tenant_id="tenant",
                  session_id="session")
def router(user: str, tenant: str, session: str, *, own_user: str | None = None
           ) -> dict[str, Any]:
    if own_user is None:
        sub_agent()
    else:
        with execution_context(user_id=own_user):
            sub_agent()
    return {"success": True}


def test_a_child_runs_for_its_parents_user_tenant_and_conversation() -> None:
    # A sub-agent that names no user is spent on behalf of the caller's: its run belongs in
    # that user's ledger and counts against that user's budget, not in an anonymous row.
    with capture() as got:
        router("u-1", "org-1", "s-1")
        router("u-1", "org-1", "s-1", own_user="u-2")
    child, parent, child2, _ = got.records
    assert (child.agent_id, parent.agent_id) == ("sub-agent", "router")
    assert child.parent_execution_id == parent.execution_id
    assert (child.user_id, child.tenant_id, child.session_id) == ("u-1", "org-1", "s-1")
    assert child.owner_id is None  # not the parent's: the child has its own identity
    assert child2.user_id == "u-2"  # execution_context inside the parent wins
    assert child2.tenant_id == "org-1"
