"""The report: every figure is drawn once, whether by `run`, `report DIR` or a combined report."""

from collections import Counter

import matplotlib
import pytest

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from noisereg.cli import main  # noqa: E402
from noisereg.sweep import EXPERIMENTS, run_experiment  # noqa: E402
from noisereg.report import rebuild, write_report  # noqa: E402


@pytest.fixture
def saved(monkeypatch):
    """Counts ``Figure.savefig`` calls of PNGs by file name (figures are saved via a temporary name; the
    SVG beside each PNG comes from the same drawing)."""
    calls = Counter()
    real = Figure.savefig

    def counting(self, fname, *args, **kwargs):
        if str(fname).endswith(".tmp.png"):
            calls[str(fname).split("/")[-1].removeprefix(".").removesuffix(".tmp.png")] += 1
        return real(self, fname, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", counting)
    return calls


@pytest.fixture(scope="module")
def two_results(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    return root, [run_experiment(EXPERIMENTS[name], "smoke", root / name, show_progress=False)
                  for name in ("fig2", "taylor")]


def test_combined_report_draws_each_figure_once(two_results, saved):
    root, _ = two_results
    path = rebuild(root)
    assert saved == Counter({"fig2.png": 1, "taylor.png": 1})
    text = path.read_text()
    assert "](fig2/fig2.png)" in text and "](taylor/taylor.png)" in text
    assert (root / "fig2" / "REPORT.md").exists() and not (root / "taylor" / "fig2.png").exists()


def test_single_report_draws_each_figure_once(two_results, tmp_path, saved):
    _, results = two_results
    write_report(tmp_path, results)
    assert saved == Counter({"fig2.png": 1, "taylor.png": 1})
    assert main(["report", str(two_results[0] / "fig2")]) == 0
    assert saved["fig2.png"] == 2  # one more rebuild, one more drawing


def test_run_draws_each_figure_once(tmp_path, saved):
    assert main(["run", "fig2", "--preset", "smoke", "--out", str(tmp_path), "--quiet"]) == 0
    assert saved == Counter({"fig2.png": 1})


def test_report_errors_are_user_errors(tmp_path):
    from noisereg.errors import UserError

    with pytest.raises(UserError, match="no results.json"):
        rebuild(tmp_path)
    (tmp_path / "results.json").write_text("{")
    with pytest.raises(UserError, match="is not valid JSON"):
        rebuild(tmp_path)
    (tmp_path / "results.json").write_text('{"experiment": "figX"}')
    with pytest.raises(UserError, match="unknown experiment 'figX'"):
        rebuild(tmp_path)


@pytest.mark.parametrize("kind", ["curves", "vs_sigma"])
def test_figures_and_claims_take_a_method_they_do_not_know(kind, tmp_path):
    """A new method (say "sam") needs no entry in the report: it is drawn under its own name."""
    from noisereg.experiments.classify import compare
    from noisereg.report.figures import draw

    def run(method, sigma, acc):
        h = [{"step": 0, "test_acc": 0.1, "val_acc": 0.1}, {"step": 10, "test_acc": acc, "val_acc": acc}]
        return {"variant": "", "method": method, "sigma": sigma, "seed": 0, "final": h[-1], "history": h}

    results = {"experiment": "fig3", "runs": [run("gd", 0.0, 0.5), run("layer", 0.1, 0.6), run("sam", 0.05, 0.7)]}
    path = draw(results, {"file": "f.png", "kind": kind, "metrics": ["test_acc"]}, tmp_path)
    assert path.stat().st_size > 5000
    _, best, _ = compare(results, "")
    assert best["sam"][1] == 0.05 and best["layer"][1] == 0.1


def test_results_record_provenance_and_split_sizes(tmp_path, monkeypatch):
    import re
    import sys as _sys

    from noisereg.sweep import EXPERIMENTS, run_experiment

    monkeypatch.setattr(_sys, "argv", ["/x/bin/noisereg", "run", "fig3", "--set", "sigmas=0.1"])
    res = run_experiment(EXPERIMENTS["fig3"], "smoke", tmp_path, overrides={"n_val": 32}, show_progress=False)
    env = res["environment"]
    assert re.fullmatch(r"[0-9a-f]{4,}(\+dirty)?|noisereg \S+", env["git"]), env["git"]
    assert env["command"] == "noisereg run fig3 --set sigmas=0.1"
    assert res["sizes"] == {"train": 128, "val": 32, "test": 1797 - 160}
    from noisereg.report import rebuild

    report = rebuild(tmp_path).read_text()
    assert env["git"] in report and "noisereg run fig3 --set sigmas=0.1" in report


def test_metrics_table_shows_each_experiments_own_metrics_and_marks_missing_ones():
    """taylor's runs record gaps, not losses: the table shows them; a metric a run lacks is "—", never "diverged"."""
    from noisereg.report import section

    runs = [{"id": f"a{s}", "variant": "v", "method": m, "sigma": s, "seed": 0, "params": {}, "diverged": False,
             "final": final, "history": [{"step": 0, **final}]}
            for m, s, final in (("full", 0.1, {"gap": 0.5, "gap_se": 0.01}),
                                ("layer", 0.1, {"gap": 0.25, "gap_se": 0.01, "ratio": 1.0, "ratio_se": 0.0}))]
    res = {"experiment": "taylor", "preset": "smoke", "config": EXPERIMENTS["taylor"].config("smoke").__dict__,
           "data": "x", "environment": {}, "runs": runs}
    text = section(res)
    table = text[text.index("| variant | method"):]
    assert "| gap | gap_se | ratio | ratio_se |" in table
    assert "| v | full | 0.1 | 1 | 0.5 | 0.01 | — | — |" in table and "diverged" not in table


# ------------------------------------------------------------------ the figures of issue 25


def test_vs_sigma_figure_clips_a_collapse_rings_the_selected_sigma_and_saves_png_and_svg(tmp_path):
    import matplotlib.pyplot as plt
    from xml.etree import ElementTree

    from test_panels import LAYER_WINS, fig3_results

    from noisereg.report import draw_figures
    from noisereg.report.figures import _draw_vs_sigma

    res = fig3_results(LAYER_WINS)
    _, ax = plt.subplots()
    shown = {(s.arm, s.x): s for s in _draw_vs_sigma(ax, res["runs"], "test_acc", res["selected"])}
    assert shown[("full", 0.1)].clipped and shown[("full", 0.1)].text == "20.0"   # 62.7 points below the best
    assert shown[("layer", 0.1)].clipped and shown[("layer", 0.1)].text == "70.0"  # 12.7 below
    assert not shown[("full", 0.01)].clipped and ax.get_ylim()[0] > 75               # the axis fits the rest
    assert {"20.0", "70.0"} <= {t.get_text() for t in ax.texts}
    rings = [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines if line.get_markersize() == 13]
    assert rings == [(0.01, pytest.approx(shown[("full", 0.01)].y)), (0.01, pytest.approx(shown[("layer", 0.01)].y))]
    plt.close("all")
    paths = draw_figures(res, tmp_path)
    assert [p.name for p in paths] == ["fig3.png", "fig3_curves.png"]
    for p in paths:
        assert p.stat().st_size > 5000 and ElementTree.parse(p.with_suffix(".svg")).getroot().tag.endswith("svg")
    svg = (tmp_path / "fig3.svg").read_bytes()
    draw_figures(res, tmp_path)
    assert (tmp_path / "fig3.svg").read_bytes() == svg  # deterministic: a rebuilt report changes no figure
    assert not list(tmp_path.glob(".*"))


def test_training_curves_show_each_method_at_its_selected_sigma(tmp_path):
    import matplotlib.pyplot as plt

    from test_panels import LAYER_WINS, fig3_results

    from noisereg.report.figures import _draw_curves

    res = fig3_results(LAYER_WINS)
    _, ax = plt.subplots()
    _draw_curves(ax, res["runs"], "test_acc", False, res["selected"])
    labels = [line.get_label() for line in ax.lines]
    assert labels == ["GD", "GD + noise, σ=0.01", "GD + noise (layer), σ=0.01"]
    assert ax.get_ylim()[0] == pytest.approx(82.7 - 10 - 1)  # the plateau (best − 10, less 1), not the first steps
    plt.close("all")


def test_report_puts_each_claim_under_its_figure(monkeypatch):
    from test_panels import LAYER_WINS, fig3_results

    from noisereg.report import section

    res = fig3_results(LAYER_WINS)
    fig3 = EXPERIMENTS["fig3"]
    rows = fig3.claims(res) + [{"claim": "a curve claim", "paper": "", "ours": "x", "verdict": "measured",
                                "figure": "fig3_curves.png"}]
    monkeypatch.setattr(fig3, "claims", lambda results: rows)
    text = section(res)
    main, curves, claim, curve_claim = (text.index(s) for s in ("![fig3.png]", "![fig3_curves.png]",
                                                                 "layer-wise noise raises", "a curve claim"))
    assert main < claim < curves < curve_claim
    assert text.count("| claim (paper) | paper | ours | verdict |") == 2
    assert "seed-paired difference to GD" in text[main:claim]  # the caption says how to read the figure


def test_draw_rejects_an_unknown_kind(tmp_path):
    from noisereg.report.figures import draw

    with pytest.raises(ValueError, match="figure kind must be one of"):
        draw({"runs": [], "experiment": "fig3"}, {"file": "f.png", "kind": "bars", "metrics": []}, tmp_path)
