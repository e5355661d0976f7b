"""Summary statistics of results.json runs, and the rule that turns them into verdicts.

Used by the experiments' claims and by the report. A run's *arm* is what a comparison is about:
its method, or ``params["arm"]`` where one method is run two ways (``"sam_half"``: SAM with half
the steps, the equal-compute comparison).

The verdict rule (:data:`RULE`, stated in every report; :func:`paired`). A seed fixes the
initialisation and the data order for every method, so a claim "A beats B" on a metric is judged
on the seed-paired differences: over the seeds present in both arms, d_s = A_s − B_s (B_s − A_s
where lower is better), their mean d̄ and standard error SE = sd(d)/√n, and the interval
[L, U] = d̄ ∓ t·SE with t the 95 % quantile of Student's t with n − 1 degrees of freedom (a
one-sided test at α = 5 % in each direction). With r the metric's resolution (one example of the
split it is measured on, 1/N, for an accuracy; 0 for continuous metrics such as traces and losses):

* "A beats B": **reproduced** when L > r, **not reproduced** when U < −r, else **inconclusive**;
* "A at least matches B" (non-inferiority, margin δ = :data:`MARGIN` = 0.5 accuracy points):
  **reproduced** when L > −δ, **not reproduced** when U < −δ, else **inconclusive**;
* fewer than :data:`MIN_PAIRS` = 3 pairs, or a diverged run in either arm: **inconclusive**.

An inconclusive comparison with an interval says what the data still exclude (:meth:`Paired.excluded`):
an effect above U ("A beats B"), or A behind B by more than −L ("A at least matches B"), each at
1 − α = 95 %, one-sided.

A seed that appears twice in one arm cannot be paired and is left out. Experiments add
``measured`` (no claim, a number), ``computed`` (the row evaluates a closed form, or minimises one
deterministically: no seed or noise draw can change it, so it agrees with the claim without reproducing an
experiment; one that disagrees is ``not reproduced``) and ``not run at this scale``.

Claims on a single estimate (a fitted slope, a Monte-Carlo ratio) use :func:`judge_range`: the estimate ± z·SE
(z = :data:`Z`, one-sided α in each direction) inside the claimed range is **reproduced**, wholly outside it
**not reproduced**, anything else or a nan **inconclusive**. A claim that must hold on every run (noisy GD
reaching a minimiser, in the theory experiments) uses :func:`every_seed`, and verdicts reached seed by seed are
combined by :func:`across_seeds`: both need :data:`MIN_PAIRS` seeds and no nan, like the paired rule.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05
MIN_PAIRS = 3
MARGIN = 0.005
EPS = 1e-9  # float tolerance of the comparisons with r and δ (accuracies are fractions of a split)
RULE = (f"claims are judged on seed-paired differences d = A − B (a seed fixes initialisation and data order for "
        f"every method): their mean d̄, standard error SE = sd(d)/√n and the interval [L, U] = d̄ ∓ t·SE, t the "
        f"{1 - ALPHA:g} quantile of Student's t with n − 1 degrees of freedom (one-sided α = {ALPHA:g} in each "
        f"direction). \"A beats B\" is **reproduced** when L > r and **not reproduced** when U < −r, r the metric's "
        "resolution (one example of the split it is measured on, 1/N, for an accuracy; 0 for traces and losses); "
        f"\"A at least matches B\" is reproduced when L > −δ and not reproduced when U < −δ, δ = "
        f"{100 * MARGIN:g} accuracy points; anything else, fewer than {MIN_PAIRS} pairs, or a diverged run in "
        "either arm is **inconclusive**. σ (and SAM's ρ) of each noisy method is chosen by mean validation accuracy "
        "over seeds; claims are judged on test metrics at that σ.")
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "measured", "computed", "not run at this scale")
Z = 1.6448536269514722  # the 1 − ALPHA quantile of the standard normal (judge_range)

Stat = tuple[float, float, int]  # (mean, standard error, seeds)


def mean_se(values) -> Stat:
    """Mean, standard error and count of the finite values (nan, nan, 0 if none)."""
    v = np.array([x if x is not None else np.nan for x in values], dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0), len(v)


def arm(run: dict) -> str:
    """The arm of a run record: ``params["arm"]`` if set, else its method."""
    return (run.get("params") or {}).get("arm", run["method"])


@dataclass(frozen=True)
class Sample:
    """A metric's final values in one arm, by seed: ``values[seed]`` (nan: the run diverged or lacks the
    metric), and ``duplicates``, seeds seen more than once (left out: they cannot be paired).

    Iterates (and indexes) as ``(mean, se, n)`` over the finite values, like :func:`mean_se`."""

    values: dict[int, float]
    duplicates: frozenset[int] = frozenset()

    @property
    def stat(self) -> Stat:
        return mean_se(list(self.values.values()))

    @property
    def diverged(self) -> bool:
        """Whether a run of this arm has no finite value (diverged, or the metric is missing)."""
        return any(not math.isfinite(v) for v in self.values.values())

    def __iter__(self):
        return iter(self.stat)

    def __getitem__(self, i):
        return self.stat[i]


EMPTY = Sample({})


def final_stats(results: dict, metric: str) -> dict[tuple[str, str, float], Sample]:
    """``{(variant, arm, sigma): Sample}`` of the final ``metric``, by seed.

    A diverged run, or one without ``metric``, counts as nan (so its arm's ``(mean, se, n)`` has
    ``n`` below its number of seeds, and the rule calls any claim on it inconclusive)."""
    groups: dict[tuple, dict[int, float]] = defaultdict(dict)
    dup: dict[tuple, set[int]] = defaultdict(set)
    for r in results["runs"]:
        key, seed = (r["variant"], arm(r), float(r["sigma"])), int(r["seed"])
        v = r["final"].get(metric)
        v = math.nan if r.get("diverged") or v is None else float(v)
        if seed in groups[key]:
            dup[key].add(seed)
        groups[key][seed] = v
    return {k: Sample({s: v for s, v in g.items() if s not in dup[k]}, frozenset(dup[k])) for k, g in groups.items()}


def resolution(results: dict, metric: str) -> float:
    """r of the rule: one example of the split an accuracy is measured on (``1/N`` from
    ``results["sizes"]``), 0 for continuous metrics; 0 as well for results that record no sizes."""
    split = metric.removesuffix("_acc") if metric.endswith("_acc") else None
    n = (results.get("sizes") or {}).get(split) if split else None
    return 1.0 / n if n else 0.0


@dataclass(frozen=True)
class Paired:
    """The rule's numbers for one claim (see the module docstring): pairs ``n``, mean difference ``mean``
    (positive: A better), ``se``, the quantile ``t``, the interval ``[low, high]``, the resolution
    ``r``, the margin ``delta`` (None for "beats"), ``diverged``, and the ``verdict``."""

    n: int
    mean: float
    se: float
    t: float
    low: float
    high: float
    r: float
    delta: float | None
    diverged: bool
    verdict: str

    def text(self, scale: float = 100.0, unit: str = " pts") -> str:
        """``"paired d̄ = +0.84 pts, [L, U] = [+0.66, +1.02] (n=3, t=2.92, α=0.05, r=0.02, δ=0.5)"``."""
        if self.diverged:
            return "paired: a run diverged"
        if self.n == 0:
            return "paired: no seed in both arms"
        f = (lambda x: f"{scale * x:+.2f}") if unit == " pts" else (lambda x: f"{scale * x:+.4g}")
        extra = "" if self.delta is None else f", δ={scale * self.delta:g}"
        if self.n == 1:   # no spread from one pair: no interval (its bounds would read nan)
            return f"paired d̄ = {f(self.mean)}{unit} (n=1: one pair, no interval; α={ALPHA:g}, r={scale * self.r:.3g}{extra})"
        return (f"paired d̄ = {f(self.mean)}{unit}, [L, U] = [{f(self.low)}, {f(self.high)}] (n={self.n}, t={self.t:.2f}, "
                f"α={ALPHA:g}, r={scale * self.r:.3g}{extra})" + self.excluded(scale, unit))

    def excluded(self, scale: float = 100.0, unit: str = " pts") -> str:
        """What an inconclusive comparison still excludes, one-sided at 1 − α (the bounds of [L, U]):
        ``"; an effect above +1.32 pts is excluded at 95 %"`` for "A beats B"; for "A at least matches B"
        ``"; A behind B by more than 1.46 pts is excluded at 95 %"``. Empty for any other verdict, and
        where there is no interval (fewer than 2 pairs, a diverged run)."""
        if self.verdict != "inconclusive" or self.diverged or self.n < 2 or not math.isfinite(self.high):
            return ""
        level = f"{100 * (1 - ALPHA):g} %"
        f = (lambda x: f"{scale * x:.2f}") if unit == " pts" else (lambda x: f"{scale * x:.4g}")
        if self.delta is not None:
            return f"; A behind B by more than {f(-self.low)}{unit} is excluded at {level}"
        return f"; an effect above {'+' if self.high >= 0 else ''}{f(self.high)}{unit} is excluded at {level}"


def paired(a: Sample, b: Sample, *, at_least: bool = False, lower_is_better: bool = False, r: float = 0.0,
           delta: float = MARGIN, min_pairs: int = MIN_PAIRS) -> Paired:
    """The rule on "A beats B" (``at_least``: "A at least matches B" within ``delta``), paired by seed.

    Args:
        a, b: the arms' :class:`Sample` s (from :func:`final_stats`).
        at_least: non-inferiority instead of superiority.
        lower_is_better: A is better with a smaller value (a Hessian trace, say): d_s = B_s − A_s.
        r: the metric's resolution (:func:`resolution`), r >= 0.
        delta: the non-inferiority margin (default :data:`MARGIN`).
        min_pairs: pairs needed for a decision (default :data:`MIN_PAIRS`).

    Example:
        >>> a, b = Sample({0: 0.95, 1: 0.96, 2: 0.97}), Sample({0: 0.94, 1: 0.95, 2: 0.96})
        >>> paired(a, b).verdict, paired(a, b, r=0.01).verdict  # +1 point on every seed: SE = 0
        ('reproduced', 'inconclusive')
    """
    if not isinstance(a, Sample) or not isinstance(b, Sample):
        raise TypeError(f"paired needs two Samples (from final_stats), got {type(a).__name__} and {type(b).__name__}")
    seeds = sorted(set(a.values) & set(b.values))
    d = np.array([(b.values[s] - a.values[s]) if lower_is_better else (a.values[s] - b.values[s]) for s in seeds])
    diverged = a.diverged or b.diverged
    n = len(d) if not diverged else int(np.isfinite(d).sum())
    if diverged or n < 2:
        mean = float(d.mean()) if n and not diverged else math.nan
        return Paired(n, mean, math.nan, math.nan, math.nan, math.nan, r, delta if at_least else None, diverged,
                      "inconclusive")
    from scipy.stats import t as student_t

    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
    t = float(student_t.ppf(1 - ALPHA, n - 1))
    low, high = mean - t * se, mean + t * se
    bar = -delta if at_least else r  # compared with a tolerance EPS: one example's difference is r up to rounding
    if n < min_pairs:
        verdict = "inconclusive"
    elif low > bar + EPS:
        verdict = "reproduced"
    elif high < -(delta if at_least else r) - EPS:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return Paired(n, mean, se, t, low, high, r, delta if at_least else None, diverged, verdict)


def decide(a: Sample, b: Sample, **kwargs) -> str:
    """The verdict of :func:`paired` (same arguments).

    Example:
        >>> decide(Sample({0: 0.95, 1: 0.97, 2: 0.96}), Sample({0: 0.94, 1: 0.95, 2: 0.94}))
        'reproduced'
        >>> decide(Sample({0: 0.95, 1: 0.97}), Sample({0: 0.90, 1: 0.91}))  # two pairs
        'inconclusive'
    """
    return paired(a, b, **kwargs).verdict


def decide_all(verdicts: list[str]) -> str:
    """One verdict for a claim made of several comparisons that must all hold: ``not reproduced``
    if any is, ``reproduced`` if all are (and there is one), else ``inconclusive``."""
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "reproduced" if verdicts and all(v == "reproduced" for v in verdicts) else "inconclusive"


def judge_range(value: float, low: float = -math.inf, high: float = math.inf, se: float = 0.0, *,
                computed: bool = False) -> str:
    """The verdict on "the estimate ``value`` (standard error ``se``) lies in [low, high]".

    **reproduced** when [value − z·se, value + z·se] (z = :data:`Z`) lies inside [low, high], **not reproduced**
    when it lies wholly outside, else **inconclusive**; a nan ``value`` or ``se`` (a slope fitted on fewer than
    two points, say) is **inconclusive**. ``computed``: the value is a closed form's (``se`` 0), so agreement
    reads **computed** instead of reproduced.

    Example:
        >>> judge_range(1.02, 0.9, 1.1, se=0.01), judge_range(1.02, 0.9, 1.1, se=0.1), judge_range(0.5, 0.9, 1.1)
        ('reproduced', 'inconclusive', 'not reproduced')
    """
    if value is None or se is None or not math.isfinite(value) or not se >= 0:
        return "inconclusive"   # nan, None, or a negative/nan standard error: nothing to decide on
    lo, hi = value - Z * se, value + Z * se
    if low <= lo and hi <= high:
        return "computed" if computed else "reproduced"
    if hi < low or lo > high:
        return "not reproduced"
    return "inconclusive"


def every_seed(values, holds, min_seeds: int = MIN_PAIRS) -> str:
    """The verdict on a claim that must hold on every seed (noisy GD reaching a minimiser to 5 %, say): ``values``
    one number per seed (a dict by seed, or a list), ``holds(value) -> bool`` the claim on one.

    **inconclusive** with fewer than ``min_seeds`` values (default :data:`MIN_PAIRS`, like the paired rule) or a nan
    among them (a diverged run); else **reproduced** if it holds on every seed, **not reproduced** if not.

    Example:
        >>> ok = lambda e: e <= 0.05
        >>> every_seed([0.01, 0.02, 0.03], ok), every_seed([0.01, 0.2, 0.03], ok), every_seed([0.01], ok)
        ('reproduced', 'not reproduced', 'inconclusive')
    """
    v = list(values.values()) if isinstance(values, dict) else list(values)
    if len(v) < min_seeds or any(x is None or not math.isfinite(x) for x in v):
        return "inconclusive"
    return "reproduced" if all(holds(x) for x in v) else "not reproduced"


def across_seeds(verdicts: list[str], min_seeds: int = MIN_PAIRS) -> str:
    """One verdict from one per seed (a slope fitted on each seed's runs, say): **not run at this scale** if every
    seed's is, **inconclusive** with fewer than ``min_seeds`` seeds (default :data:`MIN_PAIRS`), **computed** if every
    seed's is, else :func:`decide_all` of them (one seed not reproduced refutes; every seed reproduced confirms).

    Example:
        >>> across_seeds(["reproduced"] * 3), across_seeds(["reproduced"]), across_seeds(["reproduced", "not reproduced", "reproduced"])
        ('reproduced', 'inconclusive', 'not reproduced')
    """
    if verdicts and all(v == "not run at this scale" for v in verdicts):
        return "not run at this scale"
    if len(verdicts) < min_seeds:
        return "inconclusive"
    if all(v == "computed" for v in verdicts):
        return "computed"
    return decide_all(verdicts)


def fmt(stat: Stat, scale: float = 100.0, unit: str = "%") -> str:
    """``"97.12 ± 0.31% (3 seeds)"`` for accuracies; with ``unit=""`` 4 significant digits (nan: ``"diverged"``;
    one seed has no error bar: ``"97.12 ± n/a% (1 seed)"``)."""
    m, se, n = stat
    if not math.isfinite(m):
        return "diverged"
    seeds = f" ({n} seed{'s' if n != 1 else ''})"
    if unit == "%":
        return f"{scale * m:.2f} ± {'n/a' if n < 2 else f'{scale * se:.2f}'}%{seeds}"
    return f"{scale * m:.4g} ± {'n/a' if n < 2 else f'{scale * se:.2g}'}{unit}{seeds}"
