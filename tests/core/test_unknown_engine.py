"""An unknown `engine=` names itself, the known adapters and the closest one; strict mode makes
it an error when the function is decorated."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import instrument
from instrument.adapters.registry import available_adapters


def test_an_unknown_engine_is_logged_with_the_name_the_list_and_a_guess(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    instrument.configure(database_url=f"sqlite:///{tmp_path / 'e.db'}", strict=False)
    with caplog.at_level(logging.WARNING, logger="instrument"):

        @instrument.logged_execution(agent_id="agent_id", engine="agentkt")
        def run(agent_id: str) -> dict[str, object]:
            return {"success": True, "iterations": 2}

    said = [r.getMessage() for r in caplog.records if "unknown engine" in r.getMessage()]
    assert len(said) == 1
    assert "unknown engine 'agentkt' (did you mean 'agentkit'?)" in said[0]
    assert f"known adapters: {', '.join(available_adapters())}." in said[0]
    assert "run" in said[0]  # which decorated function
    assert run("a") == {"success": True, "iterations": 2}  # the host call is untouched


def test_no_guess_when_nothing_is_close(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    instrument.configure(database_url=f"sqlite:///{tmp_path / 'e.db'}", strict=False)
    with caplog.at_level(logging.WARNING, logger="instrument"):

        @instrument.logged_execution(engine="zzzzzz")
        def run() -> None:
            return None

    said = " ".join(r.getMessage() for r in caplog.records)
    assert "unknown engine 'zzzzzz'; known adapters: " in said
    assert "did you mean" not in said


def test_strict_mode_refuses_an_unknown_engine_at_decoration(tmp_path: Path) -> None:
    instrument.configure(database_url=f"sqlite:///{tmp_path / 'e.db'}", strict=True)
    with pytest.raises(RuntimeError, match=r"unknown engine 'openai_chta' \(did you mean "
                                           r"'openai_chat'\?\)"):

        @instrument.logged_execution(engine="openai_chta")
        def run() -> None:
            return None
