"""The repository stands alone: its text cites only files inside it.

Every file tracked by git with a text extension below is scanned line by line:

* no mention of the team's notes directory outside the repository (``..`` + ``/shared``);
* every Markdown file name it mentions is a tracked file: a path with a directory is resolved
  against the citing file's directory, then against the repository root; a bare name matches any
  tracked file with that basename. Names of files that noisereg itself writes (``REPORT.md``)
  are output paths, not citations, and URLs are ignored;
* every ``docs/THEORY.md §N`` / ``§N.k`` citation names a section heading of docs/THEORY.md
  (``## N. Title`` or ``### N.k Title``).

Each test lists every offending ``file:line`` in its failure message.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTENSIONS = {".py", ".md", ".toml", ".sh", ".txt", ".cfg", ".yml", ".yaml"}
OUTSIDE = ".." + "/shared"                       # split so that this file does not match itself
MD_NAME = re.compile(r"\b[A-Za-z0-9_./-]+\.md\b")
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
GENERATED = {"REPORT.md", "cli.md"}   # written by `noisereg report` into --out; by the docs build into docs/_generated
THEORY = "docs/THEORY.md"
THEORY_CITE = re.compile(
    r"THEORY\.md,?\s*(§\s*\d+(?:\.\d+)?(?:\s*(?:,|and|or|–|-)\s*(?:§\s*)?\d+(?:\.\d+)?)*)")
HEADING = re.compile(r"^(?:##\s+(\d+)\.|###\s+(\d+\.\d+))\s")


@cache
def tracked() -> tuple[str, ...]:
    """Paths (POSIX, relative to the root) of the files git tracks; skip outside a git checkout."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed: cannot list the tracked files")
    top = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True)
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        pytest.skip(f"{ROOT} is not the root of a git checkout (e.g. an unpacked sdist)")
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"],
                         capture_output=True, text=True, check=True).stdout
    return tuple(p for p in out.split("\0") if p)


def text_lines():
    """Yield ``(path, line number, line)`` for every tracked text file that exists on disk."""
    for rel in tracked():
        path = ROOT / rel
        if path.suffix in EXTENSIONS and path.is_file():
            for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                yield rel, i, line


def _report(what: str, offenders: list[str]) -> str:
    return f"{len(offenders)} {what}:\n" + "\n".join(offenders)


def test_no_reference_to_notes_outside_the_repository():
    offenders = [f"{rel}:{i}: {line.strip()}" for rel, i, line in text_lines() if OUTSIDE in line]
    assert not offenders, _report(f"mention(s) of {OUTSIDE} (notes outside the repository)", offenders)


def _resolves(name: str, citing: str, files: set[str], basenames: set[str]) -> bool:
    if "/" not in name.strip("./"):
        return PurePosixPath(name).name in basenames
    for base in (PurePosixPath(citing).parent, PurePosixPath()):
        parts: list[str] = []
        for part in (base / name).parts:
            if part == "..":
                if not parts:
                    break
                parts.pop()
            elif part != ".":
                parts.append(part)
        else:
            if "/".join(parts) in files:
                return True
    return False


def test_markdown_files_mentioned_are_in_the_repository():
    files = set(tracked())
    basenames = {PurePosixPath(f).name for f in files}
    offenders = []
    for rel, i, line in text_lines():
        for name in MD_NAME.findall(URL.sub(" ", line)):
            if PurePosixPath(name).name in GENERATED or _resolves(name, rel, files, basenames):
                continue
            offenders.append(f"{rel}:{i}: {name}")
    assert not offenders, _report("mention(s) of Markdown files that are not tracked in the repository",
                                  offenders)


def theory_sections() -> set[str]:
    sections = set()
    for line in (ROOT / THEORY).read_text(encoding="utf-8").splitlines():
        m = HEADING.match(line)
        if m:
            sections.add(m.group(1) or m.group(2))
    return sections


def test_theory_section_citations_exist():
    if THEORY not in tracked():
        cites = [f"{rel}:{i}" for rel, i, line in text_lines() if THEORY_CITE.search(line)]
        assert not cites, _report(f"citation(s) of {THEORY}, which is not tracked", cites)
        return
    sections = theory_sections()
    assert {"1", "2", "3", "4", "5", "6", "7"} <= sections, f"{THEORY} lost a numbered section: {sorted(sections)}"
    offenders = []
    for rel, i, line in text_lines():
        for m in THEORY_CITE.finditer(line):
            for number in re.findall(r"\d+(?:\.\d+)?", m.group(1)):
                if number not in sections:
                    offenders.append(f"{rel}:{i}: §{number}")
    assert not offenders, _report(f"citation(s) of sections that {THEORY} does not have "
                                  f"(it has {', '.join(sorted(sections, key=_key))})", offenders)


def _key(section: str) -> tuple[int, ...]:
    return tuple(int(p) for p in section.split("."))


def test_theory_headings_are_parsed():
    if THEORY not in tracked():
        pytest.skip(f"{THEORY} is not tracked yet")
    assert {"5.1", "5.7", "7"} <= theory_sections()
