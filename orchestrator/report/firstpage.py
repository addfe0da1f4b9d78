"""The HTML report's first page: which accelerator and toolkit is fastest, by how much, how sure.

A run's series (``series.of_run``: a job's K runs, each figure's mean and 95% interval) are grouped by
accelerator (vendor, device model), toolkit and precision; each group is shown by its best series (the
highest mean p_infer_core over hosts, devices and batch sizes), so a run of many jobs gives a few rows.
Hosts sum the best series of each of their devices. Ratios are to one baseline: a row of this run, or the
best row of a baseline file (``compare.load_baseline``; "reference": the reference table).
"""

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from orchestrator.host import monitor
from orchestrator.metrics.interval import Interval
from orchestrator.outcome import JobState
from orchestrator.report import compare as cmp
from orchestrator.report.load import JobData, ReportError, RunData, dig
from orchestrator.report.series import Series
from orchestrator.report.svg import Panel, XYPoint, fmt

CORE, WHOLE = "p_infer_core", "p_infer_whole"
#: the throughputs the first page ranks and plots
FIGURES = (CORE, WHOLE)
#: --versus's value that names the reference table
REFERENCE = "reference"


def model_of(job: JobData) -> str:
    """The device model its figures were taken on: the host's SMI, else the runner's device name."""
    found = job.derived.device_model if job.derived is not None else None
    return found or dig(job.result, "environment", "device", "name") or "unknown"


@dataclass
class Row:
    """One accelerator, toolkit and precision: its best series, and that series' figures."""

    vendor: str
    model: str
    toolkit: str
    precision: str
    best: Series
    #: the group's series by batch size, each the best at that size (the batch-size plot's points)
    by_bs: Dict[int, Series] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "%s %s · %s %s" % (self.vendor, self.model, self.toolkit, self.precision)

    @property
    def where(self) -> str:
        """host, device and batch size of the best series."""
        spec = self.best.jobs[0].job["spec"] or {}
        return "%s d%s bs %s" % (self.best.jobs[0].job["host"], spec.get("device"), spec.get("batch_size"))

    def interval(self, key: str) -> Optional[Interval]:
        return self.best.interval(key)

    def _figures(self, name: str) -> List[Any]:
        """The device monitor's figure ``name`` (``monitor.figure``) of each of the best series' runs that has
        it."""
        found = (monitor.figure(j.samples, name) for j in self.best.jobs if j.samples)
        return [value for value in found if value is not None]

    def monitored(self, name: str) -> Optional[float]:
        """The device monitor's figure ``name`` (mean_power_w, ...) over the window the job's figures were
        measured under, averaged over the best series' runs."""
        values = [float(v) for v in self._figures(name) if isinstance(v, (int, float))]
        return sum(values) / len(values) if values else None

    def throttle(self) -> Optional[Dict[str, float]]:
        """Each throttle reason's share of the samples (the device monitor's), averaged over the best series'
        runs that read the reasons; None where none did."""
        found = [shares for shares in self._figures("throttle") if isinstance(shares, dict)]
        names = sorted({name for shares in found for name in shares})
        return {n: sum(float(s.get(n, 0.0)) for s in found) / len(found) for n in names} if found else None


def _core(item: Series) -> float:
    interval = item.interval(CORE)
    return interval.mean if interval is not None else -1.0


def rows(found: Sequence[Series]) -> List[Row]:
    """One row per (vendor, device model, toolkit, precision) with figures, fastest first."""
    groups: Dict[Tuple[str, str, str, str], Row] = {}
    for item in found:
        first = next((job for job in item.jobs if job.ok), None)
        if first is None or item.interval(CORE) is None:
            continue
        spec = first.job["spec"] or {}
        key = (first.job["vendor"], model_of(first), first.toolkit(), spec.get("precision", "?"))
        row = groups.setdefault(key, Row(*key, best=item))
        if _core(item) > _core(row.best):
            row.best = item
        bs = int(spec.get("batch_size") or 0)
        if bs not in row.by_bs or _core(item) > _core(row.by_bs[bs]):
            row.by_bs[bs] = item
    return sorted(groups.values(), key=lambda row: -_core(row.best))


def setting(item: Series) -> str:
    """ "pytorch fp32 bs 4": what a series ran."""
    spec = item.jobs[0].job["spec"] or {}
    return "%s %s bs %s" % (item.jobs[0].toolkit(), spec.get("precision"), spec.get("batch_size"))


@dataclass
class HostRow:
    """A host: the sum over its devices of each device's best series."""

    host: str
    vendor: str
    devices: List[Tuple[str, Series]]

    def total(self, key: str) -> Tuple[Optional[float], Optional[float], Optional[float]]:
        """(sum of means, sum of lows, sum of highs); a sum is None where a device lacks it."""
        found = [item.interval(key) for _, item in self.devices]
        if not found or any(i is None for i in found):
            return None, None, None
        intervals = [i for i in found if i is not None]
        lows, highs = [i.low for i in intervals], [i.high for i in intervals]
        return (
            sum(i.mean for i in intervals),
            None if None in lows else sum(v for v in lows if v is not None),
            None if None in highs else sum(v for v in highs if v is not None),
        )


