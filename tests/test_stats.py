"""The summary statistics behind claims and reports, and the verdict rule, against hand computations."""

import math

import pytest

from noisereg.experiments.classify import compare, select
from noisereg.experiments.stats import arm, decide, decide_all, final_stats, fmt, mean_se
from noisereg.experiments.variance import slope


def test_mean_se_by_hand():
    assert mean_se([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, math.sqrt(((4 / 3) ** 2 + (1 / 3) ** 2 + (5 / 3) ** 2) / 2 / 3), 3))
    assert mean_se([2.0, None, math.nan, math.inf, 4.0]) == pytest.approx((3.0, 1.0, 2))  # only finite values
    assert mean_se([5.0]) == (5.0, 0.0, 1)
    m, se, n = mean_se([None, math.nan])
    assert math.isnan(m) and math.isnan(se) and n == 0


def _run(variant, method, sigma, acc, diverged=False, seed=0, val=None, params=None):
    return {"variant": variant, "method": method, "sigma": sigma, "seed": seed, "diverged": diverged,
            "params": params or {}, "final": {"test_acc": acc, "val_acc": acc if val is None else val}}


RESULTS = {"runs": [
    _run("a", "gd", 0, 0.80), _run("a", "gd", 0.0, 0.84, seed=1),
    _run("a", "layer", 0.05, 0.90), _run("a", "layer", 0.05, 0.70, seed=1),   # mean 0.80
    _run("a", "layer", 0.1, 0.85), _run("a", "layer", 0.1, 0.5, diverged=True, seed=1),  # diverged: nan
    _run("a", "full", 0.05, 0.82), _run("a", "full", 0.1, math.nan),
    _run("b", "layer", 0.05, 0.99), _run("b", "sam", 0.05, 0.5),
    _run("b", "sam", 0.05, 0.7, params={"arm": "sam_half"}),
]}


def test_final_stats_groups_by_variant_arm_sigma():
    st = final_stats(RESULTS, "test_acc")
    assert set(st) == {("a", "gd", 0.0), ("a", "layer", 0.05), ("a", "layer", 0.1), ("a", "full", 0.05),
                       ("a", "full", 0.1), ("b", "layer", 0.05), ("b", "sam", 0.05), ("b", "sam_half", 0.05)}
    assert st[("a", "gd", 0.0)] == pytest.approx((0.82, 0.02, 2))
    assert st[("a", "layer", 0.05)] == pytest.approx((0.80, 0.10, 2))
    assert st[("a", "layer", 0.1)] == pytest.approx((0.85, 0.0, 1))  # the diverged seed does not count
    assert st[("a", "full", 0.1)][2] == 0
    assert st[("b", "sam", 0.05)] == (0.5, 0.0, 1) and st[("b", "sam_half", 0.05)] == (0.7, 0.0, 1)
    assert [arm(r) for r in RESULTS["runs"][-2:]] == ["sam", "sam_half"]
    assert arm({"method": "layer"}) == "layer"  # records written before params existed


def test_compare_takes_each_noisy_method_at_its_validation_sigma():
    gd, best, stats = compare(RESULTS, "a")
    assert gd == pytest.approx((0.82, 0.02, 2))
    assert set(best) == {"layer", "full"}  # sam has runs in variant b only
    (m, se, n), s = best["layer"]
    assert (m, se, n, s) == (pytest.approx(0.85), 0.0, 1, 0.1)  # 0.85 at σ=0.1 beats 0.80 at σ=0.05
    assert best["full"] == ((pytest.approx(0.82), 0.0, 1), 0.05)  # the all-nan σ=0.1 is skipped
    assert stats == final_stats(RESULTS, "test_acc")
    gd_b, best_b, _ = compare(RESULTS, "b")
    assert math.isnan(gd_b[0]) and gd_b[2] == 0 and set(best_b) == {"layer", "sam", "sam_half"}


def test_select_uses_validation_accuracy_never_test_accuracy():
    runs = [_run("", "layer", 0.05, acc=0.95, val=0.80, seed=k) for k in range(3)]  # best on test
    runs += [_run("", "layer", 0.1, acc=0.85, val=0.90, seed=k) for k in range(3)]  # best on validation
    runs += [_run("", "full", s, acc=0.9, val=0.9, seed=0) for s in (0.2, 0.05, 0.1)]  # a tie: the smaller σ
    runs += [_run("", "sam", 0.05, acc=0.9, diverged=True)]                          # every ρ diverged
    assert select({"runs": runs}, "") == {"full": 0.05, "layer": 0.1}
    _, best, _ = compare({"runs": runs}, "")
    assert best["layer"] == ((pytest.approx(0.85), 0.0, 3), 0.1)  # the test accuracy at the selected σ


