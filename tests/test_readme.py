"""The README's and the documentation pages' Python blocks run as written, and the facts they state hold.

Each page's blocks run in order in one namespace (a page reads as one session: the weight-perturbation
family continues the closure example), once per test session; the tests below check what each block
promises. Every page of docs/ with a ``python`` block is run, so a block added to a page is tested.
The README's headline results table is recomputed from the committed docs/results/*/results.json.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import re
from functools import cache
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP_DIRS = {"_build", "_generated", "auto_examples", "results"}   # built pages and `noisereg report`'s output
# pages whose python block is a file to save, not a session: run as written by their own test
RUN_ELSEWHERE = {"docs/custom_experiment.md": "tests/test_custom_experiment.py"}


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def pages_with_python() -> list[str]:
    docs = [p for p in sorted((ROOT / "docs").rglob("*.md")) if not SKIP_DIRS & set(p.relative_to(ROOT).parts)]
    rels = [p.relative_to(ROOT).as_posix() for p in [README, *docs] if python_blocks(p)]
    return [r for r in rels if r not in RUN_ELSEWHERE]


def test_pages_run_elsewhere_are_run_there():
    for page, test in RUN_ELSEWHERE.items():
        assert python_blocks(ROOT / page) and page in (ROOT / test).read_text(), (page, test)


@cache
def _session(rel: str, workdir: str) -> list[dict]:
    """Run the page's blocks in order in one namespace, from ``workdir``; after each block a snapshot:
    the namespace (shallow copy), what the block printed, and a copy of ``model``'s weights if any."""
    scope, snaps = {"__name__": "__main__"}, []
    old = os.getcwd()
    os.chdir(workdir)
    try:
        for i, block in enumerate(python_blocks(ROOT / rel)):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block, f"{rel} (python block {i})", "exec"), scope)
            model = scope.get("model")
            weights = [p.detach().clone() for p in model.parameters()] if isinstance(model, torch.nn.Module) else None
            snaps.append({"scope": dict(scope), "out": out.getvalue(), "weights": weights})
    finally:
        os.chdir(old)
    return snaps


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """``session(page)``: the page's snapshots, one per python block (run once per test session)."""
    workdir = str(tmp_path_factory.mktemp("pages"))   # the Trainer's output_dir and the like land here

    def get(rel: str) -> list[dict]:
        text = (ROOT / rel).read_text()
        for module in ("lightning", "transformers"):
            if re.search(rf"^(import|from) {module}\b", text, flags=re.M):
                pytest.importorskip(module)
        return _session(rel, workdir)

    return get


@pytest.mark.parametrize("page", pages_with_python())
def test_every_python_block_of_the_page_runs(session, page):
    assert len(session(page)) == len(python_blocks(ROOT / page))


def test_the_pages_with_python_are_those_expected():
    """A page that loses its blocks (or a guide page moved away) is noticed; new pages join by themselves."""
    assert {"README.md", "docs/getting_started.md", "docs/guide/optimizers.md", "docs/guide/integrations.md",
            "docs/guide/curvature.md", "docs/guide/certificates.md"} <= set(pages_with_python())


def test_readme_usage_example_runs(session):
    (snap,) = session("README.md")
    model, inj = snap["scope"]["model"], snap["scope"]["inj"]
    assert inj.step == 100 and inj.sigma == 0.0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_getting_started_shows_the_readme_loop():
    assert python_blocks(README) == python_blocks(ROOT / "docs/getting_started.md")


def test_regularizer_logging_example_runs(session):
    (snap,) = session("docs/guide/curvature.md")
    assert snap["out"].count("R_eff =") == 3
    assert snap["scope"]["reg"] > 0 and set(snap["scope"]["layers"]) == {"0", "2"}


def block_index(page: str, needle: str) -> int:
    (i,) = [i for i, b in enumerate(python_blocks(ROOT / page)) if needle in b]
    return i


OPTIMIZERS = "docs/guide/optimizers.md"


def test_closure_example_runs(session):
    scope = session(OPTIMIZERS)[block_index(OPTIMIZERS, "lr_scheduler")]["scope"]
    assert scope["opt"].param_groups[0]["lr"] < 0.05  # the scheduler on the wrapper moved the real lr
    assert set(scope["checkpoint"]) == {"optimizer", "injector"} and scope["inj"].step == 50