def host_rows(found: Sequence[Series]) -> List[HostRow]:
    """Per host with figures: each device's best series."""
    best: Dict[Tuple[str, str], Series] = {}
    vendors: Dict[str, str] = {}
    for item in found:
        first = next((job for job in item.jobs if job.ok), None)
        if first is None or item.interval(CORE) is None:
            continue
        where = (first.job["host"], str((first.job["spec"] or {}).get("device")))
        vendors[where[0]] = first.job["vendor"]
        if where not in best or _core(item) > _core(best[where]):
            best[where] = item
    hosts: Dict[str, HostRow] = {}
    for (host, device), item in best.items():
        hosts.setdefault(host, HostRow(host, vendors[host], [])).devices.append(("d" + device, item))
    return list(hosts.values())


@dataclass
class Baseline:
    """What ratios are to: its name and its p_infer_core (an interval where it is a row of this run)."""

    name: str
    core: float
    interval: Optional[Interval] = None


def baseline(found: List[Row], versus: Optional[str]) -> Optional[Baseline]:
    """The baseline ``versus`` names: "reference" or a baseline file (its fastest row), or a row of this run
    (its label, or a unique part of it); None given: the slowest row. ReportError: no such row."""
    if not found:
        return None
    if versus is None:
        chosen = found[-1]
    elif versus == REFERENCE or os.path.isfile(versus):
        side = cmp.load_baseline(str(cmp.REFERENCE_BASELINE) if versus == REFERENCE else versus)
        entries = [e for e in side.entries if e.figures.get(CORE) is not None]
        if not entries:
            raise ReportError("--versus %s: no row with %s" % (versus, CORE))
        top = max(entries, key=lambda e: e.figures[CORE] or 0.0)
        name = "%s: %s %s %s bs %s" % (side.name, top.where, top.key[1], top.key[2], top.key[3])
        return Baseline(name, top.figures[CORE] or 0.0)
    else:
        matches = [row for row in found if row.label == versus] or [
            row for row in found if versus.lower() in row.label.lower()
        ]
        if len(matches) != 1:
            raise ReportError(
                "--versus %s: %s; give %s, a baseline file or one of: %s"
                % (versus, "no row matches" if not matches else "several rows match", REFERENCE,
                   "; ".join(row.label for row in found))
            )  # fmt: skip
        chosen = matches[0]
    core = chosen.interval(CORE)
    assert core is not None
    return Baseline("%s (%s)" % (chosen.label, chosen.where), core.mean, core)


def ratio(interval: Optional[Interval], base: Optional[Baseline]) -> str:
    """ "1.83× (1.79 .. 1.88)": mean over the baseline's mean, in brackets the interval ends over the other
    side's (the ratio's bounds when both intervals hold), "" without a baseline."""
    if interval is None or base is None or base.core <= 0:
        return ""
    text = times(interval.mean / base.core) + "×"
    low, high = interval.low, interval.high
    if base.interval is not None and base.interval.low is not None and base.interval.high is not None:
        if low is not None and high is not None and base.interval.low > 0:
            return text + " (%s .. %s)" % (times(low / base.interval.high), times(high / base.interval.low))
        return text
    if low is not None and high is not None:
        return text + " (%s .. %s)" % (times(low / base.core), times(high / base.core))
    return text


def times(value: float) -> str:
    """A ratio: two decimals, or three significant digits below 0.1 ("1.83", "0.000312")."""
    return "%.2f" % value if value >= 0.1 else fmt(value)


def shown(interval: Optional[Interval]) -> str:
    """ "12,699 (12,650 .. 12,748, K = 3)", "157 (K = 1: no interval)", or "unknown"."""
    if interval is None:
        return "unknown"
    if interval.low is None or interval.high is None:
        return "%s (K = 1: no interval)" % fmt(interval.mean)
    return "%s (%s .. %s, K = %d)" % (fmt(interval.mean), fmt(interval.low), fmt(interval.high), interval.k)


def percent(interval: Optional[Interval]) -> str:
    """MFU's mean as a percentage, "/" where no peak is known."""
    return "/" if interval is None else "%.1f%%" % (100 * interval.mean)


def device_else_node(row: Row, device_key: str, node_key: str) -> str:
    """The device monitor's figure ``device_key``, else the host monitor's ``node_key`` (its mean), each
    saying which it is; "/" where neither was measured."""
    device = row.monitored(device_key)
    if device is not None:
        return "%s (device)" % fmt(device)
    node = row.interval(node_key)
    return "/" if node is None else "%s (node)" % fmt(node.mean)


def watts(row: Row) -> str:
    """The device's mean power (device monitor) with its SM clock and throttle reasons where sampled, else
    the node's (host monitor); over the window the figures were measured under (the infer stage's passes,
    an MLPerf job's LoadGen runs)."""
    shown = (
        device_else_node(row, "mean_power_w", "node_power_w"),
        clocks(row.monitored("mean_sm_clock_mhz"), row.throttle()),
    )
    return "; ".join(part for part in shown if part)