@pytest.mark.parametrize("a,b,kw,expected", [
    ((0.90, 0.01, 3), (0.85, 0.01, 3), {}, "reproduced"),           # gap 0.05 > 2·√2·0.01 = 0.028
    ((0.85, 0.01, 3), (0.90, 0.01, 3), {}, "not reproduced"),
    ((0.87, 0.01, 3), (0.85, 0.01, 3), {}, "inconclusive"),         # gap 0.02 < 0.028
    ((0.90, 0.01, 2), (0.85, 0.01, 3), {}, "inconclusive"),         # two seeds
    ((0.90, 0.01, 3), (0.85, 0.01, 2), {}, "inconclusive"),
    ((0.90, 0.0, 3), (0.85, 0.0, 3), {"min_seeds": 1}, "reproduced"),
    ((0.85, 0.0, 3), (0.85, 0.0, 3), {}, "inconclusive"),            # a tie is no win
    ((math.nan, math.nan, 0), (0.85, 0.0, 3), {}, "inconclusive"),  # diverged arm
    ((0.85, 0.01, 3), (0.87, 0.01, 3), {"at_least": True}, "reproduced"),     # within the band: matches
    ((0.85, 0.01, 3), (0.90, 0.01, 3), {"at_least": True}, "not reproduced"),
    ((0.85, 0.01, 2), (0.84, 0.01, 3), {"at_least": True}, "inconclusive"),
    ((0.90, 0.01, 3), (0.85, 0.01, 3), {"z": 4.0}, "inconclusive"),  # gap 0.05 < 4·√2·0.01
])
def test_decide_by_hand(a, b, kw, expected):
    assert decide(a, b, **kw) == expected


def test_decide_band_is_two_combined_standard_errors():
    se1, se2 = 0.03, 0.04  # combined 0.05, band 0.1
    assert decide((0.5 + 0.101, se1, 3), (0.5, se2, 3)) == "reproduced"
    assert decide((0.5 + 0.099, se1, 3), (0.5, se2, 3)) == "inconclusive"
    assert decide((0.5 - 0.101, se1, 3), (0.5, se2, 3)) == "not reproduced"
    assert decide((0.5 - 0.099, se1, 3), (0.5, se2, 3)) == "inconclusive"


def test_decide_all():
    assert decide_all(["reproduced", "reproduced"]) == "reproduced"
    assert decide_all(["reproduced", "inconclusive"]) == "inconclusive"
    assert decide_all(["reproduced", "not reproduced", "inconclusive"]) == "not reproduced"
    assert decide_all([]) == "inconclusive"


def test_fmt():
    assert fmt((0.97123, 0.0031, 3)) == "97.12 ± 0.31% (3 seeds)"
    assert fmt((12.345, 0.5, 1), 1, "") == "12.35 ± 0.5 (1 seed)"
    assert fmt((math.nan, math.nan, 0)) == "diverged"


def test_slope_by_hand():
    assert slope([1, 10, 100], [3, 30, 300]) == pytest.approx(1.0)
    assert slope([2, 4, 8], [1 / 2, 1 / 8, 1 / 32]) == pytest.approx(-2.0)
    assert slope([1, 2, 4, 8], [1, 4, 0, None]) == pytest.approx(2.0)  # non-positive and None points dropped
    assert slope([1, 2, 4], [1, 2, 2]) == pytest.approx(0.5)  # log-points (0,0), (a,a), (2a,a): cov a², var 2a²
    assert math.isnan(slope([1, 2], [1, -1]))


def test_the_rule_states_its_numbers_and_every_verdict_is_a_known_one():
    from noisereg.experiments.stats import MIN_SEEDS, RULE, VERDICTS, Z

    assert f"{Z:g} combined standard errors" in RULE and f"at least {MIN_SEEDS} seeds" in RULE
    assert "validation" in RULE
    outcomes = {decide(a, b, at_least=al) for a in [(0.9, 0.01, 3), (0.5, 0.01, 3), (0.9, 0.01, 1)]
                for b in [(0.5, 0.01, 3), (0.9, 0.01, 3)] for al in (False, True)}
    assert outcomes == {"reproduced", "not reproduced", "inconclusive"} and outcomes < set(VERDICTS)
