"""The door: what a decorated call hands the pipeline is bounded, valid and masked.

Every test goes through the real decorator into a real store (SQLite in a temporary directory,
or a fresh PostgreSQL database) and reads the four tables back: lone surrogates, huge or
hostile identity values, negative counts and secrets in captured content never cost a record,
never stop delivery and never reach a sink unmasked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import instrument
from instrument import logged_execution, record
from instrument.record import (
    MAX_KEY_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_RESPONSE_CHARS,
    ExecutionRecord,
    ExecutionResult,
    StepCounts,
    TokenUsage,
    ToolCall,
    bounded_key,
)
from instrument.testing import capture
from instrument.tracing.spans import Tracing

TABLES = ("agent_executions", "agent_logs", "agent_stats", "agent_intensity_metrics")
SECRETS = ("sk-proj0123456789abcdefXYZ", "AKIAIOSFODNN7EXAMPLE", "hunter2-Pa55word",
           "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "tok3n-b34rer-value")
LEAKY = (f"use key {SECRETS[0]} with aws {SECRETS[1]}; password={SECRETS[2]} and "
         f"jwt {SECRETS[3]}, header Authorization: Bearer {SECRETS[4]}")


def _sqlite(tmp_path: Path, **options: Any) -> Path:
    db = tmp_path / "x.db"
    instrument.configure(database_url=f"sqlite:///{db}", spool_dir=tmp_path / "spool",
                         **options)
    return db


def _rows(db: Path, table: str) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(db)) as con:
        con.row_factory = sqlite3.Row
        return [dict(r) for r in con.execute(f"SELECT * FROM {table}")]


def _counts(db: Path) -> dict[str, int]:
    return {t: len(_rows(db, t)) for t in TABLES}


def _pg_rows(url: str, table: str) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row) as conn:
        return list(conn.execute(f"SELECT * FROM public.{table}"))


def _messages(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


# -- item 4: odd text ---------------------------------------------------------------------------

ODD = "bad\udcffbyte\ud800"  # lone surrogates: what surrogateescape decoding leaves behind


@logged_execution(agent_id="who.agent", user_id="who.user", agent_name="who.name",
                  session_id="who.session", execution_type=lambda a: a["who"]["kind"],
                  name=f"op-{ODD}")
def odd_executor(who: dict[str, str], fail: bool) -> dict[str, Any]:
    if fail:
        raise ValueError(f"upstream said {ODD}")
    return {"success": True}


def test_lone_surrogates_in_identity_names_and_messages_keep_every_record(
        tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    who = {"agent": f"agent-{ODD}", "user": f"user-{ODD}", "name": f"name-{ODD}",
           "session": f"session-{ODD}", "kind": f"kind-{ODD}"}
    odd_executor(who, False)
    with pytest.raises(ValueError, match="upstream said"):
        odd_executor(who, True)
    assert instrument.flush(10.0) is True

    assert _counts(db) == {"agent_executions": 2, "agent_logs": 2, "agent_stats": 1,
                           "agent_intensity_metrics": 1}
    clean = "bad\ufffdbyte\ufffd"
    rows = sorted(_rows(db, "agent_executions"), key=lambda r: r["status"])
    for row in rows:
        assert (row["agent_id"], row["user_id"], row["agent_name"], row["session_id"],
                row["execution_type"]) == (f"agent-{clean}", f"user-{clean}", f"name-{clean}",
                                           f"session-{clean}", f"kind-{clean}")
    assert [r["status"] for r in rows] == ["completed", "failed"]
    assert rows[1]["error_message"] == f"upstream said {clean}"
    (stats,) = _rows(db, "agent_stats")
    assert (stats["agent_id"], stats["run_count"], stats["failure_count"]) == (
        f"agent-{clean}", 2, 1)


def test_lone_surrogates_in_an_ambient_context_are_cleaned(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)

    @logged_execution
    def bare() -> None:
        return None

    with instrument.execution_context(agent_id=f"amb-{ODD}", session_id=ODD):
        bare()
    assert instrument.flush(10.0) is True
    (row,) = _rows(db, "agent_executions")
    assert (row["agent_id"], row["session_id"]) == ("amb-bad\ufffdbyte\ufffd",
                                                    "bad\ufffdbyte\ufffd")


# -- bounded identity -------------------------------------------------------------------------


@logged_execution(agent_id="agent", user_id="user", session_id="agent")
def keyed(agent: str, user: str) -> dict[str, Any]:
    return {"success": True, "tokens": {"total_tokens": 3}}


def _expected_key(value: str) -> str:
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
    return value[: MAX_KEY_CHARS - 65] + "\u2026" + digest


def test_a_long_id_is_stored_whole_as_prefix_and_hash_and_still_groups(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    first, second = secrets.token_urlsafe(7_500), secrets.token_urlsafe(7_500)  # ~10 kB each
    assert first[:191] != second[:191]
    keyed(first, "u")
    keyed(first, "u")
    keyed(second, "u")
    keyed("short-id", "u")
    assert instrument.flush(10.0) is True

    stats = {r["agent_id"]: r["run_count"] for r in _rows(db, "agent_stats")}
    assert stats == {_expected_key(first): 2, _expected_key(second): 1, "short-id": 1}
    assert all(len(k) <= MAX_KEY_CHARS for k in stats)
    assert sorted(len(r["session_id"]) for r in _rows(db, "agent_executions")) == [
        8, MAX_KEY_CHARS, MAX_KEY_CHARS, MAX_KEY_CHARS]


def test_same_prefix_different_long_ids_get_different_keys() -> None:
    common = "x" * 400
    a, b = bounded_key(common + "a"), bounded_key(common + "b")
    assert a != b
    assert len(a) == len(b) == MAX_KEY_CHARS
    assert bounded_key(common + "a") == a
    assert bounded_key("x" * MAX_KEY_CHARS) == "x" * MAX_KEY_CHARS


def test_a_10kb_random_agent_id_lands_in_postgres(pg_url: str, tmp_path: Path) -> None:
    from instrument.stores.postgres.store import PostgresStore

    schema = PostgresStore(pg_url)
    schema.migrate()
    schema.close()
    instrument.configure(database_url=pg_url, spool_dir=tmp_path / "spool")
    ids = [secrets.token_urlsafe(7_500) for _ in range(2)]  # incompressible, ~10 kB
    user = secrets.token_hex(5_000)
    keyed(ids[0], user)
    keyed(ids[1], user)
    keyed(ids[0], user)
    assert instrument.flush(30.0) is True

    executions = _pg_rows(pg_url, "agent_executions")
    assert len(executions) == 3
    assert {r["user_id"] for r in executions} == {_expected_key(user)}
    assert len(_pg_rows(pg_url, "agent_logs")) == 3
    stats = {r["agent_id"]: r["run_count"] for r in _pg_rows(pg_url, "agent_stats")}
    assert stats == {_expected_key(ids[0]): 2, _expected_key(ids[1]): 1}
    assert len(_pg_rows(pg_url, "agent_intensity_metrics")) == 2


# -- item 8, the record's side: counts ----------------------------------------------------------


@pytest.fixture
def fresh_refusal_log() -> None:
    """Refusals are logged once a minute per field: start each test with none logged."""
    record._refusals.reset()


@logged_execution(agent_id="agent")
def counting(agent: str, input_tokens: int) -> ExecutionResult:
    return ExecutionResult(
        success=True, tokens=TokenUsage(input_tokens=input_tokens, output_tokens=7,
                                        total_tokens=input_tokens + 7),
        iterations=-1, steps=StepCounts(completed=2, failed=-3),
        tool_calls=[ToolCall(name="t", items_returned=-4, duration_ms=-1.0)])


@pytest.mark.usefixtures("fresh_refusal_log")
def test_negative_counts_are_unmeasured_and_never_reach_the_sums(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = _sqlite(tmp_path)
    with caplog.at_level(logging.WARNING, logger="instrument"):
        counting("a", 5)
        counting("a", -100)
    assert instrument.flush(10.0) is True

    rows = sorted(_rows(db, "agent_executions"), key=lambda r: r["input_tokens"] is None)
    assert [(r["input_tokens"], r["output_tokens"], r["total_tokens"]) for r in rows] == [
        (5, 7, 12), (None, 7, None)]
    (stats,) = _rows(db, "agent_stats")
    assert (stats["run_count"], stats["total_tokens"]) == (2, 12)
    refused = _messages(caplog, "is out of range")
    assert sorted(m.split("=")[0].split()[-1] for m in refused) == [
        "ExecutionResult.iterations", "StepCounts.failed", "TokenUsage.input_tokens",
        "TokenUsage.total_tokens", "ToolCall.duration_ms", "ToolCall.items_returned"]
    assert "TokenUsage.input_tokens=-100" in " ".join(refused)


@pytest.mark.usefixtures("fresh_refusal_log")
def test_a_count_beyond_bigint_is_unmeasured() -> None:
    usage = TokenUsage(input_tokens=2**63, output_tokens=2**63 - 1)
    assert (usage.input_tokens, usage.output_tokens) == (None, 2**63 - 1)


# -- item 9: an id whose __str__ raises -----------------------------------------------------------


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@logged_execution(agent_id="agent", user_id="user")
def hostile(agent: object, user: object) -> dict[str, Any]:
    return {"success": True}


def test_an_id_whose_str_raises_is_none_and_the_call_is_recorded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    db = _sqlite(tmp_path)
    with caplog.at_level(logging.WARNING, logger="instrument"):
        hostile(Unprintable(), "u-1")
        hostile(Unprintable(), "u-2")
        with instrument.execution_context(session_id=Unprintable()):  # type: ignore[arg-type]
            hostile("a-3", "u-3")
    assert instrument.flush(10.0) is True  # not "the configuration is invalid"

    rows = sorted(_rows(db, "agent_executions"), key=lambda r: r["user_id"])
    assert [(r["agent_id"], r["user_id"], r["session_id"]) for r in rows] == [
        (None, "u-1", None), (None, "u-2", None), ("a-3", "u-3", None)]
    assert len(_messages(caplog, "str() of a Unprintable raised RuntimeError")) == 1
    assert len(_messages(caplog, "execution_context(session_id=...)")) == 1
    assert _messages(caplog, "configuration is invalid") == []


# -- item 5: content is masked before any sink --------------------------------------------------


class Collecting:
    name = "collect"

    def __init__(self) -> None:
        self.records: list[ExecutionRecord] = []

    def write(self, records: Sequence[ExecutionRecord]) -> None:
        self.records.extend(records)


@logged_execution(capture_content=True)
def talkative() -> dict[str, Any]:
    return {"success": True, "response": LEAKY,
            "tool_calls": [{"name": "shell", "call_id": "c1"}],
            "extras": {"tool_arguments": [{"cmd": f"export KEY={SECRETS[0]}",
                                           "api_key": "plain-looking-value"}]}}


def test_secrets_in_captured_content_never_reach_spool_stores_or_writers(tmp_path: Path) -> None:
    writer = Collecting()
    db = _sqlite(tmp_path, writers=["executions", "logs", "stats", "intensity", writer],
                 flush_interval_s=60.0)
    talkative()
    segments = sorted((tmp_path / "spool").glob("*.seg"))
    assert len(segments) == 1
    spooled = segments[0].read_bytes().rstrip(b"\0").decode()
    assert instrument.flush(10.0) is True

    (execution,) = _rows(db, "agent_executions")
    (log,) = _rows(db, "agent_logs")
    (delivered,) = writer.records
    sinks = {"spool": spooled, "agent_executions.logs": execution["logs"],
             "agent_logs.full_output": log["full_output"], "writer": delivered.model_dump_json()}
    for where, text in sinks.items():
        assert "[REDACTED]" in text, where
        for secret in (*SECRETS, "plain-looking-value"):
            assert secret not in text, (where, secret)
    assert delivered.result.response == (
        "use key [REDACTED] with aws [REDACTED]; password=[REDACTED] and jwt [REDACTED], "
        "header Authorization: Bearer [REDACTED]")
    assert delivered.result.extras["tool_arguments"] == [
        {"cmd": "export KEY=[REDACTED]", "api_key": "[REDACTED]"}]


# -- item 7: huge text is cut before it is masked -----------------------------------------------

MARKER = "\u2026[truncated {} chars]"


@logged_execution(agent_id="agent", capture_content=True)
def huge(agent: str, size: int, fail: bool) -> dict[str, Any]:
    head = f"{SECRETS[0]} "
    text = head + "x" * (size - len(head) - len(SECRETS[1]) - 1) + " " + SECRETS[1]
    if fail:
        raise RuntimeError(text)
    return {"success": True, "response": text}


def test_a_huge_exception_message_and_response_are_stored_cut_and_masked(
        tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    size = 8 * 1024 * 1024
    with pytest.raises(RuntimeError) as caught:
        huge("a", size, True)
    assert len(str(caught.value)) == size  # the host's exception is untouched
    huge("a", size, False)
    assert instrument.flush(10.0) is True

    rows = {r["status"]: r for r in _rows(db, "agent_executions")}
    message = rows["failed"]["error_message"]
    kept = "[REDACTED] " + "x" * (MAX_MESSAGE_CHARS - len(SECRETS[0]) - 1)
    expected = kept + MARKER.format(size - MAX_MESSAGE_CHARS)
    assert (len(message), message[:20], message[-40:]) == (
        len(expected), expected[:20], expected[-40:])
    response = json.loads(rows["completed"]["logs"])["response"]
    expected = kept + MARKER.format(size - MAX_RESPONSE_CHARS)  # MAX_RESPONSE_CHARS == 64 Ki
    assert (len(response), response[:20], response[-40:]) == (
        len(expected), expected[:20], expected[-40:])


def test_the_span_reuses_the_masked_message_and_bounds_the_stack() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    size = 1024 * 1024
    with capture(tracing=Tracing(provider)) as cap, pytest.raises(RuntimeError):
        huge("a", size, True)
    (span,) = exporter.get_finished_spans()
    (event,) = span.events
    attributes = dict(event.attributes or {})
    error = cap.records[0].result.error
    assert error is not None
    assert attributes["exception.message"] is error.message  # masked once, not again
    masked_cut = MAX_MESSAGE_CHARS - len(SECRETS[0]) + len("[REDACTED]")
    assert len(error.message) == masked_cut + len(MARKER.format(size - MAX_MESSAGE_CHARS))
    stack = str(attributes["exception.stacktrace"])
    assert len(stack) < 2 * 16_384 + 40
    assert SECRETS[0] not in stack
    assert SECRETS[1] not in stack
    assert "huge" in stack  # the frames are still there
    assert span.status.description is not None
    assert span.status.description.startswith("RuntimeError: [REDACTED] xxx")
