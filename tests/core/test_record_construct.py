"""`record.construct`: the hot path's unvalidated model builder behaves like a validated model."""

from __future__ import annotations

from instrument.record import ErrorInfo, ExecutionResult, construct, unmeasured_result


def test_constructed_models_share_a_fields_set_that_copies_never_change() -> None:
    a = construct(ErrorInfo, {"type": "ValueError", "message": "a"})
    b = construct(ErrorInfo, {"type": "KeyError", "message": "b"})
    assert a.model_fields_set == b.model_fields_set == set(ErrorInfo.model_fields)
    c = a.model_copy(update={"message": "c"})
    assert c.message == "c"
    assert a.message == "a"
    assert a.model_fields_set == b.model_fields_set == set(ErrorInfo.model_fields)
    assert a == ErrorInfo(type="ValueError", message="a")
    assert a.model_dump(exclude_unset=True) == {"type": "ValueError", "message": "a"}


def test_a_result_built_without_validation_equals_the_validated_one() -> None:
    fast = unmeasured_result(True, extras={"note": "x"})
    slow = ExecutionResult(success=True, extras={"note": "x"})
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json(exclude_unset=True) == fast.model_dump_json()
