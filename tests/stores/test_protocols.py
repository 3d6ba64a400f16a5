"""The store protocols: a small ingest `Store`, optional admin/query protocols the CLI checks."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

import pytest

from instrument.cli.common import CliError, ais_config_source, queries, schema_admin
from instrument.record import ExecutionRecord
from instrument.stores import (
    AISConfigSource,
    ApplyResult,
    ExecutionQueries,
    SchemaAdmin,
    Store,
    open_store,
)

OPTIONAL = (SchemaAdmin, ExecutionQueries, AISConfigSource)


class IngestOnly:
    """A third-party store that only ingests: all the pipeline needs."""

    dialect = "custom"
    display_url = "custom://somewhere"

    def apply(self, records: Sequence[ExecutionRecord], default_writers: Collection[str]
              ) -> ApplyResult:
        return ApplyResult(len(records), 0)

    def close(self) -> None:
        pass


def test_an_ingest_only_store_is_a_store_and_nothing_more() -> None:
    store = IngestOnly()
    assert isinstance(store, Store)
    assert not any(isinstance(store, p) for p in OPTIONAL)


def test_the_built_in_stores_implement_every_protocol(tmp_path: Path, pg_url: str) -> None:
    for url in (f"sqlite:///{tmp_path / 'p.db'}", pg_url):
        store = open_store(url)
        try:
            assert isinstance(store, Store)
            assert all(isinstance(store, p) for p in OPTIONAL), type(store).__name__
            assert schema_admin(store) is store
            assert queries(store) is store
            assert ais_config_source(store) is store
        finally:
            store.close()


@pytest.mark.parametrize(("need", "named"), [
    (schema_admin, "SchemaAdmin (migrate, schema_version)"),
    (queries, "ExecutionQueries (recent_executions, agent_stats, intensity_metrics)"),
    (ais_config_source, "AISConfigSource (ais_config)"),
])
def test_the_cli_names_the_protocol_a_custom_store_lacks(need: object, named: str) -> None:
    with pytest.raises(CliError) as exc:
        need(IngestOnly())  # type: ignore[operator]
    assert named in str(exc.value)
    assert "custom://somewhere" in str(exc.value)
    assert exc.value.code == 2
