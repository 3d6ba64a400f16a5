"""AISConfig: validation names the bad value; loading from code, mapping, table rows, the
INSTRUMENT_AIS_CONFIG value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from instrument import ais
from instrument.errors import ConfigurationError

RANGE_KEYS = sorted(k[6:] for k in ais.AISConfig().to_mapping() if k.startswith("range."))
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(RANGE_KEYS), finite, st.floats(min_value=0, max_value=1e6))
def test_range_with_lo_not_below_hi_is_rejected_naming_it(key: str, hi: float,
                                                          gap: float) -> None:
    lo = hi + gap
    with pytest.raises(ConfigurationError) as err:
        ais.AISConfig.from_mapping({f"range.{key}": [lo, hi]})
    assert key in str(err.value)
    assert repr(float(lo)) in str(err.value)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["token", "execution", "plugin", "workflow", "memory"]),
       st.floats(min_value=0, max_value=1).filter(lambda w: w not in (0.3, 0.25, 0.2, 0.15, 0.1)))
def test_weights_not_summing_to_one_are_rejected_naming_them(component: str, w: float) -> None:
    defaults = ais.AISConfig().weights
    if abs(w - defaults[component]) <= 1e-9:
        return
    with pytest.raises(ConfigurationError) as err:
        ais.AISConfig.from_mapping({f"weight.{component}": w})
    assert f"{component}={w!r}" in str(err.value)
    assert "sum to" in str(err.value)


@pytest.mark.parametrize(("values", "named"), [
    ({"weight.execution.iterations": 0.5}, "iterations=0.5"),
    ({"blend.creation": 0.4}, "creation=0.4"),
    ({"weight.memory": -0.1, "weight.token": 0.5}, "memory=-0.1"),
    ({"range.io_ratio": [1, float("nan")]}, "nan"),
    ({"range.io_ratio": [1]}, "range.io_ratio"),
    ({"growth.tiers": [{"name": "a", "threshold": 50, "adjustment": 1},
                       {"name": "b", "threshold": 40, "adjustment": 1}]}, "threshold=40"),
    ({"growth.tiers": [{"name": "none", "threshold": 5, "adjustment": 1}]}, "'none'"),
    ({"min_executions_for_score": 2.5}, "2.5"),
    ({"min_executions_for_score": -1}, "-1"),
    ({"quality.success_rate_below": 120}, "120"),
    ({"dynamic.percentile": 0}, "percentile=0"),
    ({"creation.default_score": 11}, "11"),
    ({"no.such.key": 1}, "no.such.key"),
])
def test_invalid_values_are_rejected_naming_them(values: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        ais.AISConfig.from_mapping(values)
    assert named in str(err.value)


def test_valid_weight_group_replacement_is_accepted() -> None:
    cfg = ais.AISConfig.from_mapping({"weight.token": 0.2, "weight.execution": 0.35})
    assert cfg.weights["token"] == 0.2
    assert cfg.weights["execution"] == 0.35


def test_mapping_rows_and_setting_round_trip(tmp_path: Path) -> None:
    cfg = ais.AISConfig.from_mapping({"range.duration_ms": [0, 60000],
                                      "min_executions_for_score": 3})
    flat = cfg.to_mapping()
    assert ais.AISConfig.from_mapping(flat) == cfg
    assert ais.AISConfig.from_rows((k, json.dumps(v)) for k, v in flat.items()) == cfg
    assert ais.AISConfig.from_setting(None) == ais.AISConfig()
    raw = json.dumps({"range.duration_ms": [0, 60000], "min_executions_for_score": 3})
    assert ais.AISConfig.from_setting(raw) == cfg
    path = tmp_path / "ais.json"
    path.write_text(raw)
    assert ais.AISConfig.from_setting(str(path)) == cfg
    with pytest.raises(ConfigurationError, match="INSTRUMENT_AIS_CONFIG"):
        ais.AISConfig.from_setting("{not json")
    with pytest.raises(ConfigurationError, match="INSTRUMENT_AIS_CONFIG"):
        ais.AISConfig.from_setting(str(tmp_path / "missing.json"))
    with pytest.raises(ConfigurationError, match="INSTRUMENT_AIS_CONFIG must be a JSON object"):
        ais.AISConfig.from_setting(str(_write(tmp_path / "list.json", "[1, 2]")))


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_constructor_validates_too() -> None:
    with pytest.raises(ConfigurationError, match=r"weight\.plugin"):
        ais.AISConfig(sub_weights={**ais.AISConfig().sub_weights,
                                   "plugin": {"unique_plugins": 1.0, "tool_calls_per_run": 0.5,
                                              "orchestration_ms": 0.0}})


def test_creation_score_and_multiplier() -> None:
    assert ais.creation_score(workflow_steps=0, connected_plugins=0, io_fields=0) == 0.0
    assert ais.creation_score(workflow_steps=99, connected_plugins=99, io_fields=99,
                              trigger="event") == 10.0
    with pytest.raises(ConfigurationError, match="webhook"):
        ais.creation_score(workflow_steps=1, connected_plugins=1, io_fields=1,
                           trigger="webhook")  # type: ignore[arg-type]
    assert ais.multiplier(-3) == 1.0
    assert ais.multiplier(42) == 2.0
    assert ais.multiplier(5) == 1.5


def test_dynamic_ranges_need_a_fleet_and_use_the_percentile() -> None:
    def agent(runs: int, iterations: int) -> ais.Aggregates:
        return ais.Aggregates(total_executions=runs, successful_executions=runs,
                              total_duration_ms=1000.0 * runs, n_iteration_runs=runs,
                              total_iterations=iterations * runs)

    assert ais.dynamic_ranges([agent(3, 4), agent(3, 8)]) == {}  # 6 < 10 executions
    fleet = [agent(5, i) for i in (2, 4, 6, 8, 30)]
    ranges = ais.dynamic_ranges(fleet)
    # percentile_cont(0.95) of [2, 4, 6, 8, 30] = 8 + 0.8 * 22
    assert ranges["iterations"] == pytest.approx((1.0, 8 + 0.8 * 22))
    assert "memory_ratio" not in ranges  # no data: keep the best-practice range
    assert "failure_rate" not in ranges  # p95 of 0 is not above lo: keep best practice
    cfg = ais.AISConfig().with_ranges(ranges)
    assert cfg.ranges["iterations"] == ranges["iterations"]
