"""What ``instrument_ingest`` receives: the batch's records as JSON, under the content policy.

Shared by the PostgreSQL store (one ``select instrument_ingest(...)`` per batch) and the
Supabase store (the same function over RPC). Response and input text are sent only with
content capture; everything else of the record is sent as is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from pydantic import TypeAdapter

from instrument.record import ExecutionRecord

__all__ = ["CONTENT_FIELDS", "ingest_json", "ingest_payload"]

#: Content fields of a result, sent to the database only with content capture.
CONTENT_FIELDS = ("response", "input")
#: An escaped NUL (``\u0000``) in JSON text, not preceded by an escaped backslash.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def ingest_payload(record: ExecutionRecord, *, capture_content: bool) -> dict[str, Any]:
    """The JSON ``instrument_ingest`` receives for `record` (response and input text only on
    capture)."""
    data = record.to_json_dict()
    if not capture_content and any(data["result"].get(k) is not None for k in CONTENT_FIELDS):
        data["result"] = {**data["result"], **dict.fromkeys(CONTENT_FIELDS)}
    return data


def ingest_json(records: Sequence[ExecutionRecord], *, capture_content: bool) -> str:
    """The ``records`` argument of ``instrument_ingest`` as JSON text (pydantic, in one call).

    Same content as a list of :func:`ingest_payload`, minus null-valued fields (and, without
    capture, the ``response`` and ``input`` keys), which the SQL reads exactly as nulls: about
    a third less text to encode, send and parse. NUL characters, which Postgres cannot store,
    become U+FFFD.
    """
    # An exclude set costs pydantic about a quarter of the encoding time: pass one only when a
    # response must be dropped (a None response is already left out by exclude_none).
    exclude = None
    if not capture_content and any(r.result.response is not None or r.result.input is not None
                                   for r in records):
        exclude = {"__all__": {"result": set(CONTENT_FIELDS)}}
    text = _records_adapter().dump_json(list(records), exclude=exclude,
                                        exclude_none=True).decode()
    # Postgres text and jsonb cannot hold NUL: keep the record, with U+FFFD in its place.
    return _JSON_NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


@cache
def _records_adapter() -> TypeAdapter[list[ExecutionRecord]]:
    return TypeAdapter(list[ExecutionRecord])


