"""The spool encoder (orjson, pydantic as the fallback) round-trips every record exactly."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.common import synthetic_records
from instrument.pipeline.spool import _decode, encode
from instrument.record import ExecutionRecord, ExecutionResult, ToolCall

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20)
    | st.floats(allow_nan=True, allow_infinity=True),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12,
)


def _record(extras: dict[str, object], response: str | None, started: datetime | None,
            writers: tuple[str, ...] | None) -> ExecutionRecord:
    now = datetime.now(UTC)
    return ExecutionRecord(
        execution_id=uuid.uuid4(), agent_id="a", engine="mapping", name="run",
        started_at=now, completed_at=now + timedelta(milliseconds=3), duration_ms=3.25,
        writers=writers,
        result=ExecutionResult(success=True, response=response, extras=extras, tool_calls=[
            ToolCall(name="t", started_at=started, duration_ms=1.5, success=True)]),
    )


def _round_trip(record: ExecutionRecord) -> ExecutionRecord:
    line = encode(record)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1  # one record, one line
    entry = _decode(0, len(line), line.rstrip(b"\n"))
    assert entry.record is not None, entry.error
    return entry.record


def _same(a: object, b: object) -> bool:
    """Equality where NaN/inf (stored as JSON null) compare as None."""
    if isinstance(a, float) and not math.isfinite(a):
        return b is None
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@given(extras=st.dictionaries(st.text(max_size=8), _json, max_size=5),
       response=st.none() | st.text(max_size=30),
       started=st.none() | st.datetimes(timezones=st.just(UTC))
       | st.datetimes(timezones=st.just(timezone(timedelta(hours=-5)))) | st.datetimes(),
       writers=st.none() | st.just(("executions", "stats")))
@settings(max_examples=300, deadline=None)
def test_any_record_round_trips_through_the_spool(
        extras: dict[str, object], response: str | None, started: datetime | None,
        writers: tuple[str, ...] | None) -> None:
    record = _record(extras, response, started, writers)
    back = _round_trip(record)
    assert back.model_dump(exclude={"result"}) == record.model_dump(exclude={"result"})
    assert back.result.model_dump(exclude={"extras"}) == record.result.model_dump(
        exclude={"extras"})
    assert _same(record.result.extras, back.result.extras)
    # and the fallback (pydantic) line decodes to the very same record
    legacy = (b'{"schema_version":1,"record":%s}' % record.model_dump_json().encode())
    assert _decode(0, 0, legacy).record == back


@pytest.mark.parametrize("record", synthetic_records(20), ids=lambda r: r.engine)
def test_realistic_records_encode_like_pydantic(record: ExecutionRecord) -> None:
    ours = json.loads(encode(record))
    theirs = json.loads(record.model_dump_json())
    assert ours["schema_version"] == 1
    assert ExecutionRecord.model_validate(ours["record"]) == ExecutionRecord.model_validate(
        theirs) == record


def test_what_orjson_refuses_falls_back_to_pydantic() -> None:
    record = _record({"huge": 2**80}, None, None, None)  # beyond 64 bits: orjson refuses
    assert _round_trip(record).result.extras == {"huge": 2**80}
