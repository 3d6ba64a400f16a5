"""The conformance helper: every built-in passes; each deliberately broken adapter fails with
the rule it broke named in the message."""

from __future__ import annotations

import importlib
import importlib.util
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from instrument.adapters import get_adapter
from instrument.adapters.conformance import RULES, Sample, check_adapter, junk_corpus
from instrument.adapters.registry import BUILTIN_ORDER
from instrument.record import ExecutionResult, TokenUsage, ToolCall
from tests.adapters.samples import (
    BUILTIN_SAMPLES,
    ENGINE_SAMPLES,
    OPENAI_SAMPLES,
    agentkit_success,
)


#: Samples per built-in: ours, plus the ones the adapter's own module offers
#: (an optional module-level ``conformance_samples()``).
def _fixed(samples: list[object]) -> Callable[[], list[object]]:
    return lambda: list(samples)


SAMPLE_FACTORIES: dict[str, Callable[[], list[object]]] = {
    **{name: _fixed(samples) for name, samples in BUILTIN_SAMPLES.items()},
    **OPENAI_SAMPLES,
    **ENGINE_SAMPLES,
}


def _module_exists(name: str) -> bool:
    return importlib.util.find_spec(f"instrument.adapters.{name}") is not None


def _samples(name: str) -> list[object]:
    samples = SAMPLE_FACTORIES[name]()
    module = importlib.import_module(f"instrument.adapters.{name}")
    own = getattr(module, "conformance_samples", None)
    if callable(own):
        samples += list(own())
    return samples


def test_every_present_builtin_has_conformance_samples() -> None:
    missing = [n for n in BUILTIN_ORDER if _module_exists(n) and n not in SAMPLE_FACTORIES]
    assert not missing, f"add conformance samples for {missing} to tests/adapters/samples.py"


@pytest.mark.parametrize("name", sorted(SAMPLE_FACTORIES))
def test_builtin_adapter_conforms(name: str) -> None:
    check_adapter(get_adapter(name), _samples(name))


def test_junk_corpus_is_fresh_and_hostile() -> None:
    junk = junk_corpus()
    assert len(junk) > 20
    assert junk_corpus()[0] is None


# --------------------------------------------------------------------------------------------
# Deliberately broken adapters
# --------------------------------------------------------------------------------------------


class Good:
    """A small correct adapter the broken ones are derived from."""

    name = "good"

    def matches(self, result: object) -> bool:
        return isinstance(result, dict) and "answer" in result

    def normalize(self, result: object) -> ExecutionResult:
        assert isinstance(result, dict)
        return ExecutionResult(success=True, tokens=TokenUsage(total_tokens=result.get("tokens")))


SAMPLES: list[object] = [{"answer": "42", "tokens": 7}]


def test_the_good_adapter_passes() -> None:
    check_adapter(Good(), SAMPLES)


def _fails(adapter: object, rule: str, samples: list[object] | None = None) -> str:
    assert rule in RULES
    with pytest.raises(AssertionError) as info:
        check_adapter(adapter, SAMPLES if samples is None else samples)
    message = str(info.value)
    assert message.startswith(f"[{rule}] adapter "), message
    return message


@pytest.mark.parametrize("bad_name", ["", None, "two words", 3])
def test_name_rule(bad_name: object) -> None:
    bad = Good()
    bad.name = bad_name  # type: ignore[assignment]
    _fails(bad, "name")


def test_protocol_rule() -> None:
    class NoNormalize:
        name = "nn"

        def matches(self, result: object) -> bool:
            return False

    _fails(NoNormalize(), "protocol")
    _fails(Good(), "protocol", samples=[])


def test_matches_raising_on_junk() -> None:
    class Raises(Good):
        def matches(self, result: object) -> bool:
            return "answer" in result  # type: ignore[operator]

    assert "matches() raised TypeError" in _fails(Raises(), "matches-never-raises")


def test_matches_returning_non_bool() -> None:
    class Truthy(Good):
        def matches(self, result: object) -> bool:
            return isinstance(result, dict) and result.get("answer")  # type: ignore[return-value]

    _fails(Truthy(), "matches-never-raises")


def test_matches_own_samples_rule() -> None:
    class Never(Good):
        def matches(self, result: object) -> bool:
            return False

    _fails(Never(), "matches-own-samples")
    check_adapter(Never(), [Sample(SAMPLES[0], matches=False)])  # explicit engine= only


def test_normalize_must_return_a_result() -> None:
    class ReturnsDict(Good):
        def normalize(self, result: object) -> ExecutionResult:
            return {"success": True}  # type: ignore[return-value]

    class Raises(Good):
        def normalize(self, result: object) -> ExecutionResult:
            raise KeyError("tokens")

    assert "not ExecutionResult" in _fails(ReturnsDict(), "normalize-returns-result")
    assert "KeyError" in _fails(Raises(), "normalize-returns-result")


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_valid_result_rule() -> None:
    class Construct(Good):
        def normalize(self, result: object) -> ExecutionResult:
            return ExecutionResult.model_construct(
                success=True, iterations="three", extras={})  # type: ignore[arg-type]

    _fails(Construct(), "valid-result")


def test_json_serializable_rule() -> None:
    class NotJson(Good):
        def normalize(self, result: object) -> ExecutionResult:
            return ExecutionResult.model_construct(
                success=True, extras={"obj": object()})  # type: ignore[dict-item]

    _fails(NotJson(), "json-serializable")


