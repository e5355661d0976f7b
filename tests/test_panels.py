"""The shared figure pieces: one style per method, the seed-paired difference panel, clipped axes."""

import math
import re

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from noisereg.sweep import EXPERIMENTS  # noqa: E402
from noisereg.plotting.panels import CLIP, Diff, Fit, differences, draw_paired  # noqa: E402
from noisereg.plotting.style import STYLES, order, style  # noqa: E402
from noisereg.training.settings import METHODS  # noqa: E402


def fig3_results(accs: dict, sizes=None) -> dict:
    """fig3-shaped results: ``accs[(arm, σ)]`` the test (= validation) accuracy of seeds 0, 1, 2 (nan: diverged)."""
    import dataclasses
    import json

    runs = []
    for (a, s), per_seed in accs.items():
        method, params = ("sam", {"arm": "sam_half"}) if a == "sam_half" else (a, {})
        for seed, acc in enumerate(per_seed):
            final = {"train_loss": 0.01 + seed / 1000, "train_acc": 1.0, "val_acc": acc, "test_acc": acc}
            history = [{"step": 0, "train_loss": 2.3, "train_acc": 0.1, "val_acc": 0.1, "test_acc": 0.1},
                       {"step": 5, "train_loss": 0.5, "train_acc": 0.8, "val_acc": 0.7, "test_acc": 0.7},
                       {"step": 10, **final}]
            runs.append({"id": f"{a}-sigma{s:g}-s{seed}", "variant": "", "method": method, "sigma": s, "seed": seed,
                         "params": params, "diverged": acc != acc, "final": final, "history": history,
                         "grad_evals": 10})
    cfg = json.loads(json.dumps(dataclasses.asdict(EXPERIMENTS["fig3"].config("smoke"))))
    res = {"experiment": "fig3", "preset": "smoke", "config": cfg, "data": "digits", "environment": {},
           "sizes": sizes or {"train": 128, "val": 1000, "test": 5000}, "runs": runs}
    res["selected"] = EXPERIMENTS["fig3"].selected(res)
    return res


LAYER_WINS = {("gd", 0.0): [0.80, 0.81, 0.79], ("layer", 0.01): [0.827, 0.839, 0.815],
              ("layer", 0.1): [0.70, 0.69, 0.71], ("full", 0.01): [0.805, 0.80, 0.80], ("full", 0.1): [0.2, 0.21, 0.19]}


def test_every_method_has_its_own_colour_and_marker():
    methods = {*METHODS, "wd", "sam_half"}
    assert methods <= set(STYLES)
    assert len({s["color"] for s in STYLES.values()}) == len(STYLES)
    assert len({s["marker"] for s in STYLES.values()}) == len(STYLES)
    assert style("nso_eq")["color"] == style("nso")["color"] and style("nso_eq")["markerfacecolor"] == "white"
    assert style("transformer_arm") == style("transformer_arm")  # an arm not in the table: the same every time
    assert order(["sam", "lpf_eq", "zzz", "gd", "lpf", "layer"]) == ["gd", "layer", "sam", "lpf", "lpf_eq", "zzz"]


@pytest.mark.parametrize("bad", [None, "", 3], ids=["none", "empty", "int"])
def test_style_rejects_a_non_arm(bad):
    with pytest.raises(TypeError, match="arm must be a non-empty str"):
        style(bad)


def test_draw_paired_rejects_other_records():
    _, ax = plt.subplots()
    with pytest.raises(TypeError, match="diffs must be Diff records"):
        draw_paired(ax, [{"arm": "layer"}], "test_acc")
    plt.close("all")


def _claim_numbers(text: str) -> tuple[float, float, float]:
    m = re.search(r"paired d̄ = ([+-][\d.]+) pts, \[L, U\] = \[([+-][\d.]+), ([+-][\d.]+)\]", text)
    return tuple(float(x) for x in m.groups())


