"""Pricing in the delivery pipeline: once per record, in the background, before the stores and
writers see it; also for records a dead process left (adoption, `replay`) and requeued ones;
and configured through `configure(prices=...)` / INSTRUMENT_PRICES."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion

import instrument
from instrument import logged_execution, runtime
from instrument.errors import ConfigurationError
from instrument.pipeline import replay, requeue_quarantined
from instrument.pricing import USER_SOURCE, Pricer
from instrument.record import ExecutionRecord
from tests.delivery.faultstore import FileStore
from tests.delivery.helpers import file_pipeline, locked
from tests.openai_stub import TEXT_USAGE, StubServer
from tests.pricing.records import per_mtok, priced_record, tok

GPT4O = per_mtok((1000, "2.5"), (100, "10"))


class Collect:
    """A custom writer: what a user's own destination receives."""

    def __init__(self, name: str = "collect") -> None:
        self.name = name
        self.records: list[ExecutionRecord] = []
        self._lock = threading.Lock()

    def write(self, records: Sequence[ExecutionRecord]) -> None:
        with self._lock:
            self.records.extend(records)


def stored_costs(db: str) -> dict[str, tuple[str | None, str | None]]:
    """(cost_usd, price_source) per execution id, as the store received the record."""
    c = sqlite3.connect(db)
    try:
        out = {}
        for eid, body in c.execute("SELECT id, body FROM executions"):
            res = json.loads(body)["result"]
            out[eid] = (res["cost_usd"], res["price_source"])
        return out
    finally:
        c.close()


def some_records(n: int, *, poison_at: int | None = None) -> list[ExecutionRecord]:
    out = []
    for i in range(n):
        agent = "poison-1" if i == poison_at else "agent-1"
        model = "gpt-4o" if i % 3 else "no-such-model"  # every third stays unpriced
        out.append(priced_record(model, "openai", tokens=tok(1000, 100), agent_id=agent))
    return out


def test_the_store_and_custom_writers_receive_priced_records(db: str, tmp_path: Path) -> None:
    writer = Collect()
    pricer = Pricer()
    p = file_pipeline(db, tmp_path / "spool", pricer=pricer, custom_writers=[writer])
    recs = some_records(30)
    for r in recs:
        p.submit(r)
    assert p.flush(10)
    p.shutdown(5)
    costs = stored_costs(db)
    source = f"genai-prices {__import__('genai_prices').__version__}"
    for r in recs:
        expected = (str(GPT4O), source) if r.result.model == "gpt-4o" else (None, None)
        assert costs[str(r.execution_id)] == expected
    by_id = {w.execution_id: w for w in writer.records}
    assert len(by_id) == 30
    for r in recs:
        got = by_id[r.execution_id].result
        assert got.cost_usd == (GPT4O if r.result.model == "gpt-4o" else None)
    assert all(r.result.cost_usd is None for r in recs)  # the caller's records untouched


def test_each_record_is_priced_once_through_retries_and_bisection(
        db: str, tmp_path: Path) -> None:
    pricer = Pricer()
    seen: Counter[str] = Counter()
    pricer.add_listener(lambda r: seen.update([str(r.execution_id)]))
    p = file_pipeline(db, tmp_path / "spool", pricer=pricer, batch_size=64)
    recs = some_records(64, poison_at=17)  # the poison record bisects its batch
    with locked(db):  # the store refuses every batch for a while: retries
        for r in recs:
            p.submit(r)
        time.sleep(0.3)
        assert p.stats().retries > 0
    assert p.flush(10)
    s = p.stats()
    p.shutdown(5)
    assert s.quarantined == 1
    assert seen == Counter({str(r.execution_id): 1 for r in recs})
    assert len(stored_costs(db)) == 63


