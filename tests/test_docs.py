"""The documentation site's generated pages and its links (docs/; built by `bash scripts/docs.sh`).

* the API page (docs/_ext/noisereg_docs.py, written at build time) documents every name of
  ``noisereg.__all__``, each under its own anchor ``noisereg.<name>``, also a name added later;
* the command-line page renders every subcommand and option of ``noisereg.cli.build_parser()``;
* every relative Markdown link of the repository's Markdown files resolves: to a file inside the
  repository (or a page the build generates), and a ``#anchor`` to a heading of the target page.

The strict build (``sphinx-build -W``, run in CI by .ci/run) checks the site's own cross-references.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

import noisereg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docs" / "_ext"))
import noisereg_docs  # noqa: E402

LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)|!\[[^\]\n]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.S | re.M)


def test_api_page_documents_every_public_name():
    page = noisereg_docs.api_page()
    for name, kind in noisereg_docs.api_entries():
        assert f".. {kind}:: noisereg.{name}\n" in page, name
        if kind == "automodule":   # a module's own target is module-noisereg.NAME: the page adds noisereg.NAME
            assert f'<span id="noisereg.{name}"></span>' in page, name
        assert (getattr(noisereg, name).__doc__ or "").strip(), f"noisereg.{name} has no docstring to document"
    assert [n for n, _ in noisereg_docs.api_entries()] == list(noisereg.__all__)


def test_api_page_follows_all(monkeypatch):
    """A name added to ``noisereg.__all__`` by someone else appears without touching the docs."""
    monkeypatch.setattr(noisereg, "__all__", [*noisereg.__all__, "noise"])   # noisereg.noise, a module
    monkeypatch.setattr(noisereg, "noise", __import__("noisereg.noise").noise, raising=False)
    page = noisereg_docs.api_page()
    assert ".. automodule:: noisereg.noise\n" in page and '<span id="noisereg.noise"></span>' in page


def test_cli_page_renders_every_subcommand_and_option():
    from noisereg.cli import build_parser

    page = noisereg_docs.cli_page()
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert sub.choices, "no subcommands"
    for name, parser in sub.choices.items():
        section = page.split(f"## `noisereg {name}`\n")[1].split("\n## ")[0]
        assert parser.format_usage().strip() in section
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            label = action.option_strings[0] if action.option_strings else action.dest
            assert f"| `{label}" in section, (name, label)
            if action.help:
                assert noisereg_docs._escape(action.help) in section, (name, label)
    assert "## The experiments (`noisereg list`)" in page and "fig3" in page


def test_the_built_page_check_names_a_missing_anchor(tmp_path):
    """scripts/docs.sh runs this check on the built site: every public name has its anchor in the HTML."""
    (tmp_path / "_generated").mkdir()
    ids = "".join(f'<dt id="noisereg.{n}">' for n in noisereg.__all__)
    (tmp_path / "_generated" / "api.html").write_text(ids)
    assert noisereg_docs.missing_anchors(tmp_path) == []
    (tmp_path / "_generated" / "api.html").write_text(ids.replace('id="noisereg.SAM"', ""))
    assert noisereg_docs.missing_anchors(tmp_path) == ["SAM"]


def test_written_pages_are_the_generated_ones(tmp_path):
    paths = noisereg_docs.write_pages(tmp_path)
    assert [p.name for p in paths] == ["api.rst", "cli.md"]
    assert paths[1].read_text() == noisereg_docs.cli_page()


# ---- links

def markdown_files() -> list[Path]:
    """The Markdown files git tracks, plus the docs pages not yet committed (skipped outside a checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard",
                              "*.md"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.splitlines() if (ROOT / p).is_file()]


def generated_targets() -> set[Path]:
    """Pages that exist only in a build: docs/_generated/* and the gallery's docs/auto_examples/*."""
    gallery = ROOT / "docs" / "auto_examples"
    return ({ROOT / "docs" / "_generated" / n for n in ("api.rst", "cli.md")} | {gallery / "index.rst"}
            | {gallery / (p.stem + ".rst") for p in (ROOT / "examples").glob("*.py")})


def slug(heading: str) -> str:
    """GitHub's (and myst-parser's) anchor of a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {slug(m) for m in re.findall(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M)}


def broken_links(path: Path) -> list[str]:
    bad, generated = [], generated_targets()
    text = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), path.read_text())   # code is not a link
    for lineno, line in enumerate(text.splitlines(), 1):
        for m in LINK.finditer(line):
            target = m.group(1) or m.group(2)
            if re.match(r"[a-z][a-z0-9+.-]*:", target):   # https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            where = f"{path.relative_to(ROOT)}:{lineno}: {target}"
            if ROOT not in dest.parents and dest != ROOT:
                bad.append(f"{where} (outside the repository)")
            elif not dest.exists() and dest not in generated:
                bad.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and dest.exists() and anchor not in anchors(dest):
                bad.append(f"{where} (no heading with this anchor)")
    return bad


def test_every_markdown_link_resolves():
    files = markdown_files()
    assert ROOT / "README.md" in files and ROOT / "docs" / "index.md" in files
    bad = [b for f in files for b in broken_links(f)]
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_link_check_catches_a_broken_link_and_anchor():
    md = ".md"   # the probe's names are built so that test_standalone does not read them as citations
    page = ROOT / "docs" / f"_link_check_probe{md}"   # inside the repository, removed at the end
    page.write_text(f"[a](getting_started{md}#no-such-heading) [b](missing{md}) [c](../../outside{md}) "
                    f"[d](getting_started{md}#install) ![e](results/fig2/fig2.png) [f](https://example.org/x{md})\n"
                    f"```\n[g](in-code{md})\n```\n")
    try:
        bad = broken_links(page)
    finally:
        page.unlink()
    assert [b.split(": ", 1)[1] for b in bad] == [f"getting_started{md}#no-such-heading (no heading with this anchor)",
                                                  f"missing{md} (no such file)",
                                                  f"../../outside{md} (outside the repository)"]


def test_docs_pages_name_no_absolute_paths():
    """No page names a file outside the repository by an absolute path (a home or work directory)."""
    bad = [f"{f.relative_to(ROOT)}:{i}" for f in markdown_files() if "docs" in f.relative_to(ROOT).parts
           or f.name == "README.md"
           for i, line in enumerate(f.read_text().splitlines(), 1) if re.search(r"(?<![\w.~])/(home|work|tmp|Users)/", line)]
    assert not bad, bad


def test_every_committed_report_is_in_the_sites_table_of_contents():
    """A results directory added to docs/results (with its REPORT.md) joins a toctree of docs/reports.md, or the
    strict build fails on an orphan page; this names the missing entry before a build does."""
    text = (ROOT / "docs" / "reports.md").read_text()
    listed = set(re.findall(r"<(results/[\w\-/]+)>", text)) | set(re.findall(r"^(results/[\w\-/]+)$", text, re.M))
    reports = {p.relative_to(ROOT / "docs").with_suffix("").as_posix()
               for p in (ROOT / "docs" / "results").glob("*/REPORT.md")}
    assert reports - listed == set(), f"add to a toctree of docs/reports.md: {sorted(reports - listed)}"
