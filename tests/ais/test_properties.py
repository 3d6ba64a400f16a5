"""Order, batching and concurrency independence of the AIS aggregates and scores."""

from __future__ import annotations

import math
from dataclasses import asdict, fields, replace
from functools import reduce

from hypothesis import given, settings
from hypothesis import strategies as st

from instrument import ais
from instrument.record import ExecutionRecord
from instrument.stores.reference.intensity import stored_values
from tests.ais.histories import (
    assert_aggregates_close,
    assert_values_close,
    histories,
    records,
)

SETTINGS = settings(max_examples=60, deadline=None)


def _check_same(expected: dict[str, ais.Aggregates], got: dict[str, ais.Aggregates]) -> None:
    assert set(expected) == set(got)
    for agent, agg in expected.items():
        assert_aggregates_close(agg, got[agent])
        assert_values_close(stored_values(agg, 3.0), stored_values(got[agent], 3.0))


def _merge_maps(a: dict[str, ais.Aggregates], b: dict[str, ais.Aggregates]
                ) -> dict[str, ais.Aggregates]:
    out = dict(a)
    for agent, agg in b.items():
        out[agent] = out[agent].merge(agg) if agent in out else agg
    return out


@SETTINGS
@given(histories)
def test_one_at_a_time_equals_whole(history: list[ExecutionRecord]) -> None:
    whole = ais.aggregate(history)
    state: dict[str, ais.Aggregates] = {}
    for record in history:
        state = ais.aggregate([record], into=state)
    _check_same(whole, state)


@SETTINGS
@given(histories, st.data())
def test_any_order_and_batching_equals_whole(history: list[ExecutionRecord],
                                             data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(history))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(history)), max_size=8)))
    batches = [shuffled[i:j] for i, j in zip([0, *cuts], [*cuts, len(history)], strict=True)]
    state: dict[str, ais.Aggregates] = {}
    for batch in batches:
        state = _merge_maps(state, ais.aggregate(batch))
    _check_same(ais.aggregate(history), state)


@SETTINGS
@given(histories, st.data())
def test_concurrent_writers_merge_in_any_tree(history: list[ExecutionRecord],
                                              data: st.DataObject) -> None:
    writers = data.draw(st.integers(1, 5))
    owner = data.draw(st.lists(st.integers(0, writers - 1), min_size=len(history),
                               max_size=len(history)))
    parts = [ais.aggregate([r for r, o in zip(history, owner, strict=True) if o == w])
             for w in range(writers)]
    order = data.draw(st.permutations(parts))
    # a random merge tree: repeatedly merge two random neighbours
    while len(order) > 1:
        i = data.draw(st.integers(0, len(order) - 2))
        order = [*order[:i], _merge_maps(order[i], order[i + 1]), *order[i + 2:]]
    _check_same(ais.aggregate(history), order[0] if order else {})


@settings(max_examples=30, deadline=None)
@given(histories, histories, histories)
def test_merge_is_commutative_and_associative(h1: list[ExecutionRecord],
                                              h2: list[ExecutionRecord],
                                              h3: list[ExecutionRecord]) -> None:
    agents = ("agent-a",)
    a, b, c = (reduce(ais.Aggregates.add,
                      [d for r in h if (d := ais.IntensityDelta.from_record(r)) is not None
                       and d.agent_id in agents], ais.Aggregates()) for h in (h1, h2, h3))
    assert_aggregates_close(a.merge(b), b.merge(a))
    assert_aggregates_close(a.merge(b).merge(c), a.merge(b.merge(c)))
    assert_aggregates_close(a.merge(ais.Aggregates()), a)


_UNMEASURED = ("tokens", "iterations", "retries", "tool_calls", "orchestration_ms",
               "workflow", "memory")


@SETTINGS
@given(histories, records(agents=("agent-a",)), st.sampled_from(_UNMEASURED))
def test_unmeasured_dimension_never_moves_its_means(history: list[ExecutionRecord],
                                                    extra: ExecutionRecord,
                                                    dimension: str) -> None:
    """A record that did not measure a dimension leaves that dimension's means unchanged."""
    if any(r.execution_id == extra.execution_id for r in history):
        return
    unmeasured = extra.model_copy(update={
        "result": extra.result.model_copy(update={dimension: None})})
    before = ais.aggregate(history).get("agent-a", ais.Aggregates())
    after = ais.aggregate([*history, unmeasured])["agent-a"]
    d0, d1 = asdict(ais.derive(before)), asdict(ais.derive(after))
    affected = {
        "tokens": ("avg_tokens_per_run", "avg_input_tokens_per_run", "avg_output_tokens_per_run",
                   "output_input_ratio", "output_token_baseline", "output_token_growth_rate"),
        "iterations": ("avg_iterations_per_run",),
        "retries": ("mean_retries_per_run", "retried_share"),
        "tool_calls": ("avg_tool_calls_per_run", "unique_plugins_used"),
        "orchestration_ms": ("avg_orchestration_ms",),
        "workflow": (),
        "memory": ("avg_memory_tokens_per_run", "memory_type_count", "avg_memory_entries"),
    }[dimension]
    for key in affected:
        assert d0[key] == d1[key], f"{dimension} unmeasured moved {key}: {d0[key]} -> {d1[key]}"
    if dimension == "workflow":
        for key in ("max_workflow_steps", "max_branches", "max_loops", "max_parallel"):
            assert getattr(before, key) == getattr(after, key)
    if dimension == "tokens":
        for key in ("n_token_runs", "n_io_runs", "total_tokens_used", "latest_execution_id"):
            assert getattr(before, key) == getattr(after, key)


@SETTINGS
@given(histories, st.floats(min_value=-50, max_value=50, allow_nan=False))
def test_scores_stay_within_0_and_10(history: list[ExecutionRecord], creation: float) -> None:
    for agg in ais.aggregate(history).values():
        s = ais.score(agg, creation)
        for name in ("token", "execution", "plugin", "workflow", "memory", "execution_score"):
            value = getattr(s, name)
            assert value is None or 0.0 <= value <= 10.0, (name, value)
        assert 0.0 <= s.combined_score <= 10.0
        assert 0.0 <= s.creation_score <= 10.0
        assert 1.0 <= s.multiplier <= 2.0
        assert math.isclose(s.multiplier, 1 + s.combined_score / 10)


@SETTINGS
@given(histories)
def test_a_component_without_data_is_excluded_not_zero(history: list[ExecutionRecord]) -> None:
    cfg = ais.AISConfig()
    for agg in ais.aggregate(history).values():
        s = ais.score(agg, config=cfg)
        measured = {c: v for c, v in s.components().items() if v is not None}
        assert "execution" in measured  # duration and success are always measured
        total_w = sum(cfg.weights[c] for c in measured)
        expected = sum(cfg.weights[c] * v for c, v in measured.items()) / total_w
        assert s.execution_score is not None
        assert math.isclose(s.execution_score, expected, abs_tol=1e-12)


def test_combined_is_creation_until_min_executions() -> None:
    agg = ais.Aggregates(total_executions=4, successful_executions=4, total_duration_ms=4000.0,
                         peak_execution_duration_ms=1000.0)
    assert ais.score(agg, 7.0).combined_score == 7.0
    five = replace(agg, total_executions=5, successful_executions=5)
    s = ais.score(five, 7.0)
    assert s.execution_score is not None
    assert math.isclose(s.combined_score, 0.3 * 7.0 + 0.7 * s.execution_score)


def test_every_aggregate_field_has_a_merge_rule() -> None:
    a = ais.Aggregates()
    assert {f.name for f in fields(a)} == set(asdict(a.merge(a)))
