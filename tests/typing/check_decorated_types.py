"""Static typing check, run by mypy (tests/typing is in [tool.mypy] files), never imported.

`assert_type` proves mypy sees the original signatures through both decorator forms, and each
`# type: ignore[...]` below must stay *used* (warn_unused_ignores is on): if the decorator ever
erased the signature to `Any`, the misuse would no longer be an error and mypy would fail.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import assert_type

from instrument import literal, logged_execution


@logged_execution
def bare(x: int, y: str = "a") -> float:
    return float(x)


@logged_execution(engine="agentkit", agent_id="agent_id", user_id=literal("u"))
async def called(agent_id: str, n: int) -> dict[str, int]:
    return {"n": n}


@logged_execution
def stream(n: int) -> Iterator[int]:
    yield n


@logged_execution(agent_id="agent_id")
async def astream(agent_id: str) -> AsyncIterator[str]:
    yield agent_id


class Executor:
    @logged_execution(agent_id="self.agent_id")
    def run(self, text: str) -> str:
        return text

    @classmethod
    @logged_execution
    def build(cls, n: int) -> int:
        return n

    @staticmethod
    @logged_execution
    def helper(flag: bool) -> bool:
        return flag


async def uses() -> None:
    assert_type(bare(1), float)
    assert_type(bare(1, "b"), float)
    assert_type(await called("a", 2), dict[str, int])
    assert_type(stream(3), Iterator[int])
    assert_type(astream("a"), AsyncIterator[str])
    assert_type(Executor().run("t"), str)
    assert_type(Executor.build(1), int)
    assert_type(Executor.helper(True), bool)
    bare("not an int")  # type: ignore[arg-type]
    await called("a", "b")  # type: ignore[arg-type]
    Executor().run(1)  # type: ignore[arg-type]
