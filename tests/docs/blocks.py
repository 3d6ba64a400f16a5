"""Fenced code blocks of the Markdown docs, and how each kind runs.

- ```python blocks run, in page order, in one namespace per page.
- ```python no-run blocks are skipped (only for code that needs an external service).
- ```output blocks follow a python block: every line of them (after stripping) must appear in
  what that block printed; a line that contains "..." is a wildcard and is skipped.
- ```bash / ```sh / ```shell / ```console lines that start with `instrument ` (or
  `.venv/bin/instrument `, optionally after a `$ ` prompt) are CLI calls. A trailing
  `# exits N` comment says which exit code the line is documented to return (default 0).
- A python block whose first line is `# <name>.py` is a file the reader saves; the fresh-venv
  walkthrough writes it to disk before the shell lines that use it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)\s*(.*)$")
_PROMPT = re.compile(r"^\s*\$\s+")
_EXITS = re.compile(r"\s+#\s*exits\s+(\d+)\s*$")
_FILE = re.compile(r"^#\s*([\w./-]+\.py)\s*$")


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    lang: str
    flags: tuple[str, ...]
    source: str

    @property
    def runs(self) -> bool:
        return self.lang == "python" and "no-run" not in self.flags

    @property
    def filename(self) -> str | None:
        first = self.source.lstrip("\n").split("\n", 1)[0]
        m = _FILE.match(first)
        return m.group(1) if m else None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class CliLine:
    block: Block
    text: str  # the command as written, prompt removed
    argv: tuple[str, ...]  # arguments after the program name
    expected_exit: int

    @property
    def feasible(self) -> bool:
        """Can the docs test run it here (no pipes, placeholders, services or endless follow)?"""
        t = self.text
        if any(ch in t for ch in "<>|&$`"):
            return False
        if ("--follow" in self.argv or "-f" in self.argv) and "--timeout" not in self.argv:
            return False
        return not any(a.startswith(("postgresql://", "postgres://")) or a == "supabase"
                       for a in self.argv)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(path: Path) -> list[Block]:
    rel = str(path.relative_to(ROOT))
    out: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, rest = m.group(1), m.group(2).lower(), m.group(3)
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        i += 1
        out.append(Block(rel, start + 1, lang, tuple(rest.split()), "\n".join(body) + "\n"))
    return out


def cli_lines(block: Block) -> list[CliLine]:
    if block.lang not in SHELL_LANGS:
        return []
    out = []
    for raw in block.source.splitlines():
        text = _PROMPT.sub("", raw).strip()
        for prefix in ("instrument ", ".venv/bin/instrument "):
            if text.startswith(prefix) or text == prefix.strip():
                m = _EXITS.search(text)
                code = int(m.group(1)) if m else 0
                text = _EXITS.sub("", text).strip()
                argv = tuple(shlex.split(text, comments=True))[1:]
                out.append(CliLine(block, text, argv, code))
                break
    return out
