"""The oldest core dependencies pyproject.toml allows really work: a fresh venv with every core
dependency pinned to its lower bound runs a decorated executor, pickles it into a process pool
and writes its rows. (wrapt 1.x once broke the import: its wrappers are not generic.)"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.docs.test_fresh_venv import _clean_env, _copy_checkout

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

EXECUTOR = '''
import instrument

@instrument.logged_execution(engine="agentkit", agent_id="agent_id", user_id="user_id")
def run_agent(agent_id: str, user_id: str) -> dict:
    return {"success": True, "response": "ok", "iterations": 1,
            "tokensUsed": {"prompt": 10, "completion": 5, "total": 15}}
'''

CHECK = '''
import concurrent.futures, pickle, sqlite3
import instrument
from executor import run_agent

instrument.configure(database_url="sqlite:///min.db", traces="none")
assert run_agent("support-bot", "user-42")["response"] == "ok"
assert pickle.loads(pickle.dumps(run_agent)) is run_agent
with concurrent.futures.ProcessPoolExecutor(1) as pool:
    assert pool.submit(run_agent, "support-bot", "user-7").result()["response"] == "ok"
assert instrument.flush(10)
rows = sqlite3.connect("min.db").execute("select user_id from agent_executions").fetchall()
assert sorted(rows) == [("user-42",), ("user-7",)], rows
print("lowest versions ok")
'''


def _lower_bounds() -> list[str]:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = []
    for dep in deps:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)>=([0-9.]+)(?:,<[0-9.]+)?", dep)
        assert m is not None, f"{dep!r}: give every core dependency a lower bound"
        pins.append(f"{m[1]}=={m[2]}.*")
    return pins


def test_the_lowest_allowed_core_dependencies_work(tmp_path: Path) -> None:
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir()
    home.mkdir()
    _copy_checkout(repo)
    env = _clean_env(home)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env, timeout=120)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", str(repo), *_lower_bounds()],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    work = tmp_path / "work"
    work.mkdir()
    (work / "executor.py").write_text(EXECUTOR)
    (work / "check.py").write_text(CHECK)
    run = subprocess.run([str(venv / "bin" / "python"), "check.py"], cwd=work, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "lowest versions ok" in run.stdout
