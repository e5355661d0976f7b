"""The summary statistics behind claims and reports, and the verdict rule, against hand computations."""

import math

import pytest

from noisereg.experiments.classify import compare, select
from noisereg.verdicts import MARGIN, Sample, arm, decide, decide_all, final_stats, fmt, mean_se, paired, resolution
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
    assert st[("a", "gd", 0.0)].stat == pytest.approx((0.82, 0.02, 2))
    assert st[("a", "layer", 0.05)].stat == pytest.approx((0.80, 0.10, 2))
    assert st[("a", "layer", 0.1)].stat == pytest.approx((0.85, 0.0, 1))  # the diverged seed does not count
    assert st[("a", "full", 0.1)][2] == 0
    assert st[("b", "sam", 0.05)].stat == (0.5, 0.0, 1) and st[("b", "sam_half", 0.05)].stat == (0.7, 0.0, 1)
    assert st[("a", "layer", 0.1)].diverged and not st[("a", "layer", 0.05)].diverged
    assert [arm(r) for r in RESULTS["runs"][-2:]] == ["sam", "sam_half"]
    assert arm({"method": "layer"}) == "layer"  # records written before params existed


def test_compare_takes_each_noisy_method_at_its_validation_sigma():
    gd, best, stats = compare(RESULTS, "a")
    assert gd.stat == pytest.approx((0.82, 0.02, 2))
    assert set(best) == {"layer", "full"}  # sam has runs in variant b only
    (m, se, n), s = best["layer"]
    assert (m, se, n, s) == (pytest.approx(0.85), 0.0, 1, 0.1)  # 0.85 at σ=0.1 beats 0.80 at σ=0.05
    assert (best["full"][0].stat, best["full"][1]) == ((pytest.approx(0.82), 0.0, 1), 0.05)  # the all-nan σ=0.1 is skipped
    assert stats == final_stats(RESULTS, "test_acc")
    gd_b, best_b, _ = compare(RESULTS, "b")
    assert math.isnan(gd_b[0]) and gd_b[2] == 0 and set(best_b) == {"layer", "sam", "sam_half"}


def test_select_uses_validation_accuracy_never_test_accuracy():
    runs = [_run("", "layer", 0.05, acc=0.95, val=0.80, seed=k) for k in range(3)]  # best on test
    runs += [_run("", "layer", 0.1, acc=0.85, val=0.90, seed=k) for k in range(3)]  # best on validation
    runs += [_run("", "full", s, acc=0.9, val=0.9, seed=0) for s in (0.2, 0.05, 0.1)]  # a tie: the smaller σ
    runs += [_run("", "sam", 0.1, acc=0.9, diverged=True), _run("", "sam", 0.05, acc=0.9, diverged=True)]
    assert select({"runs": runs}, "") == {"full": 0.05, "layer": 0.1, "sam": 0.05}  # all diverged: the smallest ρ
    _, best, _ = compare({"runs": runs}, "")
    assert (best["layer"][0].stat, best["layer"][1]) == ((pytest.approx(0.85), 0.0, 3), 0.1)  # the test accuracy at the selected σ


def S(*values, start=0):
    """A Sample with seeds start, start+1, ... (None: a diverged run)."""
    return Sample({start + i: (math.nan if v is None else v) for i, v in enumerate(values)})


def test_paired_by_hand():
    # d = (0.03, 0.01, 0.02): mean 0.02, sd 0.01, SE 0.01/√3, t_{0.95,2} = 2.919986
    p = paired(S(0.93, 0.91, 0.92), S(0.90, 0.90, 0.90))
    se, t = 0.01 / math.sqrt(3), 2.919986
    assert (p.n, p.mean, p.se, p.t) == (3, pytest.approx(0.02), pytest.approx(se), pytest.approx(t, abs=1e-6))
    assert (p.low, p.high) == (pytest.approx(0.02 - t * se), pytest.approx(0.02 + t * se))
    assert p.verdict == "reproduced" and p.delta is None  # L = 0.0031 > r = 0
    assert paired(S(0.93, 0.91, 0.92), S(0.90, 0.90, 0.90), r=0.004).verdict == "inconclusive"  # L < r
    q = paired(S(0.90, 0.90, 0.90), S(0.93, 0.91, 0.92))
    assert q.verdict == "not reproduced" and q.high == pytest.approx(-p.low)


def test_pairing_beats_the_unpaired_band():
    # The example: +0.84 points on every seed with seed-to-seed spread of a point: the old unpaired band
    # (2 combined SE) called it a coin toss; the paired rule sees the same difference on every seed.
    gd = S(0.960, 0.975, 0.985)
    layer = S(0.9684, 0.9834, 0.9940)  # +0.84, +0.84, +0.90
    assert paired(layer, gd, r=1e-4).verdict == "reproduced"
    m_a, se_a, _ = layer
    m_b, se_b, _ = gd
    assert m_a - m_b < 2 * math.hypot(se_a, se_b)  # what the old rule called inconclusive


