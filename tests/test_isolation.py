"""The suite never touches the user's own default database or spool (issue: running the tests
in a checkout where `instrument demo` had run added an agent `w` to ./instrument.db)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pytest(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "INSTRUMENT_DATABASE_URL"}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
                          check=False)


def test_tests_that_decorate_and_run_at_import_write_only_to_the_sandbox(tmp_path: Path) -> None:
    """test_pickling decorates at import time and runs executors with the default settings."""
    cwd, home = tmp_path / "project", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    proc = _pytest(["--rootdir", str(ROOT), str(ROOT / "tests/core/test_pickling.py")], cwd, home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout
    assert not (cwd / "instrument.db").exists()
    assert not (home / ".cache" / "logged-execution").exists()


def test_a_test_that_writes_the_users_database_fails_the_run(tmp_path: Path) -> None:
    cwd, home = tmp_path / "project", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    (cwd / "test_bad.py").write_text(
        "from pathlib import Path\n"
        "import conftest_under_test as c\n"
        "def test_writes_the_default_db():\n"
        "    c.USER_DEFAULT_DB.write_text('oops')\n")
    # load the suite's conftest as a plugin under another name, beside the bad test
    (cwd / "conftest_under_test.py").write_text(
        (ROOT / "tests" / "conftest.py").read_text(encoding="utf-8"))
    proc = _pytest(["-p", "conftest_under_test", "test_bad.py"], cwd, home)
    assert proc.returncode != 0
    assert "changed the user's own data" in proc.stdout
    assert str(cwd / "instrument.db") in proc.stdout
