"""The two tables of a run: results (the reference columns) and environment (per host).

Rows are plain dicts of display strings built from the run as ``load.load_run`` read it (every cell typed,
an unreadable one shown as such); the figures' columns are the metric table's (``metrics.table``).
Renderers turn them into a rich table, Markdown, CSV or JSON. Every value comes from a stored capture: what
was not captured shows as "unknown", never a typed-in value. Display decides no state: a job's state is the
one stored.
"""

import csv
import html
import io
import json
from typing import Any, Dict, List, Sequence, Tuple

from orchestrator.metrics import table
from orchestrator.metrics.derived import Derived
from orchestrator.outcome import UNREADABLE
from orchestrator.report import series
from orchestrator.report.load import ReportError, RunData, gathered
from orchestrator.safeio.fit import FittedTable

UNKNOWN = "unknown"

#: the job's own columns before the figures, and after them
JOB_COLUMNS: Sequence[Tuple[str, str]] = (
    ("host", "host"),
    ("vendor", "vendor"),
    ("device", "device"),
    ("tool", "tool"),
    ("precision", "precision"),
    ("bs", "bs"),
    ("scenario", "scenario"),
    ("run", "run"),
)
STATE_COLUMN = ("state", "state")
#: the conditions the job ran under (host/conditions.py), after its state
CONDITIONS_COLUMN = ("conditions", "conditions")
#: what the conditions column shows for a job whose conditions were not checked (older store, Slurm)
NOT_CHECKED = "not checked"
#: the figures' columns (the metric table's, in its order)
FIGURE_COLUMNS = table.columns()
RESULT_COLUMNS: Sequence[Tuple[str, str]] = (
    tuple(JOB_COLUMNS)
    + tuple((column.key, column.title) for column in FIGURE_COLUMNS)
    + (STATE_COLUMN, CONDITIONS_COLUMN)
)
#: the run a row is of: the first column where the report gathers several runs (``load.gather``)
RUN_ID_COLUMN = ("run_id", "run id")
#: the letter that counts the samples of a spread over passes (metrics.md: R passes per stage)
PASSES = "R"
#: columns the results table shows only for a run where some job's cell differs from these: the
#: scenario, and the figures only some jobs have (``Metric.optional_column``)
OPTIONAL_COLUMNS: Dict[str, Tuple[str, ...]] = dict(
    [("scenario", ("flagperf",))]
    + [
        (c.key, ("/".join(m.absent for m in c.metrics), "-"))  # every figure absent; no figures at all
        for c in FIGURE_COLUMNS
        if all(m.optional_column for m in c.metrics)
    ]
)

ENV_COLUMNS: Sequence[Tuple[str, str]] = (
    ("host", "host"),
    ("machine", "machine / accelerator"),
    ("os", "OS"),
    ("kernel", "kernel"),
    ("driver", "driver"),
    ("docker", "docker"),
    ("image", "image (bundle)"),
    ("framework", "framework"),
    ("toolkit", "toolkit"),
    ("artefacts", "vendor's own artefacts"),
    ("python", "python"),
    ("cpu", "CPU"),
    ("memory", "memory"),
)


def figure_cell(column: table.Column, derived: Derived) -> str:
    """The cell of ``column`` for a job's figures: its rows' values joined by "/", marked "(n/m)" where the
    weights make them not meaningful."""
    text = "/".join(metric.show(derived.figure(metric.key)) for metric in column.metrics)
    flagged = any(metric.needs_meaningful_weights for metric in column.metrics)
    return text + " (n/m)" if flagged and not derived.acc_meaningful else text


def spread_cell(column: table.Column, derived: Derived) -> str:
    """The compact spread of ``column``'s rows over the passes ("±0.83%", "(R = 1: no spread)"), "" where
    none is stored."""
    spreads = [derived.spreads[m.key] for m in column.metrics if m.key in derived.spreads]
    return " ".join(spread.compact(PASSES) for spread in spreads)


#: what the marks in the results table's cells mean
MARKS = (
    "*: the reference's headline figures; /: none (no peak FLOP/s known for the device, so no MFU); "
    "(n/m): not meaningful (random or unverified weights); unknown: not captured; -: the job stored no "
    "figures (see state)"
)


def legend(data: RunData) -> str:
    """The results table's legend: its marks, then what the ± beside the figures means."""
    return " ".join(part for part in (MARKS + ".", spread_legend(data)) if part)


