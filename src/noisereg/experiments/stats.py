"""Summary statistics of results.json runs, and the rule that turns them into verdicts.

Used by the experiments' claims and by the report. A run's *arm* is what a comparison is about:
its method, or ``params["arm"]`` where one method is run two ways (``"sam_half"``: SAM with half
the steps, the equal-compute comparison).

The verdict rule (:data:`RULE`, stated in every report): a claim that arm A beats arm B is
``reproduced`` when mean(A) − mean(B) exceeds ``Z = 2`` combined standard errors
``√(se_A² + se_B²)`` (each the standard error of the mean over seeds) with at least
``MIN_SEEDS = 3`` seeds in each arm; ``not reproduced`` when the difference exceeds that in the
other direction; ``inconclusive`` otherwise, and whenever an arm has fewer seeds or diverged. A
claim that A *at least matches* B is ``not reproduced`` only when B beats A by more than the
band, else ``reproduced`` (with the seeds). Experiments add ``measured`` (no claim, a number)
and ``not run at this scale``.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

Z = 2.0
MIN_SEEDS = 3
RULE = (f"a difference in the claimed direction larger than {Z:g} combined standard errors "
        f"(√(se₁² + se₂²), standard errors of the mean over seeds) with at least {MIN_SEEDS} seeds per arm is "
        "**reproduced**; larger than that in the other direction, **not reproduced**; anything else "
        "(or fewer seeds, or a diverged arm) **inconclusive**. \"At least matches\" claims are not reproduced "
        "only when the other arm wins by more than the band. σ (and SAM's ρ) of each noisy method is chosen "
        "by mean validation accuracy over seeds; claims are judged on test metrics at that σ.")
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "measured", "not run at this scale")

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


def final_stats(results: dict, metric: str) -> dict[tuple[str, str, float], Stat]:
    """``{(variant, arm, sigma): (mean, se, n)}`` of the final ``metric`` over seeds.

    A diverged run, or one without ``metric``, counts as nan (so a group with a diverged seed has
    ``n`` below its number of seeds)."""
    groups = defaultdict(list)
    for r in results["runs"]:
        groups[(r["variant"], arm(r), float(r["sigma"]))].append(
            math.nan if r.get("diverged") else r["final"].get(metric))
    return {k: mean_se(v) for k, v in groups.items()}


def decide(a: Stat, b: Stat, *, at_least: bool = False, lower_is_better: bool = False, z: float = Z,
           min_seeds: int = MIN_SEEDS) -> str:
    """The verdict on "A beats B" (``at_least``: "A at least matches B") from their (mean, se, n), by :data:`RULE`.
    ``lower_is_better``: A beats B by a smaller mean (a Hessian trace, say).

    Example:
        >>> decide((0.95, 0.002, 3), (0.94, 0.002, 3))
        'reproduced'
        >>> decide((0.95, 0.01, 3), (0.94, 0.01, 3))
        'inconclusive'
        >>> decide((0.95, 0.002, 2), (0.90, 0.002, 2))
        'inconclusive'
    """
    (ma, sa, na), (mb, sb, nb) = a, b
    if lower_is_better:
        ma, mb = -ma, -mb
    if min(na, nb) < min_seeds or not all(math.isfinite(x) for x in (ma, sa, mb, sb)):
        return "inconclusive"
    band = z * math.hypot(sa, sb)
    if mb - ma > band:
        return "not reproduced"
    if at_least or ma - mb > band:
        return "reproduced"
    return "inconclusive"


def decide_all(verdicts: list[str]) -> str:
    """One verdict for a claim made of several comparisons that must all hold: ``not reproduced``
    if any is, ``reproduced`` if all are (and there is one), else ``inconclusive``."""
    if "not reproduced" in verdicts:
        return "not reproduced"
    return "reproduced" if verdicts and all(v == "reproduced" for v in verdicts) else "inconclusive"


def fmt(stat: Stat, scale: float = 100.0, unit: str = "%") -> str:
    """``"97.12 ± 0.31% (3 seeds)"`` for accuracies; with ``unit=""`` 4 significant digits (nan: ``"diverged"``)."""
    m, se, n = stat
    if not math.isfinite(m):
        return "diverged"
    seeds = f" ({n} seed{'s' if n != 1 else ''})"
    if unit == "%":
        return f"{scale * m:.2f} ± {scale * se:.2f}%{seeds}"
    return f"{scale * m:.4g} ± {scale * se:.2g}{unit}{seeds}"
