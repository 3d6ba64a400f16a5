"""The worked plug-in in examples/plugin_adapter, really built and installed by pip.

The package is built from a copy (so the source tree stays clean) and installed with
``pip install --target`` into a temporary directory, never into the shared venv; a fresh
interpreter with that directory on PYTHONPATH must then find the adapter through the
``logged_execution.adapters`` entry point.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "plugin_adapter"

CHECK = textwrap.dedent("""
    from importlib.metadata import entry_points

    from acme_planner_adapter import ADAPTER
    from instrument.adapters import available_adapters, detect_adapter, get_adapter
    from instrument import logged_execution
    from instrument.testing import capture

    eps = {ep.name: ep.value for ep in entry_points(group="logged_execution.adapters")}
    assert eps.get("acme_planner") == "acme_planner_adapter:ADAPTER", eps

    assert get_adapter("acme_planner") is ADAPTER
    names = available_adapters()
    # Entry points come before the built-ins in auto-detection order; mapping stays last.
    assert names.index("acme_planner") < names.index("orchestrator") < names.index("mapping")
    assert names[-1] == "mapping", names

    run = {"plan_id": "p", "status": "done", "usage": {"in": 3, "out": 4},
           "actions": [{"tool": "search", "ok": True, "hits": 2, "args": {"q": "secret"}}]}
    assert detect_adapter(run) is ADAPTER
    assert detect_adapter({"toolCalls": [], "success": True}).name == "agentkit"

    @logged_execution
    def executor():
        return run

    with capture() as cap:
        assert executor() is run
    (record,) = cap.records
    assert record.engine == "acme_planner", record.engine
    assert record.result.tokens.total_tokens == 7
    assert record.result.tool_calls[0].name == "search"
    assert "secret" not in record.model_dump_json()
    print("PLUGIN-OK")
""")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                   "__pycache__"))
    site = work / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--quiet", "--target", str(site),
         str(source)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list(site.glob("acme_planner_adapter-*.dist-info/entry_points.txt"))
    return site


def _env(site: Path) -> dict[str, str]:
    path = os.pathsep.join([str(site), str(ROOT)])
    return {**os.environ, "PYTHONPATH": path, "INSTRUMENT_STRICT": "1"}


def _run(args: list[str], site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False,
                          env=_env(site), cwd=ROOT)


def test_entry_point_registers_the_adapter(plugin_site: Path) -> None:
    proc = _run([sys.executable, "-c", CHECK], plugin_site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PLUGIN-OK" in proc.stdout


def test_example_script_runs(plugin_site: Path) -> None:
    proc = _run([sys.executable, str(EXAMPLE / "example.py")], plugin_site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("acme_planner ")


def test_plugins_own_conformance_test_passes(plugin_site: Path) -> None:
    proc = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                 str(EXAMPLE / "tests")], plugin_site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout


def test_not_installed_means_not_found() -> None:
    # Without the plug-in on the path the name is unknown, and the error says how to add it.
    proc = subprocess.run(
        [sys.executable, "-c",
         "from instrument.adapters import get_adapter; get_adapter('acme_planner')"],
        capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "logged_execution.adapters" in proc.stderr
