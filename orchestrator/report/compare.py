"""Put two runs, or a run and a baseline file, side by side: both figures, their ratio and what the noise
lets one say about them (metrics.md "Spread": beyond noise where the 95% intervals over runs do not overlap).

A run's side has one entry per series (a job's K runs: the mean of each figure and its interval). Entries
pair by (case, toolkit, precision, batch size, scenario, toolkit options), or the fields ``--pair-by``
names (leave out toolkit to put toolkits side by side, options to put one toolkit's settings side by side),
in job order where a key repeats; an entry pairs with itself (a run compared with itself) only where no
other entry has its key. Paired entries must share their measuring conditions (the data set, its
preprocessing, the precision in detail and the metric version); where any differs the comparison is
refused, naming every field, unless forced.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from orchestrator.metrics import interval as noise
from orchestrator.metrics import table
from orchestrator.metrics.interval import Interval
from orchestrator.metrics.table import NOT_RUN, Metric
from orchestrator.model import options as toolkit_options
from orchestrator.report import series as runs
from orchestrator.report.load import JobData, ReportError, RunData, dig
from orchestrator.safeio import bounded
from runner_in_container.contract import STAGE_CHOICES
from runner_in_container.protocol import STAGE_INFER, STAGE_VAL

BASELINE_FORMAT = "rn50bench.baseline/1"
#: a baseline is a table of figures: the shipped one is 6 KiB
MAX_BASELINE_BYTES = 16 << 20
#: the reference table shipped with the package
REFERENCE_BASELINE = Path(__file__).resolve().parent / "baselines" / "flagperf_reference.json"

#: compared figures: the metric table's rows that compare shows (MFU in both conventions: a baseline from the
#: reference has only the second)
FIGURES: Sequence[Metric] = tuple(metric for metric in table.METRICS if metric.compare)

#: the conditions under which figures are comparable
CONDITIONS = (
    "data.n_images",
    "data.layout",
    "data.md5",
    "data.images_counted",
    "preprocessing.resize",
    "preprocessing.crop",
    "preprocessing.mean",
    "preprocessing.std",
    "preprocessing.method",
    "precision.val",
    "precision.infer_input",
    "metric_version",
)

#: conditions of the val stage, which a job may not run (stages: [infer]; NOT_RUN): compared where both ran it
VAL_CONDITIONS = ("precision.val",)

#: case, toolkit, precision, batch size, then the scenario and the toolkit options (``options.shown``)
#: where they are not their defaults (``KEY_DEFAULTS``: a key ends at its last field that is not)
Key = Tuple[str, ...]
#: the fields of ``Key``, which ``--pair-by`` chooses from
KEY_FIELDS = ("case", "toolkit", "precision", "bs", "scenario", "options")
#: what a key's field is where the key ends before it: flagperf, no options
KEY_DEFAULTS: Key = ("", "", "", "", "flagperf", "")


def make_key(case: str, toolkit: str, precision: str, bs: object, scenario: str, options: str) -> Key:
    """The key of these fields, ending at its last field that is not its default."""
    key: Key = (case, toolkit, precision, str(bs), scenario, options)
    while len(key) > 4 and key[-1] == KEY_DEFAULTS[len(key) - 1]:
        key = key[:-1]
    return key


def full_key(key: Key) -> Key:
    """``key`` with every field of KEY_FIELDS, those it leaves out at their defaults."""
    return key + KEY_DEFAULTS[len(key) :]


def key_words(key: Key) -> List[str]:
    """How the reports name an entry's key: case, the toolkit with its options ("cudnn_fused
    (cudnn_fused_benchmark=1)"), precision, batch size, and an MLPerf scenario."""
    case, toolkit, precision, bs, scenario, options = full_key(key)
    mlperf = [scenario] if scenario != KEY_DEFAULTS[4] else []
    return [case, toolkit_options.named(toolkit, options), precision, bs] + mlperf


@dataclass
class Entry:
    """One side of a comparison row: where it ran, its pairing key, figures (a series' means) and
    conditions, and each figure's interval over the runs (none for a baseline's figure)."""

    where: str
    key: Key
    figures: Dict[str, Optional[float]]
    conditions: Dict[str, Any]
    intervals: Dict[str, Interval] = field(default_factory=dict)
    #: the stored series it is ("RUN_ID/SERIES"; "" for a baseline's row): no entry pairs with itself
    origin: str = ""