class OriginNormalizer:
    """The origin application's orchestrator normalization (reference §1.2), as an adapter."""

    name = "origin_orchestrator"

    def matches(self, result: object) -> bool:
        return isinstance(result, dict) and "totalExecutionTime" in result

    def normalize(self, result: object) -> ExecutionResult:
        assert isinstance(result, dict)
        total = result.get("totalTokensUsed")
        return ExecutionResult(
            success=bool(result.get("success")),
            tokens=TokenUsage(input_tokens=0, output_tokens=total, total_tokens=total),
            iterations=1, tool_calls=[], model="workflow_pilot", provider="neuronforge",
            response=(result.get("output") or {}).get("message") or "Workflow completed",
        )


def test_none_not_zero_catches_the_origins_invented_values() -> None:
    sample = {"success": True, "stepsCompleted": 3, "totalExecutionTime": 10,
              "totalTokensUsed": 40, "output": {"message": "ok"}}
    message = _fails(OriginNormalizer(), "none-not-zero", [sample])
    assert "tokens.input_tokens is 0" in message
    # With the fields the sample lacks named, the invented iterations=1 is caught too.
    message = _fails(OriginNormalizer(), "none-not-zero",
                     [Sample({**sample, "stepsFailed": 0}, unmeasured={"iterations"})])
    assert "iterations is 1" in message
    # ...and the built-in orchestrator adapter passes the same samples.
    check_adapter(get_adapter("orchestrator"),
                  [sample, Sample({**sample, "stepsFailed": 0}, unmeasured={"iterations"})])


def test_no_tool_payloads_rule() -> None:
    class LeaksArguments(Good):
        def normalize(self, result: object) -> ExecutionResult:
            assert isinstance(result, dict)
            calls = [ToolCall(name=f"{c['action']}({c['parameters']})")
                     for c in result["toolCalls"]]
            return ExecutionResult(success=True, tool_calls=calls)

        def matches(self, result: object) -> bool:
            return isinstance(result, dict) and "toolCalls" in result

    class LeaksResultIntoExtras(LeaksArguments):
        def normalize(self, result: object) -> ExecutionResult:
            assert isinstance(result, dict)
            first = result["toolCalls"][0]["result"]["emails"][0]["subject"]
            return ExecutionResult(success=True, extras={"first_subject": first})

    samples: list[object] = [agentkit_success()]
    _fails(LeaksArguments(), "no-tool-payloads", samples)
    _fails(LeaksResultIntoExtras(), "no-tool-payloads", samples)


def test_no_tool_payloads_rule_catches_smuggled_attributes() -> None:
    class Smuggles(Good):
        def normalize(self, result: object) -> ExecutionResult:
            call = ToolCall(name="t")
            object.__setattr__(call, "arguments", {"q": "x"})
            return ExecutionResult(success=True, tool_calls=[call])

    assert "extra attributes ['arguments']" in _fails(Smuggles(), "no-tool-payloads")


def test_deterministic_rule() -> None:
    counter = itertools.count()

    class Counts(Good):
        def normalize(self, result: object) -> ExecutionResult:
            return ExecutionResult(success=True, extras={"n": next(counter)})

    _fails(Counts(), "deterministic")


def test_sample_untouched_rule() -> None:
    class Pops(Good):
        def normalize(self, result: object) -> ExecutionResult:
            assert isinstance(result, dict)
            result.pop("tokens", None)
            return ExecutionResult(success=True)

    _fails(Pops(), "sample-untouched", [{"answer": "a", "tokens": 1}])


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")
def test_junk_normalize_rule() -> None:
    class Bail(BaseException):
        pass

    class Greedy(Good):
        def matches(self, result: object) -> bool:
            return True

        def normalize(self, result: object) -> ExecutionResult:
            if isinstance(result, dict) and "answer" in result:
                return super().normalize(result)
            raise Bail

    class GreedyInvalid(Greedy):
        def normalize(self, result: object) -> ExecutionResult:
            if isinstance(result, dict) and "answer" in result:
                return super().normalize(result)
            return ExecutionResult.model_construct(
                success="perhaps", extras={})  # type: ignore[arg-type]

    assert "not an Exception" in _fails(Greedy(), "junk-normalize")
    _fails(GreedyInvalid(), "junk-normalize")


def test_normalize_may_raise_an_exception_on_junk() -> None:
    class Greedy(Good):
        def matches(self, result: object) -> bool:
            return True

        def normalize(self, result: object) -> ExecutionResult:
            if isinstance(result, dict) and "answer" in result:
                return super().normalize(result)
            raise TypeError("not mine")

    check_adapter(Greedy(), SAMPLES)


def test_extra_junk_is_checked() -> None:
    class Picky(Good):
        def matches(self, result: object) -> bool:
            if isinstance(result, str) and result == "poison":
                raise ValueError("poison")
            return super().matches(result)

    check_adapter(Picky(), SAMPLES)
    with pytest.raises(AssertionError, match=r"^\[matches-never-raises\]"):
        check_adapter(Picky(), SAMPLES, junk=["poison"])


def test_rules_listed_in_the_module_docstring() -> None:
    import instrument.adapters.conformance as mod

    doc: Any = mod.__doc__
    for rule in RULES:
        assert f"``{rule}``" in doc
