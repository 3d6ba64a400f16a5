"""Every python block of docs/adapters.md runs, in order, in one namespace."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from instrument.adapters import registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.fixture
def clean_registry() -> Iterator[None]:
    before = set(registry._registered)
    yield
    for name in set(registry._registered) - before:
        registry.unregister_adapter(name)


def test_docs_python_blocks_run(clean_registry: None) -> None:
    blocks = BLOCK.findall(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 5
    namespace: dict[str, object] = {"__name__": "docs_adapters"}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{DOC.name}[python block {i}]", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"python block {i} of {DOC.name} failed: {exc!r}") from exc
