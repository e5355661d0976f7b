"""Fair paired timing for the benchmarks: a method against its reference only, never in between others.

How a ratio is measured (:func:`paired`):

1. warm-up: ``warmup`` calls of each (allocator, caches, lazy initialisation);
2. calibration: each function is called ``calls`` times per timing, enough for one timing to last
   at least ``min_seconds`` (20 ms by default), so a call of a few ms is not lost in timer noise;
3. ``pairs`` pairs: the method timed right next to its reference, alternating which goes first
   (even pairs: method first; odd pairs: reference first), so neither one always runs on the
   caches the other left behind;
4. the ratio is the median over pairs of (method time per call / reference time per call), given
   with its spread: quartiles and min-max over the pairs.

Long methods (Hutchinson, brute force) get their own :func:`paired` block with the reference;
they are never timed between the reference and a short method.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Paired:
    """Per-pair ratios of a method's time to its reference's, and the per-call times (seconds)."""

    ratios: tuple[float, ...]
    method_s: tuple[float, ...]
    reference_s: tuple[float, ...]
    calls: tuple[int, int]  # calls per timing: (method, reference)

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def quartiles(self) -> tuple[float, float]:
        q = statistics.quantiles(self.ratios, n=4, method="inclusive")
        return q[0], q[2]

    @property
    def method_ms(self) -> float:
        return 1e3 * statistics.median(self.method_s)

    @property
    def reference_ms(self) -> float:
        return 1e3 * statistics.median(self.reference_s)

    def describe(self) -> str:
        """``2.31 (IQR 2.25-2.40, range 2.10-2.60, 15 pairs)``."""
        q1, q3 = self.quartiles
        return (f"{self.median:.3f} (IQR {q1:.3f}-{q3:.3f}, range {min(self.ratios):.3f}-{max(self.ratios):.3f}, "
                f"{len(self.ratios)} pairs)")

    def as_dict(self) -> dict:
        q1, q3 = self.quartiles
        return {"median": self.median, "q1": q1, "q3": q3, "min": min(self.ratios), "max": max(self.ratios),
                "pairs": len(self.ratios), "method_ms": self.method_ms, "reference_ms": self.reference_ms,
                "calls": list(self.calls)}


def _timed(fn: Callable[[], object], calls: int, sync: Callable[[], None]) -> float:
    sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    sync()
    return (time.perf_counter() - t0) / calls


def paired(method: Callable[[], object], reference: Callable[[], object], *, pairs: int = 15, warmup: int = 2,
           min_seconds: float = 0.02, sync: Callable[[], None] = lambda: None) -> Paired:
    """Time ``method`` against ``reference`` in ``pairs`` alternating pairs; see the module docstring."""
    if pairs < 3:
        raise ValueError(f"pairs must be >= 3, got {pairs}")
    for _ in range(warmup):
        method()
        reference()
    calls = tuple(max(1, math.ceil(min_seconds / max(_timed(f, 1, sync), 1e-9))) for f in (method, reference))
    m_s, r_s = [], []
    for i in range(pairs):
        if i % 2 == 0:
            m_s.append(_timed(method, calls[0], sync))
            r_s.append(_timed(reference, calls[1], sync))
        else:
            r_s.append(_timed(reference, calls[1], sync))
            m_s.append(_timed(method, calls[0], sync))
    return Paired(tuple(m / r for m, r in zip(m_s, r_s)), tuple(m_s), tuple(r_s), calls)
