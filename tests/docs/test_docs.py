"""Every code block in README.md and docs/*.md runs, and the reference pages match the code."""

from __future__ import annotations

import asyncio
import inspect
import re
import sys
import types
import warnings
from pathlib import Path

import click
import pytest

from instrument import config, runtime
from instrument.cli import main
from instrument.cli.app import cli
from tests.docs.blocks import ROOT, Block, CliLine, blocks, cli_lines, pages

PAGES = pages()


def _run_python(block: Block, namespace: dict[str, object]) -> None:
    import ast

    code = compile(block.source, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    if code.co_flags & inspect.CO_COROUTINE:
        asyncio.run(eval(code, namespace))
    else:
        exec(code, namespace)


def _parse_only(line: CliLine) -> None:
    """A line the test cannot run (service, placeholder, --follow) must still parse."""
    argv: list[str] = []
    for a in line.argv:
        if a in ("|", ">", ">>", "&&", ";", "||"):
            break
        argv.append(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = cli.make_context("instrument", argv)
        rest = [*ctx.protected_args, *ctx.args]
    if not rest:
        return
    name, cmd, args = cli.resolve_command(ctx, rest)
    assert cmd is not None, f"{line.block.where}: unknown command in `{line.text}`"
    cmd.make_context(name or "", args, parent=ctx)


def _check_output(block: Block, printed: str | None) -> None:
    assert printed is not None, f"{block.where}: an output block must follow code that prints"
    for expected in block.source.splitlines():
        want = expected.strip()
        if not want or "..." in want:
            continue
        squeezed = " ".join(printed.split())
        assert " ".join(want.split()) in squeezed, (
            f"{block.where}: documented output line {want!r} not printed; got:\n{printed}"
        )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSTRUMENT_DATABASE_URL", f"sqlite:///{tmp_path / 'docs.db'}")
    monkeypatch.setenv("COLUMNS", "200")
    module = types.ModuleType("docs_" + re.sub(r"\W", "_", page.stem))
    sys.modules[module.__name__] = module
    printed: str | None = None
    try:
        for block in blocks(page):
            if block.runs:
                capsys.readouterr()
                try:
                    _run_python(block, module.__dict__)
                finally:
                    runtime.flush(10.0)
                    printed = capsys.readouterr().out
            elif block.lang == "output":
                _check_output(block, printed)
            for line in cli_lines(block):
                if not line.feasible:
                    _parse_only(line)
                    continue
                runtime.flush(10.0)
                capsys.readouterr()
                code = main(list(line.argv))
                out = capsys.readouterr()
                printed = out.out
                assert code == line.expected_exit, (
                    f"{block.where}: `{line.text}` exited {code}, documented "
                    f"{line.expected_exit}\n{out.out}{out.err}"
                )
    finally:
        sys.modules.pop(module.__name__, None)
        runtime.shutdown(5.0)


def test_every_page_has_a_title_and_is_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert page.read_text().startswith("# "), f"{page.name} must start with a '# ' title"
        assert f"docs/{page.name}" in readme, f"README.md must link docs/{page.name}"


_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


def test_relative_links_resolve() -> None:
    for page in PAGES:
        for m in _LINK.finditer(page.read_text()):
            target = m.group(1)
            if "://" in target or target.startswith("mailto:"):
                continue
            assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


def test_configuration_page_matches_the_env_var_table() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    rows = re.findall(r"^\|\s*`([A-Z][A-Z0-9_]+)`\s*\|\s*(.*?)\s*\|", text, re.MULTILINE)
    documented = dict(rows)
    names = [v.name for v in config.ENV_VARS]
    missing = [n for n in names if n not in documented]
    extra = [n for n in documented if n not in names]
    assert not missing, f"docs/configuration.md lacks rows for {missing}"
    assert not extra, f"docs/configuration.md documents variables the code does not read: {extra}"
    for var in config.ENV_VARS:
        shown = documented[var.name].strip("` ")
        expected = "–" if var.default is None else var.default
        assert shown == expected, (
            f"docs/configuration.md: default of {var.name} is {shown!r}, code says {expected!r}"
        )


def _modules() -> set[str]:
    found = set()
    for p in (ROOT / "instrument").rglob("*.py"):
        if p.name == "__main__.py":
            continue
        found.add(str(p.relative_to(ROOT)))
    return found


def test_concepts_module_map_is_true() -> None:
    text = (ROOT / "docs" / "concepts.md").read_text()
    section = text.split("## Module map", 1)
    assert len(section) == 2, "docs/concepts.md needs a '## Module map' section"
    listed = set(re.findall(r"^\|\s*`((?:instrument|adapters)/[\w/]+\.py)`", section[1],
                            re.MULTILINE))
    actual = _modules()
    assert not listed - actual, f"the module map lists modules that do not exist: " \
                                f"{sorted(listed - actual)}"
    assert not actual - listed, f"docs/concepts.md's module map lacks: {sorted(actual - listed)}"


def test_cli_page_documents_every_command_and_option() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    assert isinstance(cli, click.Group)
    for name, cmd in cli.commands.items():
        assert f"## `instrument {name}`" in text, f"docs/cli.md lacks a section for {name}"
        for param in cmd.params:
            for opt in getattr(param, "opts", []):
                if opt.startswith("--") and opt != "--help":
                    section = text.split(f"## `instrument {name}`", 1)[1].split("\n## ", 1)[0]
                    assert opt in section, f"docs/cli.md: `instrument {name}` lacks {opt}"


CI_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]' && "
              ".venv/bin/python -m pytest -q")


def test_readme_test_command_is_the_one_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    assert CI_COMMAND in readme, "README.md must state the test command exactly as .ci/run runs it"
    ci = ROOT / ".ci" / "run"
    if ci.exists():
        assert CI_COMMAND in ci.read_text().splitlines()