@dataclass
class Side:
    """A run or a baseline as a list of entries."""

    name: str
    entries: List[Entry]


@dataclass
class Comparison:
    """Paired entries, the unpaired ones, and the condition fields that differ (forced past)."""

    a: Side
    b: Side
    pairs: List[Tuple[Entry, Entry]]
    only_a: List[Entry]
    only_b: List[Entry]
    differences: List[str] = field(default_factory=list)
    #: the key fields entries paired by
    pair_by: Sequence[str] = KEY_FIELDS


def _series_entry(run_id: str, item: runs.Series) -> Entry:
    """A series as one entry: its first run with figures for the conditions, its means and intervals."""
    first = next(job for job in item.jobs if job.ok)
    entry = _job_entry(first)
    entry.intervals = {m.key: i for m in FIGURES if (i := item.interval(m.key)) is not None}
    entry.figures = {m.key: (i.mean if (i := entry.intervals.get(m.key)) else None) for m in FIGURES}
    entry.origin = "%s/%s" % (run_id, item.series)
    return entry


def _job_entry(job: JobData) -> Entry:
    result, derived, spec = job.result, job.derived, job.job["spec"]
    assert derived is not None
    infer = dig(result, "stages", STAGE_INFER) or {}
    passes = infer.get("passes")
    conditions = {
        "data.n_images": dig(result, "data", "n_images"),
        "data.layout": dig(result, "data", "layout"),
        "data.md5": dig(result, "data", "md5"),
        "data.images_counted": infer["images"] // passes if passes else None,
        "preprocessing.method": dig(result, "data", "resize"),
        "precision.val": dig(result, "stages", STAGE_VAL, "precision") if _val_ran(result) else NOT_RUN,
        "precision.infer_input": infer.get("input_dtype"),
        "metric_version": derived.metric_version or dig(result, "metric_version"),
    }
    for name in ("resize", "crop", "mean", "std"):
        conditions["preprocessing." + name] = dig(result, "data", "preprocessing", name)
    scenario = spec.get("scenario") or KEY_DEFAULTS[4]
    shown = toolkit_options.shown(job.options())
    key = make_key(spec["case"], spec["toolkit"], spec["precision"], spec["batch_size"], scenario, shown)
    where = "%s d%s %s" % (job.job["host"], spec["device"], derived.device_model or "")
    return Entry(where.strip(), key, {m.key: derived.figure(m.key) for m in FIGURES}, conditions)


def _val_ran(result: Any) -> bool:
    """Whether the job ran its val stage (not so with stages: [infer])."""
    return STAGE_VAL in (dig(result, "config", "stages") or STAGE_CHOICES[0]).split(",")


def run_side(data: RunData) -> Side:
    """The series of a run that stored figures, one entry each."""
    entries = [_series_entry(data.run_id, item) for item in runs.of_run(data) if item.k]
    return Side("run %s" % data.run_id, entries)


def load_baseline(path: str) -> Side:
    """A baseline file, read within bounds (safeio/bounded.py: a regular file of at most MAX_BASELINE_BYTES,
    JSON not nested deeper than its bound); ReportError naming the file and field when it is not one."""
    try:
        doc = bounded.load_file(path, MAX_BASELINE_BYTES)
    except (OSError, bounded.Refused) as exc:
        said = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ReportError("%s: cannot read a baseline: %s" % (path, said)) from None
    if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
        raise ReportError("%s: format: expected %r" % (path, BASELINE_FORMAT))
    common = _mapping(path, "conditions", doc.get("conditions"))
    rows = doc.get("rows") or []
    if not isinstance(rows, list):
        raise ReportError("%s: rows: expected a list" % path)
    entries = []
    for index, row in enumerate(rows):
        where = "rows[%d]" % index
        try:
            key = (row["case"], row["toolkit"], row["precision"], str(row["bs"]))
            figures = {m.key: row["figures"].get(m.key) for m in FIGURES}
        except (KeyError, TypeError, AttributeError) as exc:
            raise ReportError("%s: %s: missing field %s" % (path, where, exc)) from None
        for name, value in figures.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ReportError("%s: %s.figures.%s: expected a number, got %r" % (path, where, name, value))
        conditions = {name: common.get(name) for name in CONDITIONS}
        conditions.update(_mapping(path, where + ".conditions", row.get("conditions")))
        entries.append(
            Entry("%s %s" % (row.get("vendor", ""), row.get("device", "")), key, figures, conditions)
        )
    if not entries:
        raise ReportError("%s: rows: no row" % path)
    return Side(str(doc.get("name") or path), entries)


