"""Fixtures for the pricing tests: the delivery tests' fault-injection SQLite store."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A migrated SQLite file behind the fault-injection store (tests/delivery/faultstore.py),
    which keeps each record's JSON as the store received it."""
    from tests.delivery.faultstore import FileStore

    path = str(tmp_path / "t.db")
    FileStore(path).migrate()
    return path
