"""README.md and docs/quickstart.md, walked through exactly as written in a fresh venv.

A copy of the checkout gets a brand-new virtual environment (a real `pip install`, no site
packages borrowed) and every shell line of the two pages that can run here runs in order, in
bash, in that copy: README's first command (install + `instrument demo`), the example saved as
`example.py`, the quickstart's install, `app.py` and its `instrument` calls. Skipped: README's
second command (the test suite itself: running it here would recurse), an install that an
earlier command already ran as its first part, and lines that need a service (PostgreSQL URLs,
docker, exported collector endpoints). `output` blocks are checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs.blocks import ROOT, SHELL_LANGS, Block, blocks, cli_lines

pytestmark = pytest.mark.slow

_TEST_SUITE_COMMAND = (
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && .venv/bin/python -m pytest -q"
)


def _copy_checkout(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=False,
    )
    if listed.returncode == 0:
        for name in filter(None, listed.stdout.decode().split("\0")):
            src = ROOT / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:  # not a git checkout (a release tarball): copy the tree without local state
        shutil.copytree(ROOT, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.db", "*.db-*", "*.spool", ".*_cache"))


def _clean_env(home: Path) -> dict[str, str]:
    venv = str(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("INSTRUMENT_", "OTEL_", "PYTEST", "COV_"))
           and k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(venv))
    env["COLUMNS"] = "200"
    env["HOME"] = str(home)  # nothing from the developer's ~/.cache (the spool lives there)
    return env


def _runnable(line: str) -> bool:
    if line == _TEST_SUITE_COMMAND:
        return False
    if line.startswith("python3 -m venv "):
        return True
    if not line.startswith(".venv/bin/"):
        return False  # export, docker, ...: need services the test does not have
    return all(c.feasible for c in cli_lines(Block("", 0, "bash", (), line + "\n"))) and \
        not any(ch in line for ch in "<>|$`")


def _walk(page: Path, repo: Path, env: dict[str, str], transcript: list[str],
          ran: list[str]) -> dict[str, str]:
    outputs: dict[str, str] = {}
    printed: str | None = None
    last_file: str | None = None
    expected_for_file: dict[str, Block] = {}  # output documented right after a saved file
    for block in blocks(page):
        if block.lang == "python" and block.filename:
            (repo / block.filename).write_text(block.source)
            last_file = block.filename
            continue
        if block.lang == "output":
            if last_file is not None:
                expected_for_file[last_file] = block
            else:
                _check(block, printed)
        last_file = None
        if block.lang in SHELL_LANGS:
            for raw in block.source.splitlines():
                line = raw.removeprefix("$ ").strip()
                if not line or line.startswith("#") or not _runnable(line):
                    continue
                if any(done.startswith(line + " && ") for done in ran):
                    continue  # the same install, already done by an earlier command
                ran.append(line)
                proc = subprocess.run(["bash", "-c", line], cwd=repo, env=env, text=True,
                                      capture_output=True, timeout=900, check=False)
                transcript.append(f"$ {line}\n{proc.stdout}{proc.stderr}")
                assert proc.returncode == 0, f"{block.where}: `{line}` exited " \
                                             f"{proc.returncode}:\n{proc.stdout}{proc.stderr}"
                printed = proc.stdout
                outputs[line] = proc.stdout
                for name, expected in list(expected_for_file.items()):
                    if line.startswith(".venv/bin/python ") and line.split()[-1] == name:
                        _check(expected, printed)
                        del expected_for_file[name]
    assert not expected_for_file, f"{page.name}: saved files never run: {list(expected_for_file)}"
    return outputs


def _check(block: Block, printed: str | None) -> None:
    assert printed is not None, f"{block.where}: output block without a command before it"
    for want in filter(None, (w.strip() for w in block.source.splitlines())):
        if "..." not in want:
            assert want in printed, f"{block.where}: {want!r} not in:\n{printed}"


def test_readme_and_quickstart_as_written(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    repo.mkdir()
    _copy_checkout(repo)
    env = _clean_env(tmp_path / "home")
    transcript: list[str] = []

    ran: list[str] = []
    readme = _walk(ROOT / "README.md", repo, env, transcript, ran)
    first = ("python3 -m venv .venv && .venv/bin/pip install -e '.[all]' && "
             ".venv/bin/instrument demo")
    assert first in readme, "README's first command changed; update this test with it"
    demo = readme[first]
    for expected in ("instrument demo: 11 executions (3 failed)",
                     "Writer `executions` -> agent_executions", "Writer `logs` -> agent_logs",
                     "Writer `stats` -> agent_stats", "Writer `intensity`",
                     "invoice-pipeline", "support-triage", "orchestrator", "agentkit"):
        assert expected in demo, f"{expected!r} missing from `instrument demo`:\n{demo}"
    assert (repo / ".venv" / "bin" / "instrument").exists()
    assert not (repo / ".venv" / "lib" / "python3.11" / "site-packages" / "instrument").exists()
    tail = readme[".venv/bin/instrument tail --agent support-bot"]
    assert "support-bot" in tail
    assert "agentkit" in tail

    quick = _walk(ROOT / "docs" / "quickstart.md", repo, env, transcript, ran)
    stats = quick[".venv/bin/instrument stats"]
    for agent in ("invoice-bot", "helpdesk-bot", "support-bot", "support-triage"):
        assert agent in stats
    failed = quick[".venv/bin/instrument tail --status failed --agent helpdesk-bot"]
    assert "PermissionError" in failed
    assert "refunds need a human" in failed
