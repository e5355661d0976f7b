"""The summary statistics behind claims and reports, against hand computations."""

import math

import pytest

from noisereg.experiments.classify import compare
from noisereg.experiments.stats import final_stats, mean_se
from noisereg.experiments.variance import slope


def test_mean_se_by_hand():
    assert mean_se([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, math.sqrt(((4 / 3) ** 2 + (1 / 3) ** 2 + (5 / 3) ** 2) / 2 / 3), 3))
    assert mean_se([2.0, None, math.nan, math.inf, 4.0]) == pytest.approx((3.0, 1.0, 2))  # only finite values
    assert mean_se([5.0]) == (5.0, 0.0, 1)
    m, se, n = mean_se([None, math.nan])
    assert math.isnan(m) and math.isnan(se) and n == 0


def _run(variant, method, sigma, acc, diverged=False, seed=0):
    return {"variant": variant, "method": method, "sigma": sigma, "seed": seed, "diverged": diverged,
            "final": {"test_acc": acc}}


RESULTS = {"runs": [
    _run("a", "gd", 0, 0.80), _run("a", "gd", 0.0, 0.84, seed=1),
    _run("a", "layer", 0.05, 0.90), _run("a", "layer", 0.05, 0.70, seed=1),   # mean 0.80
    _run("a", "layer", 0.1, 0.85), _run("a", "layer", 0.1, 0.5, diverged=True, seed=1),  # diverged: nan
    _run("a", "full", 0.05, 0.82), _run("a", "full", 0.1, math.nan),
    _run("b", "layer", 0.05, 0.99), _run("b", "sam", 0.05, 0.5),
]}


def test_final_stats_groups_by_variant_method_sigma():
    st = final_stats(RESULTS, "test_acc")
    assert set(st) == {("a", "gd", 0.0), ("a", "layer", 0.05), ("a", "layer", 0.1), ("a", "full", 0.05),
                       ("a", "full", 0.1), ("b", "layer", 0.05), ("b", "sam", 0.05)}
    assert st[("a", "gd", 0.0)] == pytest.approx((0.82, 0.02, 2))
    assert st[("a", "layer", 0.05)] == pytest.approx((0.80, 0.10, 2))
    assert st[("a", "layer", 0.1)] == pytest.approx((0.85, 0.0, 1))  # the diverged seed does not count
    assert st[("a", "full", 0.1)][2] == 0


def test_compare_finds_the_best_sigma_of_each_noisy_method_in_the_variant():
    gd, best, stats = compare(RESULTS, "a")
    assert gd == pytest.approx((0.82, 0.02, 2))
    assert set(best) == {"layer", "full"}  # sam has runs in variant b only
    (m, se, n), s = best["layer"]
    assert (m, se, n, s) == (pytest.approx(0.85), 0.0, 1, 0.1)  # 0.85 at σ=0.1 beats 0.80 at σ=0.05
    assert best["full"] == ((pytest.approx(0.82), 0.0, 1), 0.05)  # the all-nan σ=0.1 is skipped
    assert stats == final_stats(RESULTS, "test_acc")
    gd_b, best_b, _ = compare(RESULTS, "b")
    assert math.isnan(gd_b[0]) and gd_b[2] == 0 and set(best_b) == {"layer", "sam"}


def test_slope_by_hand():
    assert slope([1, 10, 100], [3, 30, 300]) == pytest.approx(1.0)
    assert slope([2, 4, 8], [1 / 2, 1 / 8, 1 / 32]) == pytest.approx(-2.0)
    assert slope([1, 2, 4, 8], [1, 4, 0, None]) == pytest.approx(2.0)  # non-positive and None points dropped
    assert slope([1, 2, 4], [1, 2, 2]) == pytest.approx(0.5)  # log-points (0,0), (a,a), (2a,a): cov a², var 2a²
    assert math.isnan(slope([1, 2], [1, -1]))
