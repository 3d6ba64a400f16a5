"""The conformance check every adapter must pass, built-in or third-party.

Run it from your own test suite::

    from instrument.adapters.conformance import Sample, check_adapter

    def test_my_adapter_conforms():
        check_adapter(MY_ADAPTER, [my_result, Sample(failed_result, unmeasured={"iterations"})])

It raises :class:`AssertionError` whose message starts with the broken rule's name, e.g.
``[none-not-zero] adapter 'acme': tokens.input_tokens is 0 but the sample has no 0 anywhere``.
The rules (see :data:`RULES`):

``name``
    ``adapter.name`` is a non-empty ``str`` without whitespace.
``protocol``
    ``matches`` and ``normalize`` are callable (``watch`` too, when present).
``matches-never-raises``
    ``matches`` returns a ``bool`` and never raises, for the samples and for a corpus of junk
    (None, NaN, huge strings, cycles, objects whose attributes raise, ...).
``matches-own-samples``
    ``matches(sample)`` is true for every sample (unless ``Sample(..., matches=False)``).
``normalize-returns-result``
    ``normalize(sample)`` returns an :class:`ExecutionResult` without raising.
``valid-result``
    the result re-validates: ``ExecutionResult.model_validate(result.model_dump())`` (catches
    ``model_construct`` with wrong types).
``json-serializable``
    ``result.model_dump_json()`` works and yields a JSON object.
``none-not-zero``
    a numeric field is ``0`` only when the sample itself contains a ``0`` (or an empty
    collection) somewhere, and every field named in ``Sample.unmeasured`` is ``None``. Fields
    the engine did not report are "not measured", never a made-up zero.
``no-tool-payloads``
    tool calls carry metadata only: no extra attributes, and no string taken from a payload
    (``parameters``, ``arguments``, ``result``, ``output``, ``content`` in the sample) appears
    in a tool call or in ``extras``.
``deterministic``
    normalizing the same sample twice gives the same JSON.
``sample-untouched``
    ``normalize`` does not mutate the sample (checked when the sample can be deep-copied and
    compared).
``junk-normalize``
    for junk that ``matches`` accepts, ``normalize`` either raises an ``Exception`` (the
    decorator then records a ``normalization_error``) or returns a valid, JSON-serializable
    result.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from instrument.adapters.protocol import Adapter, StreamedItems
from instrument.record import ExecutionResult, ToolCall

__all__ = ["RULES", "Sample", "check_adapter", "junk_corpus"]

RULES: Final = (
    "name", "protocol", "matches-never-raises", "matches-own-samples",
    "normalize-returns-result", "valid-result", "json-serializable", "none-not-zero",
    "no-tool-payloads", "deterministic", "sample-untouched", "junk-normalize",
)

#: Numeric fields of ExecutionResult, as dotted paths (tool-call fields are per call).
NUMERIC_FIELDS: Final = (
    "tokens.input_tokens", "tokens.output_tokens", "tokens.total_tokens",
    "tokens.cached_input_tokens", "tokens.reasoning_tokens", "iterations", "retries",
    "memory.tokens", "memory.entry_count", "steps.completed", "steps.failed", "steps.skipped",
    "workflow.steps", "workflow.branches", "workflow.loops", "workflow.parallel",
    "orchestration_ms",
)
_TOOL_NUMERIC: Final = ("duration_ms", "items_returned")
_PAYLOAD_KEYS: Final = frozenset({
    "parameters", "arguments", "args", "input", "result", "results", "output", "content",
})
_MIN_PAYLOAD_LEN: Final = 8
_WALK_LIMIT: Final = 20_000


@dataclass(frozen=True)
class Sample:
    """One result to check, with what the checker should expect of it.

    `unmeasured`: dotted ExecutionResult paths the sample does not carry (``"iterations"``,
    ``"tokens.input_tokens"``), which must therefore normalize to ``None``.
    `matches`: whether auto-detection should pick this adapter for it (False for results the
    adapter only handles when chosen explicitly with ``engine=``).
    """

    result: object
    unmeasured: frozenset[str] | set[str] | tuple[str, ...] = field(default_factory=frozenset)
    matches: bool = True
    label: str | None = None


def check_adapter(
    adapter: object,
    samples: Iterable[object],
    *,
    junk: Iterable[object] = (),
) -> None:
    """Assert that `adapter` follows every rule in :data:`RULES` for `samples`.

    `samples` are results your engine really returns (or :class:`Sample` wrappers around
    them); pass at least one. `junk` adds your own hostile inputs to the built-in corpus.
    Raises AssertionError naming the first rule that broke.
    """
    name = getattr(adapter, "name", None)
    _expect(isinstance(name, str) and name.strip() == name and bool(name)
            and not any(c.isspace() for c in name),
            "name", name, f"`name` must be a non-empty str without whitespace, got {name!r}")
    for attr in ("matches", "normalize"):
        _expect(callable(getattr(adapter, attr, None)), "protocol", name,
                f"`{attr}` is missing or not callable")
    if hasattr(adapter, "watch"):
        _expect(callable(adapter.watch), "protocol", name, "`watch` is not callable")
    checked: Adapter = adapter  # type: ignore[assignment]

    wrapped = [s if isinstance(s, Sample) else Sample(s) for s in samples]
    _expect(bool(wrapped), "protocol", name, "check_adapter needs at least one sample")

    for item in (*junk_corpus(), *junk):
        _check_junk(checked, item)
    for i, sample in enumerate(wrapped):
        _check_sample(checked, sample, sample.label or f"sample[{i}]")


# --------------------------------------------------------------------------------------------


def _expect(ok: bool, rule: str, name: object, detail: str) -> None:
    if not ok:
        raise AssertionError(f"[{rule}] adapter {name!r}: {detail}")


def _describe(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # a hostile __repr__ in junk
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def _matches(adapter: Adapter, value: object, where: str) -> bool:
    try:
        got = adapter.matches(value)
    except Exception as exc:
        raise AssertionError(
            f"[matches-never-raises] adapter {adapter.name!r}: matches() raised "
            f"{type(exc).__name__}: {exc} for {where}"
        ) from exc
    _expect(isinstance(got, bool), "matches-never-raises", adapter.name,
            f"matches() returned {type(got).__name__}, not bool, for {where}")
    return got


def _check_result(adapter: Adapter, result: object, where: str, rule: str | None = None
                  ) -> ExecutionResult:
    """Type, JSON and re-validation checks; `rule` overrides the rule names (junk checks)."""
    _expect(isinstance(result, ExecutionResult), rule or "normalize-returns-result",
            adapter.name,
            f"normalize() returned {type(result).__name__}, not ExecutionResult, for {where}")
    assert isinstance(result, ExecutionResult)
    try:
        dumped = result.model_dump_json()
    except Exception as exc:
        raise AssertionError(
            f"[{rule or 'json-serializable'}] adapter {adapter.name!r}: model_dump_json() "
            "failed for "
            f"{where}: {type(exc).__name__}: {exc}"
        ) from exc
    _expect(isinstance(json.loads(dumped), dict), rule or "json-serializable", adapter.name,
            f"the JSON of the result for {where} is not an object")
    try:
        ExecutionResult.model_validate(result.model_dump())
    except Exception as exc:
        raise AssertionError(
            f"[{rule or 'valid-result'}] adapter {adapter.name!r}: the result for {where} does not "
            f"re-validate (built with model_construct and wrong types?): {exc}"
        ) from exc
    return result


def _check_junk(adapter: Adapter, item: object) -> None:
    where = f"junk {_describe(item)}"
    if not _matches(adapter, item, where):
        return
    try:
        result = adapter.normalize(item)
    except Exception:  # allowed: the decorator records a normalization_error
        return
    except BaseException as exc:
        raise AssertionError(
            f"[junk-normalize] adapter {adapter.name!r}: normalize() raised "
            f"{type(exc).__name__} (not an Exception) for {where}"
        ) from exc
    _check_result(adapter, result, where, rule="junk-normalize")


def _check_sample(adapter: Adapter, sample: Sample, where: str) -> None:
    name = adapter.name
    value = sample.result
    got = _matches(adapter, value, where)
    if sample.matches:
        _expect(got, "matches-own-samples", name, f"matches() is False for {where}")
    before = _snapshot(value)
    try:
        result = adapter.normalize(value)
    except Exception as exc:
        raise AssertionError(
            f"[normalize-returns-result] adapter {name!r}: normalize() raised "
            f"{type(exc).__name__}: {exc} for {where}"
        ) from exc
    result = _check_result(adapter, result, where)
    if before is not None:
        _expect(_same(before, value), "sample-untouched", name, f"normalize() mutated {where}")

    try:
        again = adapter.normalize(value)
    except Exception as exc:
        raise AssertionError(
            f"[deterministic] adapter {name!r}: the second normalize() of {where} raised "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    _expect(isinstance(again, ExecutionResult)
            and again.model_dump_json() == result.model_dump_json(),
            "deterministic", name, f"two normalize() calls on {where} differ")

    _check_none_not_zero(name, value, result, sample, where)
    _check_payloads(name, value, result, where)


def _snapshot(value: object) -> object | None:
    try:
        snap = copy.deepcopy(value)
        return snap if snap == value else None
    except Exception:  # not copyable or not comparable: the rule is skipped for this sample
        return None


def _same(before: object, after: object) -> bool:
    try:
        return bool(before == after)
    except Exception:  # comparison broke after normalize(); treat as unchanged
        return True


def _get(result: ExecutionResult, path: str) -> object:
    value: object = result
    for part in path.split("."):
        value = getattr(value, part, None)
        if value is None:
            return None
    return value


def _check_none_not_zero(name: str, value: object, result: ExecutionResult, sample: Sample,
                         where: str) -> None:
    for path in sorted(sample.unmeasured):
        got = _get(result, path)
        _expect(got is None, "none-not-zero", name,
                f"{path} is {got!r} for {where}, which does not report it; it must be None")
    has_zero = _has_zero(value)
    zeros = [p for p in NUMERIC_FIELDS if _is_zero(_get(result, p))]
    for i, call in enumerate(result.tool_calls or ()):
        zeros += [f"tool_calls[{i}].{f}" for f in _TOOL_NUMERIC if _is_zero(getattr(call, f))]
    _expect(not zeros or has_zero, "none-not-zero", name,
            f"{', '.join(zeros)} is 0 for {where}, but the sample has no 0 or empty collection "
            "anywhere: an unmeasured field must be None, not 0")


def _is_zero(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == 0


def _children(value: object) -> list[object]:
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, (list, tuple, set, frozenset, StreamedItems)):
        return list(value)
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return []
    out: list[object] = []
    dump = getattr(value, "model_dump", None)
    if callable(dump):  # pydantic models (openai types): their fields, including extras
        try:
            dumped = dump()
        except Exception:  # a model that cannot dump: fall back to __dict__
            dumped = None
        if isinstance(dumped, dict):
            return list(dumped.values())
    try:
        attrs = dict(vars(value))
    except TypeError:  # slotted objects
        attrs = {s: getattr(value, s, None) for s in getattr(type(value), "__slots__", ())}
    except Exception:  # a hostile object: nothing to walk
        attrs = {}
    out.extend(attrs.values())
    return out


def _walk(value: object) -> Iterable[tuple[object, object]]:
    """(key or None, value) for every node reachable from `value`, bounded and cycle-safe."""
    seen: set[int] = set()
    stack: list[tuple[object, object]] = [(None, value)]
    n = 0
    while stack and n < _WALK_LIMIT:
        key, node = stack.pop()
        n += 1
        yield key, node
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Mapping):
            stack.extend((k, v) for k, v in node.items())
        else:
            stack.extend((None, c) for c in _children(node))


def _has_zero(value: object) -> bool:
    """Whether the sample holds anything that may honestly normalize to 0."""
    for key, node in _walk(value):
        if isinstance(node, (int, float)) and not isinstance(node, bool):
            if float(node) == 0:
                return True
        elif isinstance(node, (list, tuple, set, frozenset, Mapping, str)) and len(node) == 0:
            return True  # an empty collection counts 0 items
        elif (node is None or node is False) and key in _PAYLOAD_KEYS:
            return True  # a null tool result returned 0 items
    return False


def _payload_strings(value: object) -> set[str]:
    out: set[str] = set()
    for key, node in _walk(value):
        if isinstance(key, str) and key in _PAYLOAD_KEYS:
            for _, leaf in _walk(node):
                if isinstance(leaf, str) and len(leaf) >= _MIN_PAYLOAD_LEN:
                    out.add(leaf)
    return out


def _check_payloads(name: str, value: object, result: ExecutionResult, where: str) -> None:
    allowed = set(ToolCall.model_fields)
    for i, call in enumerate(result.tool_calls or ()):
        extra = set(call.__dict__) - allowed
        _expect(not extra, "no-tool-payloads", name,
                f"tool_calls[{i}] carries extra attributes {sorted(extra)} for {where}")
    payloads = _payload_strings(value)
    if not payloads:
        return
    texts: list[tuple[str, str]] = []
    for i, call in enumerate(result.tool_calls or ()):
        for f in ("name", "plugin", "action", "call_id", "error"):
            v = getattr(call, f)
            if isinstance(v, str):
                texts.append((f"tool_calls[{i}].{f}", v))
    texts += [("extras", s) for _, s in _walk(result.extras) if isinstance(s, str)]
    for where_in, text in texts:
        leaked = next((p for p in payloads if p in text), None)
        _expect(leaked is None, "no-tool-payloads", name,
                f"{where_in} contains payload text {_describe(leaked)} from {where}")


# --------------------------------------------------------------------------------------------
# Junk
# --------------------------------------------------------------------------------------------


class _Hostile:
    """Every attribute access (but ``__class__``), comparison, conversion and iteration raises.

    ``__class__`` works so that a plain ``isinstance`` in ``matches`` is not penalized.
    """

    def __getattribute__(self, name: str) -> Any:
        if name == "__class__":
            return object.__getattribute__(self, name)
        raise RuntimeError(f"hostile attribute {name}")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("hostile __eq__")

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise RuntimeError("hostile __bool__")

    def __iter__(self) -> Any:
        raise RuntimeError("hostile __iter__")

    def __len__(self) -> int:
        raise RuntimeError("hostile __len__")

    def __str__(self) -> str:
        raise RuntimeError("hostile __str__")

    def __repr__(self) -> str:
        return "<hostile>"


class _Anything:
    """A catch-all proxy: every attribute exists (like a mock)."""

    def __getattr__(self, name: str) -> Any:
        return self

    def __repr__(self) -> str:
        return "<anything>"


class _RaisingProperty:
    @property
    def success(self) -> bool:
        raise RuntimeError("property raised")

    @property
    def error(self) -> str:
        raise RuntimeError("property raised")


class _HostileMapping(Mapping[str, object]):
    def __getitem__(self, key: str) -> object:
        raise RuntimeError("hostile __getitem__")

    def __iter__(self) -> Any:
        raise RuntimeError("hostile __iter__")

    def __len__(self) -> int:
        raise RuntimeError("hostile __len__")

    def __contains__(self, key: object) -> bool:
        raise RuntimeError("hostile __contains__")

    def __repr__(self) -> str:
        return "<hostile mapping>"


def junk_corpus() -> list[object]:
    """Hostile inputs every ``matches`` must survive (and every accepted one, ``normalize``)."""
    cyclic: dict[str, object] = {"success": True}
    cyclic["self"] = cyclic
    cyclic_list: list[object] = []
    cyclic_list.append(cyclic_list)
    huge = "x" * 1_000_000
    nan = float("nan")
    return [
        None, True, 0, -1, 2**200, nan, float("inf"), "", huge, b"\x00\xff", [], (), set(),
        {}, cyclic, cyclic_list, object(), _Hostile(), _Anything(), _RaisingProperty(),
        _HostileMapping(), StreamedItems(), StreamedItems([None, nan, cyclic]),
        {"success": nan, "error": {"message": cyclic}, "iterations": -3, "tokens": nan},
        {"success": "maybe", "toolCalls": "nope", "tokensUsed": [1, 2], "memoryData": 5},
        {"stepsCompleted": nan, "totalExecutionTime": huge, "output": cyclic},
        {"toolCalls": [None, 1, "x", {"plugin": nan, "result": cyclic_list}]},
        {"tool_calls": [{"name": None}], "tokens": {"input_tokens": "many"}},
        {1: 2, None: 3, (1, 2): "tuple key"},
        ValueError("an exception object"),
    ]
