"""Every example runs: each examples/*.py, and each example folder.

A folder runs as `python -m <folder>` from examples/ when it has a `__main__.py`; a folder that
needs more than a Python interpreter (Jaeger, a Supabase gateway, its own package) names the
test that runs it in FOLDERS_TESTED_ELSEWHERE, and that test must exist. The FastAPI example is
also driven here with FastAPI's TestClient against a real PostgreSQL database.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import instrument

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

#: folder -> the test that runs it (it needs a service or an install of its own).
FOLDERS_TESTED_ELSEWHERE: dict[str, str] = {
    "jaeger": "tests/tracing/test_jaeger_example.py",
    "supabase": "tests/integration/test_supabase_store.py",
    "plugin_adapter": "tests/adapters/test_plugin.py",
}

SCRIPTS = sorted(EXAMPLES.glob("*.py"))
FOLDERS = sorted(p for p in EXAMPLES.iterdir()
                 if p.is_dir() and not p.name.startswith((".", "_")))


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OPENAI_", "SUPABASE_", "OTEL_EXPORTER_OTLP"))}
    env.update(INSTRUMENT_DATABASE_URL=f"sqlite:///{tmp_path / 'example.db'}",
               PYTHONPATH=str(EXAMPLES), COLUMNS="200")
    return env


def _run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, *argv], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    assert proc.stdout.strip(), f"{argv} printed nothing"
    return proc


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_script_runs(script: Path, tmp_path: Path) -> None:
    _run([str(script)], tmp_path)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_example_folder_runs(folder: Path, tmp_path: Path) -> None:
    if (folder / "__main__.py").exists():
        _run(["-m", folder.name], tmp_path)
        return
    elsewhere = FOLDERS_TESTED_ELSEWHERE.get(folder.name)
    assert elsewhere is not None, (
        f"examples/{folder.name}/ has no __main__.py; add one, or name the test that runs it "
        "in FOLDERS_TESTED_ELSEWHERE"
    )
    assert (ROOT / elsewhere).exists(), f"{elsewhere} (which runs examples/{folder.name}) is gone"


def test_quickstart_prints_what_it_wrote(tmp_path: Path) -> None:
    out = _run([str(EXAMPLES / "quickstart.py")], tmp_path).stdout
    assert "workflow: processed 3 invoices" in out
    assert "agentkit raised: refunds need a human" in out
    assert "orchestrator invoice-bot   failed" in out
    assert "agentkit     helpdesk-bot  failed    tokens=None error=PermissionError" in out
    assert "agent_stats invoice-bot: runs=2 ok=1 failed=1" in out
    assert "agent_stats helpdesk-bot: runs=2 ok=1 failed=1" in out


# -- the FastAPI run-agent route against real PostgreSQL ------------------------------------------


@pytest.fixture
def run_agent_app(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    from instrument.stores import open_store

    monkeypatch.syspath_prepend(str(EXAMPLES))
    store = open_store(pg_url)
    store.migrate()
    store.close()
    from fastapi_run_agent.app import create_app

    return create_app(database_url=pg_url)


def _rows(pg_url: str, sql: str, *params: object) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(pg_url, row_factory=dict_row) as conn:
        return list(conn.execute(sql, params).fetchall())


@pytest.mark.postgres
def test_fastapi_route_logs_both_executors_identically(run_agent_app: Any, pg_url: str) -> None:
    from fastapi.testclient import TestClient

    auth = {"Authorization": "Bearer user-1"}
    with TestClient(run_agent_app) as client:
        orch = client.post("/api/run-agent", headers=auth,
                           json={"agent_id": "invoice-workflow", "execution_type": "api"})
        kit = client.post("/api/run-agent", headers=auth,
                          json={"agent_id": "support-agent", "execution_type": "webhook"})
        forced = client.post("/api/run-agent", headers=auth,
                             json={"agent_id": "invoice-workflow", "use_agentkit": True})
        broken = client.post("/api/run-agent", headers=auth, json={"agent_id": "broken-workflow"})
        crash = client.post("/api/run-agent", headers=auth,
                            json={"agent_id": "support-agent", "user_input": "crash now"})
        # Bad requests are answered before any executor runs: nothing is recorded for them.
        assert client.post("/api/run-agent", json={"agent_id": "support-agent"}).status_code == 401
        other = client.post("/api/run-agent", headers=auth,
                            json={"agent_id": "someone-elses-agent"})
        assert other.status_code == 404
        assert instrument.flush(15.0)

    assert orch.status_code == 200
    assert orch.json()["orchestrator"] is True
    assert orch.json()["success"] is True
    assert kit.json()["agentkit"] is True
    assert forced.json()["agentkit"] is True
    assert broken.json()["success"] is False
    assert crash.status_code == 500
    assert crash.json() == {"success": False, "error": "model endpoint unreachable",
                            "agentkit": True}

    executions = _rows(pg_url, "select * from agent_executions order by started_at")
    assert [(e["agent_id"], e["engine"], e["status"]) for e in executions] == [
        ("invoice-workflow", "orchestrator", "completed"),
        ("support-agent", "agentkit", "completed"),
        ("invoice-workflow", "agentkit", "completed"),
        ("broken-workflow", "orchestrator", "failed"),
        ("support-agent", "agentkit", "failed"),
    ]
    assert [e["execution_type"] for e in executions] == ["api", "webhook", "manual", "manual",
                                                         "manual"]
    assert {e["user_id"] for e in executions} == {"user-1"}
    assert all(e["session_id"] for e in executions)
    # The orchestrator's own execution id is the row's id: one id for rows, span and executor.
    assert orch.json()["data"]["execution_id"] == str(executions[0]["id"])
    assert executions[4]["error_type"] == "ConnectionError"
    assert executions[3]["error_message"] == "step 'explode' failed"

    # Identical logging for both paths: every execution got every writer, exactly once.
    ids = [e["id"] for e in executions]
    ledger = _rows(pg_url, "select execution_id, writer from instrument_ledger")
    for execution_id in ids:
        writers = sorted(r["writer"] for r in ledger if r["execution_id"] == execution_id)
        assert writers == ["executions", "intensity", "logs", "stats", "usage_ledger"], execution_id
    logs = _rows(pg_url, "select * from agent_logs")
    assert sorted(r["execution_id"] for r in logs) == sorted(ids)
    stats = {r["agent_id"]: r for r in _rows(pg_url, "select * from agent_stats")}
    assert {a: (s["run_count"], s["success_count"], s["failure_count"])
            for a, s in stats.items()} == {
        "invoice-workflow": (2, 2, 0), "support-agent": (2, 1, 1), "broken-workflow": (1, 0, 1),
    }
    intensity = {r["agent_id"]: r for r in _rows(pg_url, "select * from agent_intensity_metrics")}
    assert {a: r["total_executions"] for a, r in intensity.items()} == {
        "invoice-workflow": 2, "support-agent": 2, "broken-workflow": 1,
    }
    # Measured, not invented: the orchestrator reports one token total and no split.
    assert executions[0]["total_tokens"] == 1400
    assert executions[0]["input_tokens"] is None
    assert executions[1]["input_tokens"] == 600
