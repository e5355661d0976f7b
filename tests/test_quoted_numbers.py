"""Every number a run produced that README.md or docs/results/README.md quotes is traceable to the results.json it
cites (issue 32, point 4): a number that moved fails the suite until the text follows it.

How: the pages are read paragraph by paragraph. A paragraph names the result directories it speaks of
(``fig6``, ``certify-full``, ... as words); every number in it must appear, as written (sign and thousands
separators aside), in what those directories' results.json produce *now*: the report section
:func:`noisereg.report.section` rebuilds from them (claims, selection and confirmation tables, final metrics),
their config, their choice (``selected``) and their run counts (all, selection, confirmation). Times (``391 s``, ``3.5 min``), dates, commits and the paper's
own references (``Fig. 3``, ``Sec. 5``, ``App. E``, equations) are not run outputs and are skipped. A
paragraph with numbers that names no directory fails, so a number cannot hide from the check.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"

NUMBER = re.compile(r"(?<![\w.·^/\-])[+\-−]?\d+(?:,\d{3})*(?:\.\d+)?(?![\w.]?\d)")
SKIP = [  # spans that are not run outputs: removed before numbers are read
    r"\d+(?:\.\d+)?\s?(?:s|min|minutes|seconds|h|hours?|ms)\b",        # times
    r"\d{4}-\d{2}-\d{2}",                                                # dates
    r"\b(?:Figs?|Sec|Secs|App|Eq|Eqs|Theorem|Thm|Table|Prop|Lemma|Section|Figure|§)\.?\s?[\dA-Z][\d\-–,. ]*",  # the paper
    r"`[^`]*`",                                                           # code: commands, paths, options
    r"\[[^\]]*\]\([^)]*\)",                                               # links
    r"\b[0-9a-f]{7}\b",                                                   # commits
    r"\bissue \d+",
]


def directories() -> list[str]:
    return sorted(p.parent.name for p in RESULTS.glob("*/results.json"))


@cache
def source_numbers(name: str) -> frozenset[str]:
    """The numbers ``docs/results/NAME/results.json`` produces now, normalised (:func:`norm`)."""
    from noisereg.report import section
    from noisereg.sweep.stages import CONFIRMATION, SELECTION, view

    res = json.loads((RESULTS / name / "results.json").read_text())
    text = section(res) + json.dumps(res.get("config", {}), ensure_ascii=False) + \
        json.dumps(res.get("selected", {})) + json.dumps(res.get("sizes", {})) + f" {len(res['runs'])} " + \
        " ".join(str(len(view(res, stage)["runs"])) for stage in (SELECTION, CONFIRMATION))
    return frozenset(norm(m) for m in NUMBER.findall(text))


def norm(token: str) -> str:
    return token.lstrip("+-−").replace(",", "")


PAGES = {"README.md": "## Headline results", "docs/results/README.md": None}
"""The pages checked, each from the heading given to the next heading of its level (None: the whole page); the
README's other sections quote no run."""


def paragraphs(page: Path, heading: str | None = None) -> list[str]:
    text = page.read_text()
    if heading is not None:
        level = heading.split()[0]
        text = text.split(heading + "\n", 1)[1].split(f"\n{level} ", 1)[0]
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return [p for p in re.split(r"\n\s*\n", text) if p.strip() and not p.lstrip().startswith("|")]


def quoted(paragraph: str) -> list[str]:
    text = paragraph
    for pattern in SKIP:
        text = re.sub(pattern, " ", text)
    return NUMBER.findall(text)


def named(paragraph: str) -> list[str]:
    return [d for d in directories() if re.search(rf"(?<![\w-]){re.escape(d)}(?![\w-])", paragraph)]


def untraced(page: Path, heading: str | None = None) -> list[str]:
    """``"number (in: paragraph start)"`` for each quoted number no named directory produces."""
    bad = []
    for p in paragraphs(page, heading):
        numbers = quoted(p)
        if not numbers:
            continue
        names = named(p)
        known = frozenset().union(*(source_numbers(n) for n in names)) if names else frozenset()
        head = " ".join(p.split())[:70]
        bad += [f"{n} (names {names or 'no results directory'}: {head!r})" for n in numbers if norm(n) not in known]
    return bad


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_quoted_number_is_produced_by_the_results_it_names(page):
    bad = untraced(ROOT / page, PAGES[page])
    assert not bad, f"{page}: numbers no named results.json produces now:\n" + "\n".join(bad)


def test_the_check_catches_a_number_that_moved(tmp_path):
    """A quoted accuracy off by one hundredth, or quoted under no directory's name, fails."""
    res = json.loads((RESULTS / "fig5" / "results.json").read_text())
    from noisereg.report import section

    line = next(ln for ln in section(res).splitlines() if "paired d̄ = " in ln)
    d = re.search(r"paired d̄ = ([+\-]\d+\.\d\d)", line).group(1)
    moved = next(m for k in range(1, 100) if norm(m := f"{float(d) + k / 100:+.2f}") not in source_numbers("fig5"))
    page = tmp_path / "quoted_page.txt"
    page.write_text(f"**fig5**: the difference is {d} points.\n\nIn fig5 it is {moved} points.\n\n"
                    f"Elsewhere it is {d} points.\n\nfig5 ran in 391 s on 2026-12-07 at commit eecdebf (Fig. 5).\n")
    assert untraced(page) == [f"{moved} (names ['fig5']: 'In fig5 it is {moved} points.')",
                              f"{d} (names no results directory: 'Elsewhere it is {d} points.')"]
