"""Tags and metadata are bounded and odd values never break the host call; the input (prompt) is
kept, masked and dropped under exactly the response's content policy, for every sink."""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import instrument
from instrument import execution_context, logged_execution
from instrument.labels import (
    MAX_METADATA_BYTES,
    MAX_TAGS,
    TRUNCATED_KEY,
    bounded_metadata,
    bounded_tags,
)
from instrument.record import MAX_KEY_CHARS
from instrument.testing import capture
from instrument.tracing.spans import Tracing


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class HostileMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot iterate")

    def __len__(self) -> int:
        return 1


def _collect(value: object, fn: Any) -> tuple[Any, list[str]]:
    said: list[str] = []
    return fn(value, said.append), said


def test_tags_are_deduplicated_bounded_and_cut_like_ids() -> None:
    long = "x" * 1000
    tags, said = _collect(["a", "b", "a", long, 7, None, b"raw", Hostile()], bounded_tags)
    assert tags[:2] == ("a", "b")
    assert tags[3] == "7"
    assert len(tags) == 4
    assert len(tags[2]) == MAX_KEY_CHARS
    assert tags[2].startswith("xxx")
    assert len(said) == 3  # None, bytes and the hostile __str__, each said
    many, said = _collect([f"t{i}" for i in range(500)], bounded_tags)
    assert len(many) == MAX_TAGS
    assert many[-1] == f"t{MAX_TAGS - 1}"
    assert any(f"more than {MAX_TAGS}" in s for s in said)
    assert _collect("one", bounded_tags)[0] == ("one",)
    assert _collect([], bounded_tags)[0] is None
    assert _collect({"a": 1}, bounded_tags)[0] is None  # a mapping is not a list of tags
    endless, _ = _collect(iter(lambda: "same", None), bounded_tags)  # never ends, all dupes?
    assert endless == ("same",)


def test_an_endless_stream_of_distinct_tags_is_cut_off() -> None:
    def forever() -> Iterator[str]:
        i = 0
        while True:
            yield f"t{i}"
            i += 1

    tags, said = _collect(forever(), bounded_tags)
    assert len(tags) == MAX_TAGS
    assert said


def test_metadata_is_json_safe_and_cut_to_its_byte_limit() -> None:
    when = datetime(2026, 12, 1, tzinfo=UTC)
    value: dict[Any, Any] = {
        "n": 1, "f": 1.5, "nan": math.nan, "ok": True, "none": None, "when": when,
        "money": Decimal("1.25"), 3: "int key", "nested": {"list": (1, "a", {"deep": [1]})},
        "set": {3, 1, 2}, "obj": Hostile(), "long": "y" * 10_000,
    }
    meta, said = _collect(value, bounded_metadata)
    assert meta["n"] == 1
    assert meta["f"] == 1.5
    assert meta["nan"] is None
    assert meta["ok"] is True
    assert meta["when"] == str(when)
    assert meta["money"] == "1.25"
    assert meta["3"] == "int key"
    assert meta["nested"] == {"list": [1, "a", {"deep": [1]}]}
    assert meta["set"] == [1, 2, 3]
    assert meta["obj"] == "<Hostile>"
    assert meta["long"].startswith("y" * 4096)
    assert "truncated" in meta["long"]
    json.dumps(meta, allow_nan=False)  # JSON-safe
    assert len(said) == 2  # the NaN and the hostile __str__
    deep: dict[str, Any] = {}
    node = deep
    for _ in range(20):
        node["d"] = {}
        node = node["d"]
    cut, _ = _collect(deep, bounded_metadata)
    assert "nested deeper" in json.dumps(cut)


def test_metadata_over_16_kib_keeps_what_fits_and_says_so() -> None:
    big = {f"k{i}": "v" * 1000 for i in range(40)}
    meta, said = _collect(big, bounded_metadata)
    size = len(json.dumps(meta, separators=(",", ":")).encode())
    assert size <= MAX_METADATA_BYTES
    assert "k0" in meta
    assert "k39" not in meta
    assert meta[TRUNCATED_KEY].startswith(f"{40 - (len(meta) - 1)} of 40 keys dropped")
    assert len(said) == 1
    assert "16384-byte limit" in said[0]