def test_resolution_one_example_is_not_decisive_two_are():
    n_test = 5000
    r = 1 / n_test
    gd = S(0.8000, 0.8010, 0.7990)
    assert paired(S(0.8002, 0.8012, 0.7992), gd, r=r).verdict == "inconclusive"  # +1 example per seed, SE = 0
    assert paired(S(0.8004, 0.8014, 0.7994), gd, r=r).verdict == "reproduced"    # +2 examples per seed
    assert paired(S(0.7996, 0.8006, 0.7986), gd, r=r).verdict == "not reproduced"
    assert paired(S(0.7998, 0.8008, 0.7988), gd, r=r).verdict == "inconclusive"


def test_at_least_matches_has_a_margin():
    gd = S(0.9710, 0.9705, 0.9715)
    below = S(0.9691, 0.9686, 0.9696)  # layer 0.19 points below GD on every seed: within δ = 0.5 points
    p = paired(below, gd, at_least=True, r=1e-4)
    assert p.verdict == "reproduced" and p.delta == MARGIN == 0.005
    far = S(0.9600, 0.9595, 0.9605)  # 1.1 points below on every seed
    assert paired(far, gd, at_least=True).verdict == "not reproduced"
    noisy = S(0.9610, 0.9800, 0.9690)  # straddles −δ
    assert paired(noisy, gd, at_least=True).verdict == "inconclusive"
    # "beats" on the same numbers: below GD is not reproduced
    assert paired(below, gd, r=1e-4).verdict == "not reproduced"


def test_lower_is_better():
    tr_gd, tr_layer = S(10.0, 12.0, 11.0), S(8.0, 10.5, 9.0)
    assert paired(tr_layer, tr_gd, lower_is_better=True).verdict == "reproduced"
    assert paired(tr_gd, tr_layer, lower_is_better=True).verdict == "not reproduced"


@pytest.mark.parametrize("a, b, why", [
    (S(0.95, 0.96), S(0.90, 0.91), "two pairs"),
    (S(0.95, 0.96, None), S(0.90, 0.91, 0.92), "a diverged run in A"),
    (S(0.95, 0.96, 0.97), S(0.90, None, 0.92), "a diverged run in B"),
    (S(0.95, 0.96, 0.97), S(0.90, 0.91, 0.92, start=2), "one seed in both"),
    (S(0.95, 0.95, 0.95), S(0.95, 0.95, 0.95), "a tie is no win"),
    (Sample({}), S(0.9, 0.9, 0.9), "no runs"),
], ids=lambda x: x if isinstance(x, str) else "")
def test_inconclusive_cases(a, b, why):
    assert paired(a, b).verdict == "inconclusive", why


def test_unpaired_and_duplicate_seeds_are_judged_on_the_pairs_they_have():
    runs = [_run("", "gd", 0, 0.80 + 0.01 * k, seed=k) for k in range(4)]
    runs += [_run("", "layer", 0.05, 0.83 + 0.01 * k + 0.001 * (k % 2), seed=k) for k in (1, 2, 3, 5)]  # 5: no GD
    runs += [_run("", "layer", 0.05, 0.99, seed=1)]                                                   # 1 twice
    st = final_stats({"runs": runs}, "test_acc")
    layer, gd = st[("", "layer", 0.05)], st[("", "gd", 0.0)]
    assert layer.duplicates == {1} and set(layer.values) == {2, 3, 5}
    p = paired(layer, gd)
    assert p.n == 2 and p.verdict == "inconclusive"  # seeds 2 and 3 only: fewer than 3 pairs
    runs += [_run("", "layer", 0.05, 0.80, seed=0)]
    assert paired(final_stats({"runs": runs}, "test_acc")[("", "layer", 0.05)], gd).n == 3


def test_paired_needs_samples():
    with pytest.raises(TypeError, match="paired needs two Samples"):
        paired((0.9, 0.01, 3), (0.8, 0.01, 3))


def test_resolution_from_results_sizes():
    res = {"sizes": {"train": 1024, "val": 1024, "test": 5000}}
    assert resolution(res, "test_acc") == 1 / 5000 and resolution(res, "val_acc") == 1 / 1024
    assert resolution(res, "hessian_trace") == 0.0 and resolution({}, "test_acc") == 0.0


def test_decide_all():
    assert decide_all(["reproduced", "reproduced"]) == "reproduced"
    assert decide_all(["reproduced", "inconclusive"]) == "inconclusive"
    assert decide_all(["reproduced", "not reproduced", "inconclusive"]) == "not reproduced"
    assert decide_all([]) == "inconclusive"