def _mapping(path: str, field_name: str, value: Any) -> Dict[str, Any]:
    """``value`` when it is a JSON object (or absent: empty); ReportError naming the field otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ReportError("%s: %s: expected an object" % (path, field_name))
    return value


def _show(value: Any) -> str:
    return (
        "unknown" if value is None else json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    )


def compare(a: Side, b: Side, force: bool, pair_by: Sequence[str] = KEY_FIELDS) -> Comparison:
    """Pair the entries by the key fields ``pair_by``; ReportError naming the differing fields unless
    ``force``."""
    unknown = sorted(set(pair_by) - set(KEY_FIELDS))
    if unknown or not pair_by:
        raise ReportError(
            "--pair-by: %s: give some of %s" % (", ".join(unknown) or "nothing", ",".join(KEY_FIELDS))
        )

    def key(entry: Entry) -> Tuple[str, ...]:
        return tuple(part for name, part in zip(KEY_FIELDS, full_key(entry.key)) if name in pair_by)

    pool: Dict[Tuple[str, ...], List[Entry]] = {}
    for entry in b.entries:
        pool.setdefault(key(entry), []).append(entry)
    pairs, only_a = [], []
    for entry in a.entries:
        partners = pool.get(key(entry), [])
        partner = next((p for p in partners if not _same(entry, p)), partners[0] if partners else None)
        if partner is not None:
            pairs.append((entry, partner))
            partners.remove(partner)
        else:
            only_a.append(entry)
    only_b = [entry for entries in pool.values() for entry in entries]
    if not pairs:
        raise ReportError(
            "%s and %s have no row in common (rows pair by %s)" % (a.name, b.name, ", ".join(pair_by))
        )
    differences: List[str] = []
    for left, right in pairs:
        for name in CONDITIONS:
            one, two = left.conditions.get(name), right.conditions.get(name)
            if name in VAL_CONDITIONS and NOT_RUN in (one, two):
                continue
            text = "%s (%s vs %s)" % (name, _show(one), _show(two))
            if one != two and text not in differences:
                differences.append(text)
    if differences and not force:
        raise ReportError(
            "%s and %s are not comparable: %s differ; --force puts them side by side anyway"
            % (a.name, b.name, "; ".join(differences))
        )
    return Comparison(a, b, pairs, only_a, only_b, differences, tuple(pair_by))


def _same(one: Entry, two: Entry) -> bool:
    """Whether two entries are one stored series (a run compared with itself, toolkits side by side)."""
    return bool(one.origin) and one.origin == two.origin


def _quotient(one: Optional[float], two: Optional[float]) -> Optional[float]:
    """one / two, or None where either is unknown or the quotient is no finite number."""
    if one is None or two is None or two == 0:
        return None
    quotient = one / two
    return quotient if math.isfinite(quotient) else None


def _ratio(one: Optional[float], two: Optional[float]) -> str:
    quotient = _quotient(one, two)
    return "-" if quotient is None else "%.3f" % quotient


def verdict(metric: Metric, left: Entry, right: Entry) -> str:
    """What A's figure is against B's, from their intervals over runs: "A better" / "A worse" beyond noise
    (in the figure's own sense), "within noise", or that single runs cannot tell and how many runs would;
    "" where a figure is unknown."""
    one, two = left.intervals.get(metric.key), right.intervals.get(metric.key)
    if left.figures.get(metric.key) is None or right.figures.get(metric.key) is None:
        return ""
    if one is not None and two is not None:
        said = noise.verdict(one, two, metric.higher_is_better)
        if said in (noise.BETTER, noise.WORSE):
            return "A %s (beyond noise)" % said
        if said == noise.WITHIN_NOISE:
            return said
    single = [name for name, i in (("A", one), ("B", two)) if i is None or i.cv is None]
    said = "%s: %s %s one run" % (noise.CANNOT_TELL, " and ".join(single), "are each" if single[1:] else "is")
    return said + "; " + _runs_hint(left.figures[metric.key], right.figures[metric.key], one, two)


def _runs_hint(a: Optional[float], b: Optional[float], *intervals: Optional[Interval]) -> str:
    """How many runs a side would need for the difference seen to show beyond noise, from the spread of a
    side that has one."""
    spreads = [i.cv * i.mean for i in intervals if i is not None and i.cv is not None]
    if a is None or b is None:
        return "runs: 3 or more on both sides"
    if not spreads:
        return "runs: 3 or more on both sides would give intervals"
    needed = noise.runs_to_tell(a - b, max(spreads))
    if needed is None:
        return "no number of runs up to %d would tell a difference this small" % noise.MAX_PROPOSED_RUNS
    return "about %d runs on both sides would tell a difference this size" % max(needed, 3)


COLUMNS: Sequence[Tuple[str, str]] = (
    ("case", "case"),
    ("tool", "tool"),
    ("precision", "precision"),
    ("bs", "bs"),
    ("figure", "figure"),
    ("a", "A"),
    ("b", "B"),
    ("ratio", "A/B"),
    ("verdict", "A vs B"),
)


def rows(comparison: Comparison) -> List[Dict[str, str]]:
    """One row per pair and figure: both values and A/B."""
    out = []
    for left, right in comparison.pairs:
        case, tool, precision, bs = key_words(left.key)[:4]
        other = key_words(right.key)[1]
        if tool != other:
            tool = "%s vs %s" % (tool, other)
        for metric in FIGURES:
            one, two = left.figures.get(metric.key), right.figures.get(metric.key)
            out.append(
                {
                    "case": case,
                    "tool": tool,
                    "precision": precision,
                    "bs": bs,
                    "figure": metric.label(),
                    "a": _shown(metric, one, left.intervals.get(metric.key)),
                    "b": _shown(metric, two, right.intervals.get(metric.key)),
                    "ratio": _ratio(one, two),
                    "verdict": verdict(metric, left, right),
                }
            )
    return out


def _shown(metric: Metric, value: Optional[float], interval: Optional[Interval]) -> str:
    """A side's figure with its interval's compact form where it has one."""
    if value is None or interval is None:
        return metric.show(value)
    return "%s %s" % (metric.show(value), interval.compact())


def notes(comparison: Comparison) -> List[str]:
    """What a reader must know besides the table: the sides, forced differences, unpaired rows."""
    lines = ["A = %s; B = %s" % (comparison.a.name, comparison.b.name)]
    lines.append(
        "A and B: the mean over each job's K runs, ± the 95%% interval's half width; beyond noise: the 95%% "
        "intervals do not overlap; rows pair by %s" % ", ".join(comparison.pair_by)
    )
    for left, right in comparison.pairs:
        lines.append("%s: A on %s, B on %s" % (" ".join(key_words(left.key)), left.where, right.where))
    if comparison.differences:
        lines.append("forced despite differences: " + "; ".join(comparison.differences))
    for side, entries in (("A", comparison.only_a), ("B", comparison.only_b)):
        for entry in entries:
            lines.append("only in %s: %s on %s" % (side, " ".join(key_words(entry.key)), entry.where))
    return lines


def _side_document(entry: Entry) -> Dict[str, Any]:
    return {
        "where": entry.where,
        "key": dict(zip(KEY_FIELDS, entry.key)),
        "figures": entry.figures,
        "intervals": {
            key: {"k": i.k, "mean": i.mean, "low": i.low, "high": i.high, "cv": i.cv}
            for key, i in entry.intervals.items()
        },
        "conditions": entry.conditions,
    }


def as_document(comparison: Comparison) -> Dict[str, Any]:
    """The comparison as JSON-ready data: per pair both sides' figures with their intervals, the ratio and
    the verdict of each figure."""
    return {
        "a": comparison.a.name,
        "b": comparison.b.name,
        "pair_by": list(comparison.pair_by),
        "differences": comparison.differences,
        "pairs": [
            {
                "key": dict(zip(KEY_FIELDS, left.key)),
                "a": _side_document(left),
                "b": _side_document(right),
                "ratio": {
                    m.key: _quotient(left.figures.get(m.key), right.figures.get(m.key)) for m in FIGURES
                },
                "verdict": {m.key: verdict(m, left, right) for m in FIGURES},
            }
            for left, right in comparison.pairs
        ],
        "only_a": [" ".join(key_words(e.key)) for e in comparison.only_a],
        "only_b": [" ".join(key_words(e.key)) for e in comparison.only_b],
    }
