"""Summary statistics of results.json runs (used by experiments' claims and by the report)."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np


def mean_se(values) -> tuple[float, float, int]:
    """Mean, standard error and count of the finite values (nan, nan, 0 if none)."""
    v = np.array([x if x is not None else np.nan for x in values], dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), (float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else 0.0), len(v)


def final_stats(results: dict, metric: str) -> dict[tuple[str, str, float], tuple[float, float, int]]:
    """``{(variant, method, sigma): (mean, se, n)}`` of the final ``metric`` over seeds (diverged runs count as nan)."""
    groups = defaultdict(list)
    for r in results["runs"]:
        groups[(r["variant"], r["method"], float(r["sigma"]))].append(
            math.nan if r.get("diverged") else r["final"].get(metric))
    return {k: mean_se(v) for k, v in groups.items()}