def test_fmt():
    assert fmt((0.97123, 0.0031, 3)) == "97.12 ± 0.31% (3 seeds)"
    assert fmt((12.345, 0.5, 2), 1, "") == "12.35 ± 0.5 (2 seeds)"
    assert fmt((12.345, 0.0, 1), 1, "") == "12.35 ± n/a (1 seed)" and fmt((0.5, 0.0, 1)) == "50.00 ± n/a% (1 seed)"
    assert fmt((math.nan, math.nan, 0)) == "diverged"


def test_slope_by_hand():
    assert slope([1, 10, 100], [3, 30, 300]) == pytest.approx(1.0)
    assert slope([2, 4, 8], [1 / 2, 1 / 8, 1 / 32]) == pytest.approx(-2.0)
    assert slope([1, 2, 4], [1, 4, 0]) == pytest.approx(2.0)  # a non-positive point is dropped (said by the claims)
    assert math.isnan(slope([1, 2, 4, 8], [1, 4, 8, None]))    # a missing or nan point is not: no slope
    assert math.isnan(slope([1, 2, 4, 8], [1, 4, 8, math.nan]))
    assert slope([1, 2, 4], [1, 2, 2]) == pytest.approx(0.5)  # log-points (0,0), (a,a), (2a,a): cov a², var 2a²
    assert math.isnan(slope([1, 2], [1, -1]))


def test_the_rule_states_its_numbers_and_every_verdict_is_a_known_one():
    from noisereg.verdicts import ALPHA, MIN_PAIRS, RULE, VERDICTS

    assert ALPHA == 0.05 and MIN_PAIRS == 3 and MARGIN == 0.005
    for text in ("seed-paired", "0.95 quantile of Student's t with n − 1", "L > r", "U < −r", "δ = 0.5 accuracy points",
                 "fewer than 3 pairs", "validation"):
        assert text in RULE, text
    outcomes = {decide(a, b, at_least=al) for a in [S(0.9, 0.91, 0.92), S(0.5, 0.5, 0.51), S(0.9)]
                for b in [S(0.5, 0.52, 0.51), S(0.9, 0.91, 0.92)] for al in (False, True)}
    assert outcomes == {"reproduced", "not reproduced", "inconclusive"} and outcomes < set(VERDICTS)
    text = paired(S(0.93, 0.91, 0.92), S(0.90, 0.90, 0.90), r=0.0002).text()
    assert text == "paired d̄ = +2.00 pts, [L, U] = [+0.31, +3.69] (n=3, t=2.92, α=0.05, r=0.02)"


def test_one_pair_says_so_instead_of_printing_nan_bounds():
    from noisereg.verdicts import Sample, paired

    text = paired(Sample({0: 0.81}), Sample({0: 0.80})).text()
    assert "nan" not in text and "n=1: one pair, no interval" in text and "+1.00 pts" in text


# ------------------------------------------------------------------ every verdict function, every outcome (issue 31)

S3 = dict(good=S(0.95, 0.97, 0.96), bad=S(0.90, 0.91, 0.90))


def _judge_pair(a, b, **kw):
    from noisereg.experiments.classify import judge_pair

    return judge_pair({"sizes": {"test": 1000}}, a, b, **kw).verdict


def _paired(a, b, **kw):
    return paired(a, b, **kw).verdict


PAIRED = {"paired": _paired, "decide": decide, "judge_pair": _judge_pair,
          "paired at_least": lambda a, b: _paired(a, b, at_least=True),
          "decide lower_is_better": lambda a, b: decide(b, a, lower_is_better=True)}
NAN3 = S(0.95, None, 0.96)


@pytest.mark.parametrize("fn", list(PAIRED), ids=str)
@pytest.mark.parametrize("a,b,expected", [
    (S3["good"], S3["bad"], "reproduced"), (S3["bad"], S3["good"], "not reproduced"),
    (S(0.95, 0.96, 0.95), S(0.95, 0.95, 0.96), "inconclusive"),
    (NAN3, S3["bad"], "inconclusive"), (S3["good"], NAN3, "inconclusive"),
    (Sample({}), S3["bad"], "inconclusive"), (S3["good"], Sample({}), "inconclusive"),
    (S(0.99), S(0.5), "inconclusive"), (Sample({0: 0.99}), Sample({0: 0.5, 1: 0.5, 2: 0.5}), "inconclusive"),
    (Sample({0: 0.95, 1: 0.97, 2: 0.96, 3: math.nan}), S3["bad"], "inconclusive"),  # diverged on an unpaired seed
], ids=["better", "worse", "tie", "nan-a", "nan-b", "empty-a", "empty-b", "one-seed", "one-seed-a", "nan-unpaired"])
def test_paired_verdicts_reach_every_outcome(fn, a, b, expected):
    assert PAIRED[fn](a, b) == expected


