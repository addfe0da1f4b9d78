"""A figure over the K runs of a job (metrics.md "Spread"): the mean, the 95% confidence interval of the mean
(Student t, K - 1 degrees of freedom) and the CV; and what two such figures say about each other.

Two figures differ "beyond noise" when their 95% intervals do not overlap, else they are "within noise";
where either side is a single run (no interval) no claim is made, and ``runs_to_tell`` estimates how many
runs each side would need for a difference of the size seen to show.
"""

import math
import statistics
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

#: the two-sided 95% quantile of Student's t, t(0.975, df), for df = 1 .. 30 (beyond: the expansion below)
T_975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
#: the normal's 97.5% quantile
Z_975 = 1.959964
#: the most runs ``runs_to_tell`` proposes: beyond it, say that runs will not tell
MAX_PROPOSED_RUNS = 30

#: what a comparison of two figures says
BETTER, WORSE, WITHIN_NOISE, CANNOT_TELL = "better", "worse", "within noise", "cannot tell"


def t_975(df: int) -> float:
    """Student's t two-sided 95% quantile for ``df`` >= 1 degrees of freedom (the table, then the
    Cornish-Fisher expansion around the normal, within 1e-4 for df > 30)."""
    if df < 1:
        raise ValueError("degrees of freedom: %d" % df)
    if df <= len(T_975):
        return T_975[df - 1]
    z = Z_975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    """A figure over ``k`` runs: their mean, the 95% interval of the mean and the CV (sample std / mean);
    None for the interval and the CV where k = 1 (one run gives none, never a width of 0)."""

    k: int
    mean: float
    low: Optional[float]
    high: Optional[float]
    cv: Optional[float]
    values: Tuple[float, ...]

    @property
    def half_width(self) -> Optional[float]:
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    def compact(self) -> str:
        """ "±1.2% (K = 3)": the interval's half width relative to the mean, or "(K = 1: no interval)"."""
        half = self.half_width
        if half is None:
            return "(K = %d: no interval)" % self.k
        relative = half / self.mean if self.mean else 0.0
        return "±%.2g%% (K = %d)" % (100 * relative, self.k)


def over_runs(values: Sequence[float]) -> Optional[Interval]:
    """The interval of one figure's values over the runs (None without any)."""
    if not values:
        return None
    k, mean = len(values), statistics.fmean(values)
    if k < 2:
        return Interval(k, mean, None, None, None, tuple(values))
    std = statistics.stdev(values)
    half = t_975(k - 1) * std / math.sqrt(k)
    cv = std / mean if mean > 0 else None
    return Interval(k, mean, mean - half, mean + half, cv, tuple(values))


def verdict(a: Interval, b: Interval, higher_is_better: bool) -> str:
    """What A's figure is against B's: BETTER or WORSE beyond noise (in the figure's own sense), WITHIN_NOISE
    where the intervals overlap, CANNOT_TELL where either is a single run."""
    if a.low is None or a.high is None or b.low is None or b.high is None:
        return CANNOT_TELL
    if a.low <= b.high and b.low <= a.high:
        return WITHIN_NOISE
    return BETTER if (a.mean > b.mean) == higher_is_better else WORSE


def runs_to_tell(difference: float, std: float) -> Optional[int]:
    """The fewest runs K per side (each with sample std ``std``) whose intervals would no longer overlap for
    a difference of the means of ``difference``: 2 x t(K - 1) x std / sqrt(K) < |difference|; None where
    no K up to MAX_PROPOSED_RUNS would (or nothing differs)."""
    if difference == 0 or std <= 0:
        return None if difference == 0 else 2
    for k in range(2, MAX_PROPOSED_RUNS + 1):
        if 2 * t_975(k - 1) * std / math.sqrt(k) < abs(difference):
            return k
    return None
