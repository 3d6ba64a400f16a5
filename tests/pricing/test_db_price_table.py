"""Prices from a table in the user's own database (``prices="table:NAME"``): read by the
delivery worker (never on the call path), winning over genai-prices, re-read when due, and a
missing or bad table leaves records priced by genai-prices with one clear warning."""

from __future__ import annotations

import logging
import sqlite3
from decimal import Decimal

import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion

import instrument
from instrument import logged_execution
from instrument.errors import ConfigurationError
from tests.openai_stub import TEXT_USAGE
from tests.pricing.records import per_mtok
from tests.pricing.test_pipeline_pricing import client, database_url, stored_row

__all__ = ["client", "database_url"]  # fixtures shared with the pipeline tests


def _sql(url: str, *statements: str) -> None:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as c:
            for s in statements:
                c.execute(s)
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for s in statements:
            conn.execute(s)  # type: ignore[arg-type]


def _agent(client: OpenAI) -> object:
    @logged_execution(engine="openai_chat", agent_id="agent_id")
    def execute(agent_id: str) -> ChatCompletion:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    return execute


def test_a_price_table_in_the_database_wins_over_genai_prices(
        client: OpenAI, database_url: str) -> None:
    _sql(database_url,
         "CREATE TABLE model_prices (model text primary key, input_mtok numeric, "
         "cache_read_mtok numeric, cache_write_mtok numeric, output_mtok numeric, "
         "version integer)",
         "INSERT INTO model_prices VALUES ('gpt-4o-mini', 1, 0.5, NULL, 2, 7)",
         "INSERT INTO model_prices VALUES ('other-model', 9, NULL, NULL, 9, 3)")
    instrument.configure(database_url=database_url, prices="table:model_prices")
    run = _agent(client)
    run("a-1")  # type: ignore[operator]
    assert instrument.flush(10)
    u = TEXT_USAGE
    expected = per_mtok((u.prompt - u.cached, "1"), (u.cached, "0.5"), (u.completion, "2"))
    cost, source = _only_row(database_url)
    assert (cost, source) == (expected, "user table v7")


def test_a_missing_table_prices_with_genai_prices_and_says_so(
        client: OpenAI, database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    instrument.configure(database_url=database_url, prices="table:no_such_prices",
                         strict=False)
    with caplog.at_level(logging.WARNING, logger="instrument"):
        run = _agent(client)
        run("a-1")  # type: ignore[operator]
        assert instrument.flush(10)
    cost, source = _only_row(database_url)
    assert cost is not None
    assert source is not None
    assert source.startswith("genai-prices")
    said = [r.getMessage() for r in caplog.records if "no_such_prices" in r.getMessage()]
    assert len(said) == 1, said
    assert "Create it with columns model, input_mtok" in said[0]


def test_a_table_name_that_is_not_one_fails_configure() -> None:
    with pytest.raises(ConfigurationError, match="not a table name"):
        instrument.configure(database_url="sqlite:///x.db", prices="table:prices; drop")


def _only_row(url: str) -> tuple[Decimal | None, str | None]:
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as c:
            [(eid,)] = c.execute("SELECT id FROM agent_executions").fetchall()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            [(eid,)] = conn.execute("SELECT id::text FROM agent_executions").fetchall()
    return stored_row(url, str(eid))
