"""Fixtures for the command-line tests: a temp SQLite store and an in-process runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from instrument import runtime
from instrument.cli import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


Run = Callable[..., Result]


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite database in a temp working directory, also set as the env default."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "220")
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("INSTRUMENT_DATABASE_URL", url)
    return url


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `instrument ARGS...` in-process exactly as the console script does."""

    def invoke(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(argv))
        finally:
            runtime.shutdown(5.0)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return invoke


#: A database URL nothing listens on (connection refused at once).
UNREACHABLE_PG = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
WRONG_SCHEME = "mysql://root@localhost/agents"


def assert_one_line_error(result: Result, code: int, *needles: str) -> None:
    assert result.code == code, (result.code, result.out, result.err)
    lines = [ln for ln in result.err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.err}"
    assert lines[0].startswith("error: ")
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    assert "Traceback" not in result.out + result.err
