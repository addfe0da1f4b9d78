"""CSV for tools: one table per file (``--table results|runs|environment``), raw numbers as stored (a float
written so that it reads back equal), the unit in each figure's header, an empty cell where a figure is
unknown.
"""

from typing import Dict, List, Optional, Sequence

from orchestrator.metrics import table
from orchestrator.model import options
from orchestrator.outcome import UNREADABLE
from orchestrator.report import series, tables
from orchestrator.report.load import RunData

TABLES = ("results", "runs", "environment")

#: the job's own columns of the results table
JOB_COLUMNS = (
    "job_id", "series", "run", "runs", "host", "vendor", "device", "case", "toolkit", "toolkit_options",
    "precision", "batch_size", "decoder", "scenario", "state", "reason", "conditions", "acc_meaningful",
)  # fmt: skip
#: the parts of a spread over passes, each a column "<key>_<part>"
SPREAD_PARTS = ("n", "median", "min", "max", "cv")


def unit(metric: table.Metric, part: str = "") -> str:
    """The unit a column of ``metric`` (or of a part of its spread) holds: a count, a ratio or the row's."""
    if part == "n":
        return ""
    if part == "cv" or not metric.unit:
        return "ratio"
    return metric.unit


def heading(metric: table.Metric, part: str = "") -> str:
    """ "p_infer_core [img/s]", "p_infer_whole_cv [ratio]", "p_infer_whole_n"."""
    name = "%s_%s" % (metric.key, part) if part else metric.key
    shown = unit(metric, part)
    return "%s [%s]" % (name, shown) if shown else name


def number(value: Optional[float]) -> str:
    """A figure as it reads back equal (``repr``), or "" where unknown."""
    return "" if value is None else repr(float(value))


RESULT_COLUMNS: Sequence[str] = (
    tuple(JOB_COLUMNS)
    + tuple(heading(metric) for metric in table.METRICS)
    + tuple(heading(m, part) for m in table.METRICS if m.per_pass for part in SPREAD_PARTS)
)


def result_rows(data: RunData) -> List[Dict[str, str]]:
    """One row per job: what it was, its state and conditions, each figure and each spread over passes."""
    rows = []
    for item in data.jobs:
        job, spec = item.job, item.job["spec"] or {}
        state = "%s (stored %s)" % (UNREADABLE, job["state"]) if item.unreadable else job["state"]
        row = {
            tables.RUN_ID_COLUMN[0]: str(job.get("run_id") or ""),
            "job_id": job["job_id"],
            "series": spec.get("series") or job["job_id"],
            "run": str(spec.get("run") or 1),
            "runs": str(spec.get("runs") or 1),
            "host": job["host"],
            "vendor": job["vendor"],
            "device": str(spec.get("device", "")),
            "case": spec.get("case", ""),
            "toolkit": spec.get("toolkit", ""),
            "toolkit_options": options.shown(item.options()),
            "precision": spec.get("precision", ""),
            "batch_size": str(spec.get("batch_size", "")),
            "decoder": spec.get("decoder", ""),
            "scenario": spec.get("scenario") or "flagperf",
            "state": state,
            "reason": item.unreadable or job["reason"] or "",
            "conditions": item.conditions.summary() if item.conditions else tables.NOT_CHECKED,
        }
        derived = item.derived
        if derived is not None:
            row["acc_meaningful"] = "true" if derived.acc_meaningful else "false"
            for metric in table.METRICS:
                row[heading(metric)] = number(derived.figure(metric.key))
                spread = derived.spreads.get(metric.key)
                for part in SPREAD_PARTS if metric.per_pass and spread is not None else ():
                    value = getattr(spread, part)
                    row[heading(metric, part)] = str(value) if part == "n" else number(value)
        rows.append(row)
    return rows


def render(data: RunData, which: str) -> str:
    """The table ``which`` (one of TABLES) of the run as CSV."""
    if which == "runs":
        return tables.as_csv(series.csv_rows(series.of_run(data)), series.CSV_COLUMNS)
    if which == "environment":
        return tables.as_csv(tables.environment_rows(data), tables.ENV_COLUMNS)
    columns = tables.with_run_id(data, [(name, name) for name in RESULT_COLUMNS])
    return tables.as_csv(result_rows(data), [(key, key) for key, _ in columns])