def spread_legend(data: RunData) -> str:
    """The line that says what the ± beside the figures means and over how many passes, or that one pass
    gives none; "" where no job stored a spread."""
    counts = {s.n for job in data.jobs if job.derived for s in job.derived.spreads.values()}
    if not counts:
        return ""
    keys = ", ".join(m.key for m in table.METRICS if m.per_pass)
    none = "%s = 1: no spread" % PASSES
    if counts == {1}:
        return "%s: %s (a spread over passes needs repeat 2 or more)." % (keys, none)
    return (
        "±: CV (sample std / mean) of %s over the stage's %s passes, one figure per pass (%s = %s); %s."
        % (
            keys,
            PASSES,
            PASSES,
            ", ".join(str(n) for n in sorted(counts - {1})),
            none,
        )
    )


def shown_columns(
    columns: Sequence[Tuple[str, str]], rows: Sequence[Dict[str, str]]
) -> List[Tuple[str, str]]:
    """``columns`` but each optional one (OPTIONAL_COLUMNS) whose cells in ``rows`` all say nothing."""
    return [
        (key, title)
        for key, title in columns
        if key not in OPTIONAL_COLUMNS or any(row.get(key) not in OPTIONAL_COLUMNS[key] for row in rows)
    ]


def result_rows(data: RunData) -> List[Dict[str, str]]:
    """One row per job of the run, in job order; failed jobs show their state and reason, a job with an
    unreadable stored cell says so. Each figure's cell carries its compact spread over passes."""
    rows = []
    for item in data.jobs:
        job, spec = item.job, item.job["spec"] or {}
        state, reason = job["state"], job["reason"]
        if item.unreadable:  # the stored state stays as stored; what it holds cannot be shown
            state, reason = "%s (stored %s)" % (UNREADABLE, state), item.unreadable
        row = {
            RUN_ID_COLUMN[0]: str(job.get("run_id") or ""),
            "host": job["host"],
            "vendor": job["vendor"],
            "device": str(spec.get("device", "?")),
            "tool": item.toolkit(),
            "precision": spec.get("precision", "?"),
            "bs": str(spec.get("batch_size", "?")),
            "scenario": spec.get("scenario") or "flagperf",  # older stores: flagperf, all there was
            "run": "%s/%s" % (spec.get("run") or 1, spec.get("runs") or 1) if spec else "?",
            "state": "%s: %s" % (state, reason) if reason else state,
            "conditions": item.conditions.summary() if item.conditions else NOT_CHECKED,
        }
        derived = item.derived
        for column in FIGURE_COLUMNS:
            if derived is None:
                row[column.key] = "-"
                continue
            row[column.key] = (figure_cell(column, derived) + " " + spread_cell(column, derived)).strip()
        rows.append(row)
    return rows


def with_run_id(data: RunData, columns: Sequence[Tuple[str, str]]) -> List[Tuple[str, str]]:
    """``columns``, led by the run id where ``data`` gathers several runs."""
    return ([RUN_ID_COLUMN] if gathered(data) else []) + list(columns)


def _runner_env(data: RunData) -> Dict[str, Dict[str, Any]]:
    """Host -> versions seen inside the container: framework (``versions``) and every toolkit used."""
    by_host: Dict[str, Dict[str, Any]] = {}
    for job in data.jobs:
        if job.result is None:
            continue
        env = job.result.get("environment") or {}
        entry = by_host.setdefault(job.job["host"], {"versions": env.get("versions", {}), "toolkits": {}})
        for toolkit, versions in (env.get("toolkits") or {}).items():
            if toolkit != "pytorch":  # the framework column shows torch itself
                entry["toolkits"][toolkit] = versions
    return by_host


def _artefacts(data: RunData) -> Dict[str, str]:
    """Host -> the vendor's own files its jobs ran (the result's ``artefacts``), each with its sha256; "none"
    where every graph and engine was made in the run, unknown where no job of the host left a result."""
    found: Dict[str, Dict[Tuple[str, str, str], None]] = {}
    for job in data.jobs:
        if job.result is None:
            continue
        given = found.setdefault(job.job["host"], {})
        for kind, artefact in sorted((job.result.get("artefacts") or {}).items()):
            if artefact:
                given[(kind, str(artefact.get("path")), str(artefact.get("sha256")))] = None
    return {
        host: "; ".join("%s %s sha256 %s" % key for key in given) or "none (made in the run)"
        for host, given in found.items()
    }


def _versions(env: Dict[str, Any], keys: Sequence[str]) -> str:
    parts = ["%s %s" % (k, env[k]) for k in keys if env.get(k)]
    return ", ".join(parts) if parts else UNKNOWN


def _image(env: Dict[str, Any]) -> str:
    """The image the host ran, its image stack (with pins and the toolkits it lacks) and, when it came from a
    bundle, that bundle's manifest sha256."""
    if env.get("runtime") == "bare":
        return "bare (no image)"
    image = env.get("image") or UNKNOWN
    image = "%s, stack %s" % (image, env["image_stack"]) if env.get("image_stack") else image
    return "%s (bundle %s)" % (image, env["bundle"]) if env.get("bundle") else image


