"""Fixtures for the command-line tests: a temp SQLite store and an in-process runner."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
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


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
#: what would make rich ignore the terminal's real size or colour support
_TERMINAL_OVERRIDES = ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE",
                       "TTY_INTERACTIVE", "TERM")


def run_cli(*argv: str, columns: int | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 120) -> Result:
    """Run ``instrument ARGS...`` in a fresh process, as a user does.

    ``columns=None``: stdout is a pipe (``instrument tail | grep``). ``columns=N``: stdout is a
    real pseudo-terminal N columns wide (the width set on the terminal, as a window does; no
    COLUMNS variable); the output comes back with the colour codes removed.
    """
    full_env = {k: v for k, v in os.environ.items() if k not in _TERMINAL_OVERRIDES}
    full_env.update(env or {})
    cmd = [sys.executable, "-m", "instrument.cli", *argv]
    if columns is None:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd,
                              timeout=timeout, check=False)
        return Result(proc.returncode, proc.stdout, proc.stderr)
    full_env["TERM"] = "xterm-256color"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    with subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=full_env,
                          cwd=cwd) as child:
        os.close(slave)
        chunks: list[bytes] = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end of the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        err = child.stderr.read().decode() if child.stderr else ""
        code = child.wait(timeout)
    out = _ANSI.sub("", b"".join(chunks).decode()).replace("\r\n", "\n")
    return Result(code, out, err)
