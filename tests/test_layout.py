"""The package's import graph, read from the code with ``ast``: no cycle, and the arrows point one way.

Every ``import`` counts, at module level or inside a function (a lazy import is still a
dependency). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else to
``pkg``. A package ``__init__`` importing its own children is not a cycle (Python runs the
parent first), so those edges are left out.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "noisereg"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module ``path`` imports (third-party ones by their top-level name)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in known else base)
    return out


def graph() -> dict[str, set[str]]:
    known = modules()
    edges = {}
    for name, path in known.items():
        targets = {t for t in imports(path, known) if t in known and t != name}
        if path.name == "__init__.py":   # a package importing its own children
            targets = {t for t in targets if not t.startswith(name + ".")}
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None; iterative DFS with colours."""
    colour = dict.fromkeys(edges, 0)   # 0 new, 1 on the stack, 2 done
    for root in sorted(edges):
        if colour[root]:
            continue
        stack, path = [(root, iter(sorted(edges[root])))], [root]
        colour[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour.get(nxt, 2) == 1:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt, 2) == 0:
                colour[nxt] = 1
                stack.append((nxt, iter(sorted(edges[nxt]))))
                path.append(nxt)
    return None


def test_the_cycle_finder_finds_a_cycle_and_names_it():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_in_the_package():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def offending(prefix: str, forbidden: tuple[str, ...], known=None) -> list[str]:
    """``module imports target`` lines for modules under ``prefix`` that import a forbidden module."""
    known = known or modules()
    bad = []
    for name, path in known.items():
        if name == prefix or name.startswith(prefix + "."):
            for target in sorted(imports(path, known)):
                if any(target == f or target.startswith(f + ".") for f in forbidden):
                    bad.append(f"{name} imports {target}")
    return bad


@pytest.mark.parametrize(("where", "forbidden"), [
    ("noisereg.verdicts", ("torch", "matplotlib")),
    ("noisereg.sweep", ("noisereg.experiments",)),
    ("noisereg.tracking", ("noisereg.experiments", "noisereg.report")),
    ("noisereg.report", ("noisereg.training",)),
    ("noisereg.plotting", ("noisereg.experiments", "noisereg.sweep", "noisereg.training", "torch")),
    # the core imports nothing from the rest of the package
    *[(f"noisereg.{core}", tuple(f"noisereg.{m}" for m in (
        "curvature", "smoothing", "closed_form", "training", "sweep", "experiments", "report", "tracking", "cli",
        "pac_bayes", "integrations", "plotting", "verdicts", "data", "models")))
      for core in ("noise", "injection", "layers", "losses", "optim")],
], ids=lambda v: v if isinstance(v, str) else "")
def test_the_arrows_point_one_way(where, forbidden):
    assert modules().keys() & {where} or any(m.startswith(where + ".") for m in modules()), f"{where} is gone"
    bad = offending(where, forbidden)
    assert not bad, "; ".join(bad)


def test_a_forbidden_import_is_caught(tmp_path):
    """The checks above read what they should: a planted lazy import is found."""
    known = {"noisereg.sweep.x": tmp_path / "noisereg" / "sweep" / "x.py"}
    known["noisereg.sweep.x"].parent.mkdir(parents=True)
    known["noisereg.sweep.x"].write_text("def f():\n    from noisereg.experiments import fig3\n")
    global SRC
    old, SRC = SRC, tmp_path
    try:
        assert offending("noisereg.sweep", ("noisereg.experiments",), known) == [
            "noisereg.sweep.x imports noisereg.experiments"]
    finally:
        SRC = old


def test_old_paths_still_work_with_a_deprecation_warning():
    import noisereg.sweep.run as run
    import noisereg.verdicts as verdicts

    with pytest.warns(DeprecationWarning, match=r"noisereg\.experiments\.stats\.paired has moved to noisereg\.verdicts"):
        from noisereg.experiments.stats import paired
    assert paired is verdicts.paired
    with pytest.warns(DeprecationWarning, match=r"moved to noisereg\.sweep\.run\.run_experiment"):
        from noisereg.experiments.base import run_experiment
    assert run_experiment is run.run_experiment
    with pytest.warns(DeprecationWarning, match="noisereg.sweep"):
        from noisereg.experiments import EXPERIMENTS
    with pytest.warns(DeprecationWarning, match="noisereg.report.upload"):
        from noisereg.tracking.upload import upload   # noqa: F401
    for old, name, new in [("plotting", "style", "plotting.style"), ("panels", "band", "plotting.panels"),
                           ("executors", "batches", "sweep.executors"), ("memory", "footprint", "sweep.memory"),
                           ("show", "show", "sweep.show")]:
        module = importlib.import_module(f"noisereg.experiments.{old}")
        with pytest.warns(DeprecationWarning, match=f"moved to noisereg.{new}.{name}"):
            assert getattr(module, name) is getattr(importlib.import_module(f"noisereg.{new}"), name)
    assert "fig3" in EXPERIMENTS
    with pytest.raises(ImportError, match="nope"):
        from noisereg.experiments.stats import nope   # noqa: F401
