"""The wheel installs one import package, `instrument`, and coexists with AdapterHub's
`adapters` (a popular PyPI package for the same audience): installing both overwrites nothing.

Builds the real wheel from a copy of the checkout and installs it with pip, beside the real
`adapters` distribution from the package index, into one target directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.docs.test_fresh_venv import _copy_checkout

pytestmark = pytest.mark.slow

#: AdapterHub's distribution; its import package is `adapters`
ADAPTERHUB = "adapters==1.3.0"


def _pip(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("checkout")
    _copy_checkout(src)
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src))
    (found,) = out.glob("logged_execution-*.whl")
    return found


def test_the_wheel_installs_instrument_alone(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(
            (".dist-info", ".data"))}
        assert tops == {"instrument"}
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")] or [None]
        if top_level is not None:  # setuptools writes it; its content is what pip reports
            assert zf.read(top_level).decode().split() == ["instrument"]
        for expected in ("instrument/py.typed", "instrument/adapters/py.typed",
                         "instrument/stores/postgres/sql/0001_core.sql",
                         "instrument/stores/sqlite/sql/0001_core.sql"):
            assert expected in names, f"the wheel lacks {expected}"


def test_installs_beside_adapterhub_and_both_import(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    # AdapterHub's package without its (multi-GB) torch/transformers stack: what matters is
    # which files land where, and that neither distribution's files replace the other's.
    _pip("install", "-q", "--no-deps", "--target", str(target), ADAPTERHUB)
    _pip("install", "-q", "--no-deps", "--target", str(target), "--upgrade", str(wheel))
    hub_init = target / "adapters" / "__init__.py"
    assert hub_init.is_file(), "AdapterHub's adapters/__init__.py was removed"
    check = (
        "import importlib.util, json, instrument, instrument.adapters as a\n"
        "spec = importlib.util.find_spec('adapters')\n"
        "print(json.dumps({'instrument': instrument.__file__, 'adapters': spec.origin,\n"
        "                  'builtins': a.available_adapters()}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          env=env, timeout=120, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert Path(got["instrument"]).is_relative_to(target)
    assert Path(got["adapters"]) == hub_init
    assert "AdapterConfig" in hub_init.read_text(encoding="utf-8")  # AdapterHub's, untouched
    assert {"agentkit", "mapping", "openai_chat"} <= set(got["builtins"])