def test_family_example_runs(session):
    """The family block continues the closure block's session (model, closure)."""
    snaps = session(OPTIMIZERS)
    i = block_index(OPTIMIZERS, 'scale="filter"')
    assert 'scale="filter"' not in python_blocks(ROOT / OPTIMIZERS)[0] and i > 0
    scope = snaps[i]["scope"]
    assert scope["nso"].injector.step == 1 and torch.isfinite(scope["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(snaps[i - 1]["weights"], snaps[i]["weights"]))


def test_sam_example_runs(session):
    import noisereg as nr

    scope = session(OPTIMIZERS)[block_index(OPTIMIZERS, "nr.SAM(")]["scope"]
    model, x, y = scope["model"], scope["x"], scope["y"]
    assert isinstance(scope["opt"], nr.SAM) and torch.isfinite(scope["loss"])
    with torch.no_grad():  # 50 SAM steps fit the random targets better than their mean does
        assert 0.5 * (model(x) - y).pow(2).sum(1).mean() < 0.5 * (y - y.mean()).pow(2).sum(1).mean()


INTEGRATIONS = "docs/guide/integrations.md"


def test_lightning_example_runs(session):
    snap = session(INTEGRATIONS)[block_index(INTEGRATIONS, "import lightning")]
    assert snap["out"].strip().endswith("8")


def test_hugging_face_example_runs(session):
    snap = session(INTEGRATIONS)[block_index(INTEGRATIONS, "from transformers")]
    assert snap["out"].strip().endswith("4")


def test_certificate_example_prints_what_the_page_says(session):
    (snap,) = session("docs/guide/certificates.md")
    cert, tol = snap["scope"]["cert"], snap["scope"]["tolerance"]
    assert round(cert["empirical_risk"], 3) == 0.019 and round(cert["risk_bound"], 2) == 0.19
    assert round(cert["kl"]) == 293 and round(tol["sigma"], 2) == 0.25
    assert cert["risk_bound"] < 0.5   # a certificate below the error of guessing, as the page says
    text = (ROOT / "docs/guide/certificates.md").read_text()
    assert "stochastic training error of 0.019 and a risk bound of 0.19 (KL 293)" in text and "σ ≈ 0.25" in text


# ---- the README's headline results table, recomputed from the committed results

HEADLINE = [  # (label in the README, experiment, variant or None)
    ("Fig. 3: MLP 2×512, Fashion-MNIST (embedded subset)", "fig3", None),
    ("Fig. 3 at the paper's optimisation (lr 0.005, 10,000 steps): MLP 2×512", "fig3-long", None),
    ("Fig. 4: 5×256 MLP, Fashion-MNIST", "fig4", "width 256"),
    ("Fig. 4: 5×512 MLP, Fashion-MNIST", "fig4", "width 512"),
    ("Fig. 5: toy CNN, 8×8 digits", "fig5", "toy CNN"),
    ("Fig. 5: wide conv net, 8×8 digits", "fig5", "wide conv"),
    ("Fig. 6: ResNet-18 of width 16 + BatchNorm, 8×8 digits", "fig6", None),
    ("transformer, (a + b) mod 31, AdamW", "transformer", None),
]


def headline_rows() -> list[str]:
    """The table's rows, from docs/results/NAME/results.json by noisereg.verdicts: layer-wise noise at its
    selected σ against GD (σ = 0), on the final test accuracy, paired by seed."""
    from noisereg import verdicts
    from noisereg.sweep.stages import CONFIRMATION, has_confirmation, view

    rows = []
    for label, name, variant in HEADLINE:
        res = json.loads((ROOT / "docs/results" / name / "results.json").read_text())
        sigma = (res["selected"] if variant is None else res["selected"][variant])["layer"]
        two_stage = has_confirmation(res)   # judged on the confirmation runs alone; else one stage (older runs)
        given = bool(res["config"].get("given_sigmas"))   # σ chosen by another sweep: every seed here judges
        stats = verdicts.final_stats(view(res, CONFIRMATION) if two_stage else res, "test_acc")
        (var,) = {k[0] for k in stats if variant is None or k[0] == variant}
        gd, layer = stats[(var, "gd", 0.0)], stats[(var, "layer", float(sigma))]
        p = verdicts.paired(layer, gd, r=verdicts.resolution(res, "test_acc"))
        judged = len(res["config"]["confirm_seeds"]) if two_stage else len(res["config"]["seeds"]) if given else 3
        assert p.n == judged and math.isfinite(p.low)
        kind = "confirmation" if two_stage else "σ given" if given else "one stage"
        rows.append(f"| {label} | {kind} | {verdicts.fmt(gd.stat)} | "
                    f"{verdicts.fmt(layer.stat)} at σ = {sigma:g} | "
                    f"{100 * p.mean:+.2f} [{100 * p.low:+.2f}, {100 * p.high:+.2f}] | {p.verdict} |")
    return rows


def test_readme_headline_table_matches_the_committed_results():
    section = README.read_text().split("## Headline results")[1].split("\n## ")[0]
    table = [line for line in section.splitlines() if line.startswith("| ")][1:]  # without the header row
    expected = headline_rows()
    assert table == expected, "README headline table is stale; expected rows:\n" + "\n".join(expected)


def test_the_demo_numbers_in_getting_started_are_the_committed_demo_run():
    """docs/getting_started.md quotes the demo's Fig. 3 and Fig. 4 accuracies and its time: they are
    docs/results/demo's (a rerun of the demo that moves them fails here until the text follows)."""
    import json
    import statistics

    page = (ROOT / "docs" / "getting_started.md").read_text()
    demo = ROOT / "docs" / "results" / "demo"
    for name, quoted in (("fig3", "Fig. 3: layer-wise {layer} against GD's {gd}"),
                         ("fig4", "Fig. 4: {layer} against {gd}")):
        res = json.loads((demo / name / "results.json").read_text())
        acc = {m: f"{100 * statistics.mean(r['final']['test_acc'] for r in res['runs'] if r['method'] == m):.2f} %"
               for m in ("gd", "layer")}
        assert quoted.format(**acc) in " ".join(page.split()), (name, acc)
    commit = json.loads((demo / "fig3" / "results.json").read_text())["environment"]["git"]
    flat = " ".join(page.split()), " ".join((demo / "README.md").read_text().split())
    assert f"commit {commit}" in flat[0] and f"commit `{commit}`" in flat[1]
    total = sum(json.loads(p.read_text())["seconds"] for p in demo.glob("*/results.json"))
    assert 150 < total < 174 + 1   # the experiments' own seconds; the demo's 174 s adds the report
