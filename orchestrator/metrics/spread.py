"""How a figure spreads over its samples (metrics.md "Spread"): over the R passes of a stage, each pass's
whole figure is one sample.

``Spread`` is the frozen record the derived figures carry per figure that has one (``Derived.spreads``);
``of`` makes it from the samples. CV = sample standard deviation (n - 1) / mean; one sample has none.
"""

import statistics
from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class Spread:
    """A figure's ``n`` samples: their median, min, max and coefficient of variation (None where n < 2: one
    sample has no spread, never a spread of 0)."""

    n: int
    median: float
    min: float
    max: float
    cv: Optional[float]

    def compact(self, samples: str) -> str:
        """The spread as the results table shows it beside the figure: "±0.83%" (the CV), or
        "(R = 1: no spread)" with ``samples`` the letter that counts them."""
        if self.cv is None:
            return "(%s = %d: no spread)" % (samples, self.n)
        return "±%.2g%%" % (100 * self.cv)


def of(samples: Sequence[float]) -> Optional[Spread]:
    """The spread of ``samples`` (None where there is none to take)."""
    if not samples:
        return None
    mean = statistics.fmean(samples)
    cv = statistics.stdev(samples) / mean if len(samples) >= 2 and mean > 0 else None
    return Spread(len(samples), statistics.median(samples), min(samples), max(samples), cv)