def test_paired_panel_draws_the_rules_numbers():
    """The mean and interval drawn at layer's selected σ are those the report's claim prints."""
    res = fig3_results(LAYER_WINS)
    claim = EXPERIMENTS["fig3"].claims(res)[0]
    assert claim["verdict"] == "reproduced" and res["selected"]["layer"] == 0.01
    mean, low, high = _claim_numbers(claim["ours"])
    diffs = differences(res, "test_acc", "", res["selected"])
    layer = next(d for d in diffs if d.arm == "layer" and d.selected)
    assert layer.diffs == pytest.approx({0: 0.027, 1: 0.029, 2: 0.025})  # method − GD, seed by seed
    _, ax = plt.subplots()
    shown = draw_paired(ax, diffs, "test_acc")
    drawn = next(s for s in shown if s.arm == "layer" and not s.clipped)
    assert round(drawn.y, 2) == mean and drawn.y == pytest.approx(100 * layer.paired.mean)
    bars = [seg for c in ax.containers for seg in c.lines[2][0].get_segments()]  # the [L, U] bars drawn
    assert any(seg[0][1] == pytest.approx(100 * layer.paired.low) and seg[1][1] == pytest.approx(100 * layer.paired.high)
               for seg in bars)
    assert (round(100 * layer.paired.low, 2), round(100 * layer.paired.high, 2)) == (low, high)
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(f"d̄ = {mean:+.2f}, [L, U] = [{low:+.2f}, {high:+.2f}]" in t for t in legend)
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in ax.lines)  # the zero line
    plt.close("all")


def test_paired_panel_clips_a_collapse_and_marks_divergence():
    res = fig3_results({**LAYER_WINS, ("full", 0.2): [0.5, float("nan"), 0.5]})
    _, ax = plt.subplots()
    shown = {(s.arm, round(s.value, 6) if math.isfinite(s.value) else "nan"): s
             for s in draw_paired(ax, differences(res, "test_acc"), "test_acc")}
    collapse = next(s for (a, v), s in shown.items() if a == "full" and v != "nan" and v < -CLIP)
    assert collapse.clipped and collapse.text == f"{collapse.value:.2f}" and collapse.value == pytest.approx(-60.0)
    assert collapse.y == pytest.approx(ax.get_ylim()[0] + 0.04 * (ax.get_ylim()[1] - ax.get_ylim()[0]))
    assert shown[("full", "nan")].clipped and shown[("full", "nan")].text == "diverged"
    texts = {t.get_text() for t in ax.texts}
    assert {"-60.00", "diverged"} <= texts
    assert ax.get_ylim()[0] > -CLIP - 5  # the axis fits the informative range, not the collapse
    plt.close("all")


@pytest.mark.parametrize("values,clipped", [
    ([80.0, 79.0, 69.9], [False, False, True]),
    ([80.0, 70.0, float("nan")], [False, False, True]),
    ([1e3, 1.0], [False, False]),   # not an accuracy below: no floor
], ids=["ten-points", "diverged", "trace"])
def test_fit_clips_more_than_ten_points_below_the_best(values, clipped):
    fit = Fit(values, "test_acc" if values[0] < 100 else "hessian_trace")
    assert [fit.place("gd", 0, v).clipped for v in values] == clipped


def test_diff_is_a_record():
    d = Diff("layer", 0.1, {0: 0.01}, None, False)
    assert d.arm == "layer" and not d.selected


def test_a_figure_may_keep_every_point_on_its_axes():
    """``clip=False`` (spec ``"clip": False``): arms tens of points apart all stay on the axes."""
    values = [14.5, 31.4, 99.7]
    assert Fit(values, "test_acc").clips
    fit = Fit(values, "test_acc", clip=False)
    assert not fit.clips and fit.lo < 14.5 and fit.hi > 99.7
    assert not any(fit.place("full", 0.1, v).clipped for v in values)
