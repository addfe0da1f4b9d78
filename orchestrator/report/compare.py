"""Put two runs, or a run and a baseline file, side by side: both figures and their ratio.

Rows pair by (case, toolkit, precision, batch size), in job order where a key repeats. Paired rows
must share their measuring conditions (the data set, its preprocessing, the precision in detail and
the metric version); where any differs the comparison is refused, naming every field, unless forced.
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from orchestrator.metrics import table
from orchestrator.metrics.table import Metric
from orchestrator.report.load import JobData, ReportError, RunData, dig
from orchestrator.safeio import bounded
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

#: case, toolkit, precision, batch size, and the scenario where it is an MLPerf one
Key = Tuple[str, ...]


@dataclass
class Entry:
    """One side of a comparison row: where it ran, its pairing key, figures and conditions."""

    where: str
    key: Key
    figures: Dict[str, Optional[float]]
    conditions: Dict[str, Any]


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
        "precision.val": dig(result, "stages", STAGE_VAL, "precision"),
        "precision.infer_input": infer.get("input_dtype"),
        "metric_version": derived.metric_version or dig(result, "metric_version"),
    }
    for name in ("resize", "crop", "mean", "std"):
        conditions["preprocessing." + name] = dig(result, "data", "preprocessing", name)
    key: Key = (spec["case"], spec["toolkit"], spec["precision"], str(spec["batch_size"]))
    key += (spec["scenario"],) if spec.get("scenario", "flagperf") != "flagperf" else ()  # an MLPerf scenario
    where = "%s d%s %s" % (job.job["host"], spec["device"], derived.device_model or "")
    return Entry(where.strip(), key, {m.key: derived.figure(m.key) for m in FIGURES}, conditions)


def run_side(data: RunData) -> Side:
    """The jobs of a run that stored figures."""
    return Side("run %s" % data.run_id, [_job_entry(job) for job in data.ok_jobs()])


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


def compare(a: Side, b: Side, force: bool) -> Comparison:
    """Pair the entries; ReportError naming the differing fields unless ``force``."""
    pool: Dict[Key, List[Entry]] = {}
    for entry in b.entries:
        pool.setdefault(entry.key, []).append(entry)
    pairs, only_a = [], []
    for entry in a.entries:
        partners = pool.get(entry.key)
        if partners:
            pairs.append((entry, partners.pop(0)))
        else:
            only_a.append(entry)
    only_b = [entry for entry in b.entries if any(entry is e for e in pool.get(entry.key, []))]
    if not pairs:
        raise ReportError(
            "%s and %s have no row in common (rows pair by case, toolkit, precision and batch size)"
            % (a.name, b.name)
        )
    differences: List[str] = []
    for left, right in pairs:
        for name in CONDITIONS:
            one, two = left.conditions.get(name), right.conditions.get(name)
            text = "%s (%s vs %s)" % (name, _show(one), _show(two))
            if one != two and text not in differences:
                differences.append(text)
    if differences and not force:
        raise ReportError(
            "%s and %s are not comparable: %s differ; --force puts them side by side anyway"
            % (a.name, b.name, "; ".join(differences))
        )
    return Comparison(a, b, pairs, only_a, only_b, differences)


def _quotient(one: Optional[float], two: Optional[float]) -> Optional[float]:
    """one / two, or None where either is unknown or the quotient is no finite number."""
    if one is None or two is None or two == 0:
        return None
    quotient = one / two
    return quotient if math.isfinite(quotient) else None


def _ratio(one: Optional[float], two: Optional[float]) -> str:
    quotient = _quotient(one, two)
    return "-" if quotient is None else "%.3f" % quotient


def _better(metric: Metric, one: Optional[float], two: Optional[float]) -> str:
    """Which side's figure is the better ("A", "B"), or "" where they are equal or one is unknown."""
    if one is None or two is None or one == two:
        return ""
    return "A" if (one > two) == metric.higher_is_better else "B"


COLUMNS: Sequence[Tuple[str, str]] = (
    ("case", "case"),
    ("tool", "tool"),
    ("precision", "precision"),
    ("bs", "bs"),
    ("figure", "figure"),
    ("a", "A"),
    ("b", "B"),
    ("ratio", "A/B"),
    ("better", "better"),
)


def rows(comparison: Comparison) -> List[Dict[str, str]]:
    """One row per pair and figure: both values and A/B."""
    out = []
    for left, right in comparison.pairs:
        case, tool, precision, bs = left.key
        for metric in FIGURES:
            one, two = left.figures.get(metric.key), right.figures.get(metric.key)
            out.append(
                {
                    "case": case,
                    "tool": tool,
                    "precision": precision,
                    "bs": bs,
                    "figure": metric.label(),
                    "a": metric.show(one),
                    "b": metric.show(two),
                    "ratio": _ratio(one, two),
                    "better": _better(metric, one, two),
                }
            )
    return out


def notes(comparison: Comparison) -> List[str]:
    """What a reader must know besides the table: the sides, forced differences, unpaired rows."""
    lines = ["A = %s; B = %s" % (comparison.a.name, comparison.b.name)]
    for left, right in comparison.pairs:
        lines.append("%s: A on %s, B on %s" % (" ".join(left.key), left.where, right.where))
    if comparison.differences:
        lines.append("forced despite differences: " + "; ".join(comparison.differences))
    for side, entries in (("A", comparison.only_a), ("B", comparison.only_b)):
        for entry in entries:
            lines.append("only in %s: %s on %s" % (side, " ".join(entry.key), entry.where))
    return lines


def as_document(comparison: Comparison) -> Dict[str, Any]:
    """The comparison as JSON-ready data."""
    return {
        "a": comparison.a.name,
        "b": comparison.b.name,
        "differences": comparison.differences,
        "pairs": [
            {
                "key": dict(zip(("case", "toolkit", "precision", "bs"), left.key)),
                "a": {"where": left.where, "figures": left.figures, "conditions": left.conditions},
                "b": {"where": right.where, "figures": right.figures, "conditions": right.conditions},
                "ratio": {
                    m.key: _quotient(left.figures.get(m.key), right.figures.get(m.key)) for m in FIGURES
                },
            }
            for left, right in comparison.pairs
        ],
        "only_a": [" ".join(e.key) for e in comparison.only_a],
        "only_b": [" ".join(e.key) for e in comparison.only_b],
    }
