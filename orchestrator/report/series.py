"""A stored run's jobs grouped into series: the K runs of one job (``runs: K``, ``plan.Job.series``), each
figure over the runs that stored figures as its mean, 95% interval and CV (``metrics.interval``).

A job stored before runs existed, or whose spec cannot be read, is a series of its own.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from orchestrator.metrics import table
from orchestrator.metrics.interval import Interval, over_runs
from orchestrator.report.load import JobData, RunData

#: the figures the results-style tables (terminal, Markdown, HTML) show over runs: those compare judges;
#: JSON and CSV give every row of the metric table
SHOWN = tuple(metric for metric in table.METRICS if metric.compare)


@dataclass
class Series:
    """The runs of one job: the ``asked`` runs' jobs as stored, and each figure over those with figures."""

    series: str
    jobs: List[JobData]
    asked: int
    #: metric key -> its interval over the runs that stored it (rows no run has are left out)
    intervals: Dict[str, Interval]

    @property
    def k(self) -> int:
        """The runs that stored figures."""
        return sum(1 for job in self.jobs if job.ok)

    def label(self) -> str:
        """How tables and plots name the series: the first run's label."""
        return self.jobs[0].label()

    def plot_label(self) -> str:
        """The label with K, as the plots name the series."""
        return "%s (K = %d)" % (self.label(), self.k)

    def shortfall(self) -> str:
        """ "2 of 3 runs stored figures" where some of the runs asked gave none, else ""."""
        return "" if self.k == self.asked else "%d of %d runs stored figures" % (self.k, self.asked)

    def interval(self, key: str) -> Optional[Interval]:
        return self.intervals.get(key)


def of_run(data: RunData) -> List[Series]:
    """The run's series in job order (the order of each series' first run)."""
    grouped: Dict[str, List[JobData]] = {}
    for job in data.jobs:
        spec = job.job["spec"] or {}
        grouped.setdefault(spec.get("series") or job.job_id, []).append(job)
    out = []
    for series, jobs in grouped.items():
        spec = jobs[0].job["spec"] or {}
        derived = [job.derived for job in jobs if job.ok and job.derived is not None]
        intervals = {}
        for metric in table.METRICS:
            values = [d.figure(metric.key) for d in derived]
            interval = over_runs([v for v in values if v is not None])
            if interval is not None:
                intervals[metric.key] = interval
        out.append(Series(series, jobs, max(spec.get("runs") or 1, len(jobs)), intervals))
    return out


def any_repeated(series: Sequence[Series]) -> bool:
    """Whether any series asked for more than one run."""
    return any(s.asked > 1 for s in series)


#: the over-runs table's columns (terminal, Markdown, HTML)
COLUMNS: Sequence[Tuple[str, str]] = (
    ("job", "job (host, device, tool, precision, bs)"),
    ("figure", "figure"),
    ("k", "K"),
    ("mean", "mean"),
    ("interval", "95% interval"),
    ("cv", "CV"),
)
#: the CSV's columns: raw numbers, the unit its own column
CSV_COLUMNS: Sequence[Tuple[str, str]] = (
    ("series", "series"),
    ("figure", "figure"),
    ("unit", "unit"),
    ("k", "K"),
    ("asked", "runs asked"),
    ("mean", "mean"),
    ("low", "95% low"),
    ("high", "95% high"),
    ("cv", "CV"),
    ("values", "per run"),
)

NO_INTERVAL = "K = 1: no interval"


def rows(series: Sequence[Series], metrics: Sequence[table.Metric] = SHOWN) -> List[Dict[str, str]]:
    """One row per series and figure, as the reports show them: the mean, the interval and the CV in the
    figure's own format; a series without figures says why."""
    out = []
    for item in series:
        if not item.intervals:
            out.append({"job": item.label(), "figure": "-", "k": "0", "mean": item.shortfall() or "-"})
            continue
        for metric in metrics:
            interval = item.interval(metric.key)
            if interval is None:
                continue
            if interval.low is None or interval.high is None:
                shown, cv = NO_INTERVAL, NO_INTERVAL
            else:
                shown = "%s .. %s" % (metric.show(interval.low), metric.show(interval.high))
                cv = "unknown" if interval.cv is None else "%.2g%%" % (100 * interval.cv)
            out.append(
                {
                    "job": item.label(),
                    "figure": metric.label(),
                    "k": "%d" % interval.k + (" (%s)" % item.shortfall() if item.shortfall() else ""),
                    "mean": metric.show(interval.mean),
                    "interval": shown,
                    "cv": cv,
                }
            )
    return out


def _number(value: Optional[float]) -> str:
    return "" if value is None else repr(value)


def csv_rows(series: Sequence[Series]) -> List[Dict[str, str]]:
    """One row per series and figure of every row of the metric table, raw numbers (an empty cell where K
    = 1 gives none); the per-run values joined by ";"."""
    return [
        {
            "series": item.series,
            "figure": metric.key,
            "unit": metric.unit,
            "k": str(interval.k),
            "asked": str(item.asked),
            "mean": _number(interval.mean),
            "low": _number(interval.low),
            "high": _number(interval.high),
            "cv": _number(interval.cv),
            "values": ";".join(repr(v) for v in interval.values),
        }
        for item in series
        for metric in table.METRICS
        if (interval := item.interval(metric.key)) is not None
    ]


def as_document(series: Sequence[Series]) -> Dict[str, object]:
    """The series as JSON-ready data: per series its runs' job ids, K, the runs asked and every figure's
    interval."""
    return {
        item.series: {
            "jobs": [job.job_id for job in item.jobs],
            "runs_asked": item.asked,
            "k": item.k,
            "figures": {
                key: {
                    "k": interval.k,
                    "mean": interval.mean,
                    "low": interval.low,
                    "high": interval.high,
                    "cv": interval.cv,
                    "values": list(interval.values),
                }
                for key, interval in item.intervals.items()
            },
        }
        for item in series
    }


def legend(series: Sequence[Series]) -> str:
    """What the over-runs table shows, and that K = 1 gives no interval."""
    counts = sorted({item.k for item in series if item.intervals})
    single = " K = 1 gives no interval (runs: 3 or more in the case gives one)." if 1 in counts else ""
    return (
        "Over runs: each job ran K times, each a fresh runner process (K = %s); mean, 95%% interval of the "
        "mean (Student t, K - 1 degrees of freedom), CV = sample std / mean.%s"
        % (", ".join(str(k) for k in counts) or "0", single)
    )