def test_replay_and_adoption_price_what_a_dead_process_left(db: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for deliver in ("replay", "adopt"):
        old = file_pipeline(db, spool)  # a pipeline that never got to price (store locked)
        recs = some_records(40)
        with locked(db):
            for r in recs:
                old.submit(r)
            assert old.shutdown(0.2) is False
        old._thread.join(5)
        if deliver == "replay":
            report = replay(FileStore(db), spool_dir=spool, writers=["executions"],
                            pricer=Pricer())
            assert (report.applied, report.remaining) == (40, 0)
        else:
            new = file_pipeline(db, spool, pricer=Pricer(), orphan_scan_s=0.05)
            deadline = time.monotonic() + 10
            while (len(set(stored_costs(db)) & {str(r.execution_id) for r in recs}) < 40
                   and time.monotonic() < deadline):
                time.sleep(0.05)
            new.shutdown(5)
        costs = stored_costs(db)
        for r in recs:
            cost = costs[str(r.execution_id)][0]
            assert cost == (str(GPT4O) if r.result.model == "gpt-4o" else None), deliver


def test_requeued_records_are_priced(db: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    p = file_pipeline(db, spool)  # no pricer: the quarantine holds an unpriced record
    poison = priced_record("gpt-4o", "openai", tokens=tok(1000, 100), agent_id="poison-1")
    p.submit(poison)
    assert p.flush(5)
    p.shutdown(5)
    c = sqlite3.connect(db)
    c.execute("DROP TABLE executions")  # the fix: a table without the CHECK that refused it
    c.execute("CREATE TABLE executions (id TEXT PRIMARY KEY, agent_id TEXT, body TEXT)")
    c.commit()
    c.close()
    report = requeue_quarantined(FileStore(db), spool_dir=spool, writers=["executions"],
                                 pricer=Pricer({"gpt-4o": {"input_mtok": 1, "output_mtok": 2}}))
    assert report.applied == 1
    assert stored_costs(db)[str(poison.execution_id)] == (
        str(per_mtok((1000, "1"), (100, "2"))), USER_SOURCE)


# -- configuration ----------------------------------------------------------------------------


def test_configure_prices_reaches_the_records(tmp_path: Path) -> None:
    writer = Collect()
    instrument.configure(database_url=f"sqlite:///{tmp_path / 'c.db'}", writers=[writer],
                         prices={"house-model": {"input_mtok": "0.5", "output_mtok": 1}})
    rt = runtime.current()
    assert rt.pricer is not None
    assert rt.pricer.table is not None

    @logged_execution
    def execute() -> dict[str, object]:
        return {"success": True, "model": "house-model",
                "tokens": {"input_tokens": 1000, "output_tokens": 10}}

    execute()
    assert instrument.flush(10)
    [got] = writer.records
    assert (got.result.cost_usd, got.result.price_source) == (
        per_mtok((1000, "0.5"), (10, "1")), USER_SOURCE)


def test_instrument_prices_names_a_json_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"house-model": {"input_mtok": 3, "output_mtok": 4}}))
    monkeypatch.setenv("INSTRUMENT_PRICES", str(path))
    settings = instrument.configure(database_url=f"sqlite:///{tmp_path / 'e.db'}")
    assert settings.prices == {"house-model": {"input_mtok": 3, "output_mtok": 4}}
    pricer = runtime.current().pricer
    assert pricer is not None
    assert pricer.price(priced_record("house-model", tokens=tok(10, 10))) == (
        per_mtok((10, "3"), (10, "4")), USER_SOURCE)


@pytest.mark.parametrize(("content", "says"), [
    (None, "cannot read the price file"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must hold a JSON object"),
    ('{"m": {"input_mtok": 1}}', "lacks output_mtok"),
])
def test_a_bad_price_file_fails_configure_with_the_fix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | None,
        says: str) -> None:
    path = tmp_path / "prices.json"
    if content is not None:
        path.write_text(content)
    monkeypatch.setenv("INSTRUMENT_PRICES", str(path))
    with pytest.raises(ConfigurationError, match=says):
        instrument.configure(database_url=f"sqlite:///{tmp_path / 'b.db'}")
    assert runtime.peek() is None  # nothing half-built left running


# -- end to end: the real OpenAI client, the default SQLite store --------------------------------


@pytest.fixture
def client() -> Iterator[OpenAI]:
    with StubServer() as stub, OpenAI(base_url=stub.base_url, api_key="sk-test",
                                      max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each real store."""
    from instrument.stores import open_store

    url = (f"sqlite:///{tmp_path / 'e2e.db'}" if request.param == "sqlite"
           else request.getfixturevalue("pg_url"))
    store = open_store(url)
    store.migrate()
    store.close()
    return url


def stored_row(url: str, execution_id: str) -> tuple[Decimal | None, str | None]:
    """cost_usd and price_source of the execution's agent_executions row."""
    sql = "SELECT cost_usd, price_source FROM agent_executions WHERE id = "
    if url.startswith("sqlite:///"):
        c = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            cost, source = c.execute(sql + "?", (execution_id,)).fetchone()
        finally:
            c.close()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            row = conn.execute(sql + "%s", (execution_id,)).fetchone()
            assert row is not None
            cost, source = row
    return (None if cost is None else Decimal(str(cost))), source


def test_an_openai_chat_call_lands_priced_in_the_store(client: OpenAI,
                                                       database_url: str) -> None:
    """The real OpenAI client, a decorated executor, the store's own row: the exact cost."""
    writer = Collect()
    instrument.configure(database_url=database_url,
                         writers=["executions", "logs", "stats", "intensity", writer])

    @logged_execution(engine="openai_chat", agent_id="agent_id")
    def execute(agent_id: str) -> ChatCompletion:
        return client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    execute("priced-agent")
    assert instrument.flush(10)
    u = TEXT_USAGE
    expected = per_mtok((u.prompt - u.cached, "0.15"), (u.cached, "0.075"),
                        (u.completion, "0.6"))
    [got] = writer.records
    assert got.engine == "openai_chat"
    assert got.result.cost_usd == expected
    source = f"genai-prices {__import__('genai_prices').__version__}"
    assert got.result.price_source == source
    assert stored_row(database_url, str(got.execution_id)) == (expected, source)