def test_odd_values_never_break_the_call_and_are_warned_once(
        caplog: pytest.LogCaptureFixture) -> None:
    @logged_execution(tags="labels", metadata="meta")
    def run(labels: object, meta: object) -> str:
        return "ran"

    with capture() as cap, caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert run([Hostile(), "ok"], HostileMapping()) == "ran"
        assert run(42, "not a mapping") == "ran"
    assert [r.tags for r in cap.records] == [("ok",)] * 3 + [None]
    assert [r.metadata for r in cap.records] == [None] * 4
    mine = [m for m in caplog.messages if "run" in m and ("tags" in m or "metadata" in m)]
    assert len(mine) == 2, mine  # one for tags, one for metadata, not one per call


def test_execution_context_bounds_its_tags_and_metadata_too() -> None:
    @logged_execution
    def run() -> None: ...

    with capture() as cap:
        with execution_context(tags=[f"t{i}" for i in range(100)],
                               metadata={f"k{i}": "v" * 1000 for i in range(40)}):
            with execution_context(metadata={"extra": "x" * 3000}):
                run()
    (rec,) = cap.records
    assert rec.tags is not None
    assert len(rec.tags) == MAX_TAGS
    assert rec.metadata is not None
    assert TRUNCATED_KEY in rec.metadata
    assert len(json.dumps(rec.metadata, separators=(",", ":")).encode()) <= MAX_METADATA_BYTES
    assert "extra" in rec.metadata  # the inner block's key was kept: it is merged last


def test_secrets_in_metadata_are_masked_like_extras() -> None:
    @logged_execution(metadata={"api_key": "abc123", "note": "sk-live0123456789abcdef"})
    def run() -> None: ...

    with capture() as cap:
        run()
    (rec,) = cap.records
    assert rec.metadata == {"api_key": "[REDACTED]", "note": "[REDACTED]"}


# -- input capture: the prompt under the response's policy --------------------------------

PROMPT = "please refund ACCT-123456 now"
ANSWER = "refunded ACCT-123456"


@logged_execution(engine="mapping")
def chat(prompt: str) -> dict[str, Any]:
    return {"success": True, "input": prompt, "response": ANSWER}


@pytest.fixture
def spans() -> tuple[InMemorySpanExporter, TracerProvider]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, provider


def _span_input(exporter: InMemorySpanExporter) -> str | None:
    (span,) = exporter.get_finished_spans()
    value = (span.attributes or {}).get("gen_ai.input.messages")
    return None if value is None else str(value)


@pytest.mark.parametrize("policy", ["spans", "db", "all", "none"])
def test_input_follows_the_content_policy_and_masking_on_every_sink(
        policy: str, spans: tuple[InMemorySpanExporter, TracerProvider],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSTRUMENT_REDACT_PATTERNS", r"ACCT-\d{6}")
    exporter, provider = spans
    to_spans, to_db = policy in ("spans", "all"), policy in ("db", "all")
    tracing = Tracing(provider, content_to_spans=to_spans)
    with capture(capture_content=policy, tracing=tracing) as cap:
        chat(PROMPT)
    (rec,) = cap.records  # what the spool, the stores and custom writers get
    if to_db:
        assert rec.result.input == "please refund [REDACTED] now"
        assert rec.result.response == "refunded [REDACTED]"
    else:
        assert rec.result.input is None
        assert rec.result.response is None
    on_span = _span_input(exporter)
    if to_spans:
        assert on_span is not None
        assert "please refund [REDACTED] now" in on_span
        assert "123456" not in on_span
    else:
        assert on_span is None


def test_masked_input_lands_in_the_sqlite_row_only_when_the_policy_stores_content(
        tmp_path: Path) -> None:
    for policy, expected in (("all", "please refund [REDACTED] now"), ("spans", None)):
        db = tmp_path / f"{policy}.db"
        instrument.configure(database_url=f"sqlite:///{db}", spool_dir=tmp_path / policy,
                             traces="none", capture_content=policy,
                             redact_patterns=[r"ACCT-\d{6}"])
        chat(PROMPT)
        assert instrument.flush(10.0)
        with closing(sqlite3.connect(db)) as conn:
            (row,) = conn.execute("SELECT input FROM agent_executions").fetchall()
        assert row[0] == expected, policy


def test_capture_content_on_the_decorator_overrides_the_policy_for_input() -> None:
    @logged_execution(engine="mapping", capture_content=False)
    def private(prompt: str) -> dict[str, Any]:
        return {"success": True, "input": prompt}

    with capture(capture_content="all") as cap:
        private(PROMPT)
        chat(PROMPT)
    assert [r.result.input is None for r in cap.records] == [True, False]