def environment_rows(data: RunData) -> List[Dict[str, str]]:
    """One row per host: what the host's commands and the runner inside the container reported."""
    runner = _runner_env(data)
    artefacts = _artefacts(data)
    rows = []
    for host, env in data.environments.items():
        inside = runner.get(host, {}).get("versions", {})
        toolkits = runner.get(host, {}).get("toolkits", {})
        accelerators = env.get("accelerators") or []
        models = sorted({a["model"] for a in accelerators if a.get("model")})
        accel = ("%d x %s" % (len(accelerators), ", ".join(models))) if models else "no accelerator"
        rows.append(
            {
                "host": host,
                "machine": "%s (%s); %s"
                % (env.get("hostname") or UNKNOWN, env.get("arch") or UNKNOWN, accel),
                "os": env.get("os") or UNKNOWN,
                "kernel": env.get("kernel") or UNKNOWN,
                "driver": env.get("driver") or UNKNOWN,
                "docker": env.get("docker")
                or ("bare (no docker)" if env.get("runtime") == "bare" else UNKNOWN),
                "image": _image(env),
                "framework": _versions(inside, ("torch", "torchvision", "cuda", "cudnn")),
                "toolkit": "; ".join(
                    "%s (%s)" % (name, _versions(v, sorted(v))) for name, v in sorted(toolkits.items())
                )
                or UNKNOWN,
                "artefacts": artefacts.get(host, UNKNOWN),
                "python": inside.get("python") or UNKNOWN,
                "cpu": "%s x %s" % (env.get("cpu_count") or "?", env.get("cpu_model") or UNKNOWN),
                "memory": UNKNOWN if env.get("memory_gib") is None else "%.1f GiB" % env["memory_gib"],
            }
        )
    return rows


def md_cell(value: Any) -> str:
    """``value`` as the text of one Markdown table cell or list item: HTML escaped (``<script>``, ``onerror=``
    are shown, never run), the cell separator and line breaks written so that they cannot end the cell."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def as_markdown(rows: List[Dict[str, str]], columns: Sequence[Tuple[str, str]]) -> str:
    head = "| " + " | ".join(md_cell(title) for _, title in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(md_cell(row.get(key, "")) for key, _ in columns) + " |" for row in rows]
    return "\n".join([head, rule] + body) + "\n"


def as_csv(rows: List[Dict[str, str]], columns: Sequence[Tuple[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([key for key, _ in columns])
    for row in rows:
        writer.writerow([row.get(key, "") for key, _ in columns])
    return out.getvalue()


def json_text(document: Any) -> str:
    """``document`` as the JSON every report writes: indented, sorted, and never a bare NaN or Infinity
    (stored figures are read typed and cannot be one; a baseline's could: ReportError then)."""
    try:
        return json.dumps(document, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ValueError as exc:
        raise ReportError("the report would hold a figure that is no finite number (%s)" % exc) from None


def as_json(data: RunData) -> str:
    """The whole run as stored: jobs (with ``unreadable`` where a cell is), results with derived figures,
    environments, samples (the device's and the host's), and each figure's unit, title and definition; an
    unreadable cell's values are null."""
    return json_text(
        {
            "run": data.run,
            "jobs": [dict(job.job, unreadable=job.unreadable) for job in data.jobs],
            "results": {
                job.job_id: {"result": job.result, "derived": job.derived.as_stored()}
                for job in data.jobs
                if job.derived is not None
            },
            "metrics": {
                metric.key: {
                    "unit": metric.unit,
                    "title": metric.title,
                    "definition": metric.definition,
                    "higher_is_better": metric.higher_is_better,
                    "per_pass": metric.per_pass or None,
                }
                for metric in table.METRICS
            },
            "environments": data.environments,
            "samples": {job.job_id: job.samples for job in data.jobs if job.samples is not None},
            "host_samples": {
                job.job_id: job.host_samples for job in data.jobs if job.host_samples is not None
            },
            "conditions": {
                job.job_id: dict(job.conditions.as_stored(), busy=job.conditions.busy())
                for job in data.jobs
                if job.conditions is not None
            },
            "series": series.as_document(series.of_run(data)),
        }
    )


def rich_table(
    title: str, rows: Sequence[dict], columns: Sequence[Tuple[str, str]], caption: str = ""
) -> FittedTable:
    """A table of ``rows`` (dicts), one column per (key, heading) of ``columns``, that fits the width it is
    printed at (``fit.FittedTable``); ``caption`` under it."""
    return FittedTable(title, rows, columns, caption)
