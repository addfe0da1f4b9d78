"""The Server scenario's target QPS, found by search: from a first target, double while runs are good,
halve while they are not, then bisect between the highest good and the lowest bad target, until they are
within a tolerance or the runs are spent. The answer is the highest good target run, never one between."""

from typing import Callable, List, NamedTuple, Optional


class Point(NamedTuple):
    """One Server run of the search: its target QPS, whether it was good, and what the run gave back."""

    qps: float
    good: bool
    run: object


def find_peak(measure: Callable[[float], Point], start: float, runs: int, tolerance: float) -> List[Point]:
    """The runs made, in order: ``measure(qps)`` for at most ``runs`` targets, starting at ``start``."""
    points: List[Point] = []
    good: Optional[float] = None  # the highest good target so far
    bad: Optional[float] = None  # the lowest bad target so far
    qps = start
    for _ in range(runs):
        point = measure(qps)
        points.append(point)
        if point.good:
            good = qps if good is None else max(good, qps)
        else:
            bad = qps if bad is None else min(bad, qps)
        if good is not None and bad is not None:
            if bad - good <= tolerance * bad:
                break
            qps = (good + bad) / 2
        else:
            qps = qps * 2 if bad is None else qps / 2
    return points


def best(points: List[Point]) -> Optional[Point]:
    """The good run of the highest target, or None when none was good."""
    good = [point for point in points if point.good]
    return max(good, key=lambda point: point.qps) if good else None