def clocks(sm_mhz: Optional[float], throttle: Optional[Mapping[str, float]]) -> str:
    """ "SM 1755 MHz; SwPowerCap 94% of samples" (reasons most often active first; "no throttle reason"
    where they were read and none was active); "" where neither was sampled."""
    parts = [] if sm_mhz is None else ["SM %.0f MHz" % sm_mhz]
    if throttle is not None:
        ranked = sorted(throttle.items(), key=lambda item: (-item[1], item[0]))
        seen = ", ".join("%s %.0f%%" % (name, 100 * share) for name, share in ranked)
        parts.append(seen + " of samples" if seen else "no throttle reason")
    return "; ".join(parts)


def joules(row: Row) -> str:
    """Energy per image over the same window as ``watts``: the device's, else the node's."""
    return device_else_node(row, "energy_j_per_img", "node_j_per_img")


def summed(total: Tuple[Optional[float], Optional[float], Optional[float]]) -> str:
    """A host's sum with the sums of its devices' interval ends."""
    mean, low, high = total
    if mean is None:
        return "unknown"
    return fmt(mean) + ("" if low is None or high is None else " (%s .. %s)" % (fmt(low), fmt(high)))


def verdict(found: List[Row], base: Optional[Baseline]) -> str:
    """The first page's answer in one sentence: the fastest row, its figure, by how much over the baseline
    (or the runner-up) and whether the 95% intervals tell them apart."""
    if not found:
        return "No job stored figures: nothing to rank (see the jobs below)."
    top = found[0]
    core = top.interval(CORE)
    assert core is not None
    text = "Fastest: %s on %s, p_infer_core %s img/s." % (top.label, top.where, shown(core))
    other = base
    if base is None or base.name.startswith(top.label + " ("):
        other = None if len(found) < 2 else baseline(found, found[1].label)
    if other is None:
        return text + " It is the only accelerator and toolkit in the run."
    text += " %s the p_infer_core of %s." % (ratio(core, other), other.name)
    if other.interval is None:
        return text + " How sure: the baseline is a table's figure, without interval."
    if core.low is None or other.interval.high is None:
        return text + " How sure: no interval (K = 1; runs: 3 or more in the case gives one)."
    if core.low > other.interval.high:
        return text + " How sure: the 95% intervals do not overlap: it is faster."
    return text + " How sure: the 95% intervals overlap: no clear difference."


def sweep_lines(found: List[Row], key: str = CORE) -> List[Tuple[str, List[XYPoint]]]:
    """Per row that ran more than one batch size: ``key``'s mean and interval at each size."""
    lines = []
    for row in found:
        if len(row.by_bs) < 2:
            continue
        points: List[XYPoint] = []
        for bs, item in sorted(row.by_bs.items()):
            interval = item.interval(key)
            if interval is not None:
                points.append((float(bs), interval.mean, interval.low, interval.high))
        lines.append((row.label, points))
    return lines


def monitor_panels(found: List[Row], key: str) -> List[Panel]:
    """Per row whose best series' first monitored run stored samples of ``key`` (power_w,
    utilization_pct): its values over seconds from the first sample, the runner's stage windows shaded."""
    panels: List[Panel] = []
    for row in found:
        job = next((j for j in row.best.jobs if j.samples and j.samples.get("samples")), None)
        if job is None or job.samples is None:
            continue
        points = [
            (float(s["t"]), float(s[key]))
            for s in job.samples["samples"]
            if isinstance(s, dict) and _number(s.get("t")) and _number(s.get(key))
        ]
        if not points:
            continue
        origin = points[0][0]
        windows = job.samples.get("windows") or {}
        spans = [
            (name, w[0] - origin, w[1] - origin)
            for name, w in windows.items()
            if isinstance(w, list) and len(w) == 2 and all(isinstance(v, (int, float)) for v in w)
        ]
        panels.append((row.label, [(key, [(t - origin, v) for t, v in points])], spans))
    return panels


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def duration(seconds: Optional[float]) -> str:
    """ "15 min 3 s", "42.1 s", "never started"."""
    if seconds is None:
        return "never started"
    if seconds < 60:
        return "%.1f s" % seconds
    minutes, rest = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return ("%d h %d min" % (hours, minutes)) if hours else "%d min %d s" % (minutes, rest)


def job_summary(data: RunData) -> List[Tuple[str, int, str]]:
    """Per stored state: how many jobs, and the time they ran in all (honest for the cancelled too)."""
    states: Dict[str, List[Optional[float]]] = {}
    for job in data.jobs:
        states.setdefault(job.job["state"], []).append(job.seconds())
    order = [JobState.OK] + sorted(s for s in states if s != JobState.OK)
    return [
        (state, len(states[state]), duration(sum(s for s in states[state] if s is not None)))
        for state in order
        if state in states
    ]
