"""Store fixtures for the delivery tests: the real SQLite store and the real Postgres store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of each real store."""
    from instrument.stores import open_store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'delivery.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    store = open_store(url)
    store.migrate()
    store.close()
    return url


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A migrated SQLite file behind the fault-injection store (tests/delivery/faultstore.py)."""
    from tests.delivery.faultstore import FileStore

    path = str(tmp_path / "t.db")
    FileStore(path).migrate()
    return path
