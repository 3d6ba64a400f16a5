"""The package's shape, pinned: no import cycles, imports only in the allowed direction, no
module over 500 lines, and no late import that only dodges a cycle.

The direction (docs/concepts.md, STYLE.md):

    cli, testing, demo, instrument/__init__  ->  decorator, call, plan  ->  runtime
    ->  tracing/, pipeline/, stores/  ->  config, guard, redact, ais/, adapters/  ->  leaves

A module may import a module of a lower layer, or one of its own subsystem (the same package,
or the same group on one layer). The one edge across a layer is pipeline -> stores: the worker
delivers to the Store protocol. Imports under ``if TYPE_CHECKING:`` are not edges.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "instrument"
MAX_LINES = 500

#: (layer, group): a module may import lower layers and its own group
LAYERS: dict[str, tuple[int, str]] = {
    # leaves: nothing from the package but other leaves
    "instrument.record": (0, "leaf"),
    "instrument.context": (0, "leaf"),
    "instrument.errors": (0, "leaf"),
    "instrument.binding": (0, "leaf"),
    "instrument.writers": (0, "leaf"),
    "instrument.urls": (0, "leaf"),
    "instrument.ratelimit": (0, "leaf"),
    "instrument.labels": (0, "leaf"),
    "instrument.budget": (0, "leaf"),
    # settings, the guard, redaction, pure scoring, the engine adapters
    "instrument.config": (1, "config"),
    "instrument.guard": (1, "config"),
    "instrument.redact": (1, "redact"),
    "instrument.ais": (1, "ais"),
    "instrument.pricing": (1, "pricing"),
    "instrument.adapters": (1, "adapters"),
    # the subsystems the composition root wires together
    "instrument.tracing": (2, "tracing"),
    "instrument.pipeline": (2, "pipeline"),
    "instrument.stores": (2, "stores"),
    # the composition root
    "instrument.runtime": (3, "runtime"),
    # the call path
    "instrument.plan": (4, "call path"),
    "instrument.call": (4, "call path"),
    "instrument.decorator": (4, "call path"),
    "instrument.budget_check": (4, "call path"),
    "instrument.budget_ledger": (4, "call path"),
    # the top: nothing below imports these
    "instrument": (5, "top"),
    "instrument.cli": (5, "top"),
    "instrument.testing": (5, "top"),
    "instrument.demo": (5, "top"),
}
#: edges across groups on one layer, or upward, that the design allows (with the reason)
ALLOWED_EDGES: dict[tuple[str, str], str] = {
    ("pipeline", "stores"): "the worker delivers batches to the Store protocol",
}
#: function-level imports of our own modules that stay, each with its reason (a late import
#: whose only purpose is dodging a cycle is not allowed); (source, target), each a module or
#: a package prefix
ALLOWED_LATE: dict[tuple[str, str], str] = {
    ("instrument.adapters", "instrument.adapters.conformance"):
        "conformance samples load the test kit only when a test asks for them",
    ("instrument.stores", "instrument.stores.sqlite"): "backends load on first use",
    ("instrument.stores", "instrument.stores.postgres"): "psycopg is optional",
    ("instrument.stores", "instrument.stores.supabase"): "supabase is optional",
    ("instrument.cli", "instrument.cli.app"): "click and rich are the optional `cli` extra",
}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    late: bool


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module) -> Iterable[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it is late (inside a function), skipping
    ``if TYPE_CHECKING:`` blocks."""

    def walk(nodes: list[ast.stmt], late: bool) -> Iterable[tuple[ast.Import | ast.ImportFrom,
                                                                  bool]]:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node, late
            elif isinstance(node, ast.If) and _is_type_checking(node):
                yield from walk(node.orelse, late)
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield from walk(node.body, True)
            else:
                for field in ("body", "orelse", "finalbody", "handlers"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        stmts = [c for c in children if isinstance(c, ast.stmt)]
                        for handler in children:
                            if isinstance(handler, ast.ExceptHandler):
                                stmts.extend(handler.body)
                        yield from walk(stmts, late)

    yield from walk(tree.body, False)


def collect(root: Path) -> tuple[dict[str, list[Edge]], dict[str, int]]:
    """Our modules' imports of our own modules, and each module's line count."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    edges: dict[str, list[Edge]] = {}
    lines: dict[str, int] = {}
    top = root.name
    for name, path in modules.items():
        text = path.read_text(encoding="utf-8")
        lines[name] = text.count("\n") + 1
        is_pkg = path.name == "__init__.py"
        out: list[Edge] = []
        for node, late in _imports(ast.parse(text)):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".")
                    anchor = anchor if is_pkg else anchor[:-1]
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:  # `from pkg import module` names a module
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for named in targets:
                if named == top or named.startswith(top + "."):
                    target = named
                    while target not in modules and "." in target:
                        target = target.rsplit(".", 1)[0]
                    if target != name:
                        out.append(Edge(name, target, node.lineno, late))
        edges[name] = out
    return edges, lines


def layer_of(module: str) -> tuple[int, str]:
    probe = module
    while True:
        if probe in LAYERS:
            return LAYERS[probe]
        if "." not in probe:
            raise KeyError(f"{module} has no layer in tests/test_layout.py's LAYERS table")
        probe = probe.rsplit(".", 1)[0]


def direction_violations(edges: Mapping[str, list[Edge]]) -> list[str]:
    bad = []
    for source, out in edges.items():
        src_layer, src_group = layer_of(source)
        for e in out:
            dst_layer, dst_group = layer_of(e.target)
            if (src_group == dst_group or dst_layer < src_layer
                    or (src_group, dst_group) in ALLOWED_EDGES):
                continue
            bad.append(f"{source}:{e.line} imports {e.target} "
                       f"({src_group}, layer {src_layer} -> {dst_group}, layer {dst_layer})")
    return bad


def cycles(edges: Mapping[str, list[Edge]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for e in edges.get(v, []):
            w = e.target
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def late_violations(edges: Mapping[str, list[Edge]]) -> list[str]:
    return [f"{e.source}:{e.line} imports {e.target} inside a function; import it at the top, "
            "or add it to ALLOWED_LATE with the reason (optional dependency, import time)"
            for out in edges.values() for e in out
            if e.late and not any(_within(e.source, src) and _within(e.target, dst)
                                  for src, dst in ALLOWED_LATE)]


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


EDGES, LINES = collect(PACKAGE)


def test_every_module_has_a_layer() -> None:
    for module in EDGES:
        layer_of(module)


def test_no_import_cycles() -> None:
    assert cycles(EDGES) == []


def test_imports_go_only_in_the_allowed_direction() -> None:
    assert direction_violations(EDGES) == []


def test_no_late_import_only_dodges_a_cycle() -> None:
    assert late_violations(EDGES) == []


def test_no_module_is_over_the_size_limit() -> None:
    big = {m: n for m, n in LINES.items() if n > MAX_LINES}
    assert big == {}, f"split these by concept (limit {MAX_LINES} lines): {big}"


def settings_users(root: Path) -> list[str]:
    """Modules below the composition root that name ``Settings`` in code (not in prose)."""
    found = []
    for path in root.rglob("*.py"):
        module = module_name(path, root)
        if layer_of(module)[0] >= LAYERS["instrument.runtime"][0] or \
                module == "instrument.config":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            named = (isinstance(node, ast.Name) and node.id == "Settings") or (
                isinstance(node, ast.alias) and node.name == "Settings") or (
                isinstance(node, ast.Attribute) and node.attr == "Settings")
            if named:
                found.append(module)
                break
    return sorted(found)


def test_nothing_below_the_root_takes_settings_whole() -> None:
    """Settings stop at the composition root: subsystems get plain values."""
    assert settings_users(PACKAGE) == []


# -- the checker itself can fail ---------------------------------------------------------------


def _fake_tree(tmp_path: Path, files: Mapping[str, str]) -> Path:
    root = tmp_path / "instrument"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_the_checker_sees_a_cycle_an_upward_import_and_a_late_import(tmp_path: Path) -> None:
    root = _fake_tree(tmp_path, {
        "__init__.py": "",
        "record.py": "",
        "config.py": "from instrument import runtime\n",             # upward
        "runtime.py": "from instrument.config import x\n",           # cycle with config
        "stores/__init__.py": "def f():\n    from instrument import runtime\n",  # late + up
        "tracing/__init__.py": "from typing import TYPE_CHECKING\n"
                               "if TYPE_CHECKING:\n    from instrument import runtime\n",
    })
    edges, _ = collect(root)
    assert cycles(edges) == [["instrument.config", "instrument.runtime"]]
    ups = direction_violations(edges)
    assert any(v.startswith("instrument.config:1 imports instrument.runtime") for v in ups)
    assert any(v.startswith("instrument.stores:2 imports instrument.runtime") for v in ups)
    assert not any(v.startswith("instrument.tracing") for v in ups)  # TYPE_CHECKING only
    assert [v.split(" ")[0] for v in late_violations(edges)] == ["instrument.stores:2"]
    root = _fake_tree(tmp_path / "b", {
        "__init__.py": "", "runtime.py": "", "config.py": "class Settings: ...\n",
        "stores/__init__.py": "from instrument.config import Settings\n",
        "tracing/__init__.py": '"""Settings in prose is fine."""\n'})
    assert settings_users(root) == ["instrument.stores"]


@pytest.mark.parametrize("text", ["x = 1\n" * (MAX_LINES + 1)])
def test_the_checker_counts_lines(tmp_path: Path, text: str) -> None:
    _, lines = collect(_fake_tree(tmp_path, {"__init__.py": "", "big.py": text}))
    assert lines["instrument.big"] > MAX_LINES