@pytest.mark.parametrize("verdicts,expected", [
    (["reproduced"] * 3, "reproduced"), (["reproduced", "not reproduced"], "not reproduced"),
    (["reproduced", "inconclusive"], "inconclusive"), ([], "inconclusive"),
    ([decide(NAN3, S3["bad"])], "inconclusive"),                            # nan: the comparison is undecided
    ([decide(S(0.99), S(0.5))], "inconclusive"),                            # one seed
    ([decide(Sample({}), S3["bad"]), "reproduced"], "inconclusive"),        # an empty arm
], ids=["all", "one-refutes", "one-undecided", "none", "nan", "one-seed", "empty-arm"])
def test_decide_all_reaches_every_outcome(verdicts, expected):
    assert decide_all(verdicts) == expected


@pytest.mark.parametrize("args,expected", [
    ((1.0, 0.9, 1.1, 0.01), "reproduced"), ((0.5, 0.9, 1.1, 0.01), "not reproduced"),
    ((1.5, 0.9, 1.1, 0.01), "not reproduced"), ((1.09, 0.9, 1.1, 0.01), "inconclusive"),
    ((math.nan, 0.9, 1.1, 0.0), "inconclusive"), ((1.0, 0.9, 1.1, math.nan), "inconclusive"),
    ((None, 0.9, 1.1, 0.0), "inconclusive"), ((1.0, 0.9, 1.1, -1.0), "inconclusive"),
], ids=["inside", "below", "above", "straddles", "nan", "nan-se", "none", "negative-se"])
def test_judge_range_reaches_every_outcome(args, expected):
    from noisereg.verdicts import judge_range

    assert judge_range(*args) == expected
    if expected == "reproduced":   # a closed form's agreement is "computed"
        assert judge_range(*args, computed=True) == "computed"


def test_judge_range_on_slopes_of_nothing_one_point_and_nan():
    """The slope judgements (variance, taylor) feed judge_range with log_slope: an empty fit, one point (one seed's
    one width) or a nan point is nan, hence inconclusive."""
    from noisereg.experiments.variance import log_slope
    from noisereg.verdicts import judge_range

    def flat(xs, ys, ses=None):
        sl, se = log_slope(xs, ys, ses)
        return judge_range(sl, high=0.1, se=se)

    for xs, ys in (([], []), ([10], [1.0]), ([10, 100], [1.0, math.nan])):
        assert flat(xs, ys) == "inconclusive"
    assert flat([10, 100], [1.0, 1.0], [1e-4, 1e-4]) == "reproduced"
    assert flat([10, 100], [1.0, 10.0], [1e-4, 1e-4]) == "not reproduced"
    assert flat([10, 100], [1.0, 1.2], [0.1, 0.1]) == "inconclusive"   # slope 0.08 ± 0.06


@pytest.mark.parametrize("values,expected", [
    ([0.01, 0.02, 0.03], "reproduced"), ([0.01, 0.2, 0.03], "not reproduced"),
    ([0.01, math.nan, 0.03], "inconclusive"), ([0.01, None, 0.03], "inconclusive"), ([], "inconclusive"),
    ([0.01], "inconclusive"), ([0.2], "inconclusive"), ({0: 0.01, 1: 0.02, 2: 0.03}, "reproduced"),
], ids=["all", "one-fails", "nan", "none", "empty", "one-seed", "one-seed-failing", "by-seed"])
def test_every_seed_reaches_every_outcome(values, expected):
    from noisereg.verdicts import every_seed

    assert every_seed(values, lambda e: e <= 0.05) == expected


@pytest.mark.parametrize("verdicts,expected", [
    (["reproduced"] * 3, "reproduced"), (["reproduced", "not reproduced", "reproduced"], "not reproduced"),
    (["reproduced", "inconclusive", "reproduced"], "inconclusive"), (["computed"] * 3, "computed"),
    (["not run at this scale"] * 3, "not run at this scale"), (["not run at this scale", "reproduced", "reproduced"],
                                                                 "inconclusive"),
    ([], "inconclusive"), (["reproduced"], "inconclusive"), (["not reproduced"], "inconclusive"),
    (["reproduced", "inconclusive", "reproduced"], "inconclusive"),   # a seed whose slope is nan: inconclusive
], ids=["all", "one-refutes", "one-undecided", "computed", "not-run", "mixed-not-run", "empty", "one-seed",
        "one-seed-failing", "nan-seed"])
def test_across_seeds_reaches_every_outcome(verdicts, expected):
    from noisereg.verdicts import across_seeds

    assert across_seeds(verdicts) == expected


def test_computed_is_a_verdict_the_report_lists():
    from noisereg.report import _PREAMBLE
    from noisereg.verdicts import VERDICTS

    assert "computed" in VERDICTS
    assert "computed" in " ".join(_PREAMBLE)
