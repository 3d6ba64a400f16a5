"""The ``intensity`` writer on SQLite: AIS aggregates per agent, applied atomically, re-scored.

:func:`apply_sqlite` runs inside the store's open batch transaction, for records the store
already deduplicated by execution_id. Per agent it issues one upsert that adds the batch's
aggregates in SQL (``x = x + delta``, ``max``, set union, arg-max of the latest run), reads the
row back (the transaction holds the write lock) and writes the derived means and scores
computed by :mod:`instrument.ais` with the configuration in the ``ais_config`` table. The rows
must equal the reference, :mod:`instrument.stores.reference.intensity`.

Postgres/Supabase do the same in SQL: ``instrument_apply_intensity(records jsonb)`` in
``stores/postgres/sql/0002_intensity.sql``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from instrument import ais
from instrument.errors import ConfigurationError
from instrument.record import ExecutionRecord
from instrument.stores.reference.intensity import (
    AGGREGATE_COLUMNS,
    DERIVED_COLUMNS,
    SCORE_COLUMNS,
    IntensityBatch,
    aggregates_from_row,
    stored_values,
)

__all__ = [
    "apply_sqlite",
    "load_config_sqlite",
    "rescore_sqlite",
    "save_config_sqlite",
    "set_creation_score_sqlite",
]

_SET_COLUMNS = ("plugins", "memory_types")
_LATEST = ("latest_completed_at", "latest_execution_id", "latest_output_tokens")


def _ts_text(dt: datetime | None) -> str | None:
    """Fixed-width UTC text, so SQLite's text comparison orders like the datetimes."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def _merge_clause(col: str) -> str:
    if col in _SET_COLUMNS:
        return (f"{col} = (SELECT json_group_array(value) FROM (SELECT value FROM json_each("
                f"agent_intensity_metrics.{col}) UNION SELECT value FROM json_each(excluded.{col})"
                " ORDER BY value))")
    if col.startswith(("peak_", "max_")):
        return (f"{col} = CASE WHEN excluded.{col} IS NULL THEN {col} WHEN {col} IS NULL THEN "
                f"excluded.{col} ELSE max({col}, excluded.{col}) END")
    if col in _LATEST:
        return (f"{col} = CASE WHEN excluded.latest_completed_at IS NOT NULL AND "
                "(latest_completed_at IS NULL OR (excluded.latest_completed_at, "
                "excluded.latest_execution_id) > (latest_completed_at, latest_execution_id)) "
                f"THEN excluded.{col} ELSE {col} END")
    return f"{col} = {col} + excluded.{col}"


_INSERT_COLUMNS = ("agent_id", "user_id", "creation_score", *AGGREGATE_COLUMNS)
_UPSERT_SQL = (
    f"INSERT INTO agent_intensity_metrics ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _INSERT_COLUMNS)}) "
    "ON CONFLICT (agent_id) DO UPDATE SET "
    "user_id = coalesce(agent_intensity_metrics.user_id, excluded.user_id), "
    + ", ".join(_merge_clause(c) for c in AGGREGATE_COLUMNS)
)
_WRITE_COLUMNS = (*DERIVED_COLUMNS, *SCORE_COLUMNS)
_SCORE_SQL = (
    "UPDATE agent_intensity_metrics SET "
    + ", ".join(f"{c} = ?" for c in _WRITE_COLUMNS)
    + ", last_calculated_at = ?, updated_at = ? WHERE agent_id = ?"
)


def _params(agg: ais.Aggregates) -> list[Any]:
    out: list[Any] = []
    for col in AGGREGATE_COLUMNS:
        value = getattr(agg, col)
        if col in _SET_COLUMNS:
            value = json.dumps(sorted(value))
        elif col == "latest_completed_at":
            value = _ts_text(value)
        out.append(value)
    return out


#: The last ``ais_config`` rows read and the configuration they give (rows -> config is pure;
#: validating a configuration costs more than the rest of a small batch).
_config_cache: tuple[tuple[tuple[Any, ...], ...], ais.AISConfig] | None = None


def load_config_sqlite(conn: sqlite3.Connection) -> ais.AISConfig:
    """The AIS configuration stored in the database's ``ais_config`` table."""
    global _config_cache
    rows = tuple(tuple(r) for r in conn.execute("SELECT key, value FROM ais_config"))
    cached = _config_cache
    if cached is not None and cached[0] == rows:
        return cached[1]
    config = ais.AISConfig.from_rows(rows)
    _config_cache = (rows, config)
    return config


def save_config_sqlite(conn: sqlite3.Connection, config: ais.AISConfig) -> None:
    """Store `config` in ``ais_config`` (call :func:`rescore_sqlite` to refresh scores)."""
    conn.executemany(
        "INSERT INTO ais_config (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
        "value = excluded.value, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        [(k, json.dumps(v)) for k, v in config.to_mapping().items()],
    )


def apply_sqlite(conn: sqlite3.Connection, records: Sequence[ExecutionRecord] | IntensityBatch
                 ) -> None:
    """Add `records` (already deduplicated) to their agents' aggregates and re-score them.

    Runs inside the caller's transaction and never commits. Records without agent_id are
    skipped: there is no agent to score. `records` may be given as their
    :class:`IntensityBatch`, built before the transaction began.
    """
    batch = records if isinstance(records, IntensityBatch) else IntensityBatch.of(records)
    per_agent = batch.aggregates
    if not per_agent:
        return
    config = load_config_sqlite(conn)
    for agent_id in sorted(per_agent):
        conn.execute(_UPSERT_SQL, [agent_id, batch.users.get(agent_id),
                                   config.creation_default_score, *_params(per_agent[agent_id])])
    rescore_sqlite(conn, sorted(per_agent), config)


def _fetch_rows(conn: sqlite3.Connection, agent_ids: Sequence[str] | None
                ) -> list[dict[str, Any]]:
    sql = "SELECT * FROM agent_intensity_metrics"
    params: list[str] = []
    if agent_ids is not None:
        sql += f" WHERE agent_id IN ({', '.join('?' for _ in agent_ids)})"
        params = list(agent_ids)
    cur = conn.execute(sql + " ORDER BY agent_id", params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def rescore_sqlite(conn: sqlite3.Connection, agent_ids: Sequence[str] | None = None,
                   config: ais.AISConfig | None = None) -> None:
    """Recompute derived means and scores of `agent_ids` (default: every agent) from the rows."""
    cfg = config or load_config_sqlite(conn)
    now = _ts_text(datetime.now(UTC))
    for row in _fetch_rows(conn, agent_ids):
        values = stored_values(aggregates_from_row(row), row.get("creation_score"), cfg)
        conn.execute(_SCORE_SQL, [*(values[c] for c in _WRITE_COLUMNS), now, now,
                                  row["agent_id"]])


def set_creation_score_sqlite(conn: sqlite3.Connection, agent_id: str, value: float,
                              user_id: str | None = None) -> None:
    """Set an agent's creation score (0-10) and refresh its combined score."""
    if not 0.0 <= value <= 10.0:
        raise ConfigurationError(f"creation score {value!r} must be between 0 and 10")
    conn.execute(
        "INSERT INTO agent_intensity_metrics (agent_id, user_id, creation_score, combined_score,"
        " intensity_multiplier) VALUES (?, ?, ?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET "
        "creation_score = excluded.creation_score, "
        "user_id = coalesce(agent_intensity_metrics.user_id, excluded.user_id)",
        [agent_id, user_id, value, value, ais.multiplier(value)],
    )
    rescore_sqlite(conn, [agent_id])

