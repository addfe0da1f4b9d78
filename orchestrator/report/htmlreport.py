"""The HTML report: one self-contained file (inline CSS and SVG, no script, nothing fetched)."""

import time
from pathlib import Path
from typing import Any, Dict, Optional

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from orchestrator.report import compare as cmp
from orchestrator.report import figures, firstpage, labels, load, mlperf, series, svg, tables
from orchestrator.report.environment import environment_blocks
from orchestrator.report.load import RunData

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _when(stamp: Optional[float]) -> str:
    return "unknown" if stamp is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(stamp))


def _compare_context(comparison: cmp.Comparison) -> Dict[str, Any]:
    compared = [metric.key for metric in figures.THROUGHPUT if metric.compare]
    groups = [
        (
            " ".join(cmp.key_words(left.key)[1:]),
            [("A " + key, left.figures.get(key)) for key in compared]
            + [("B " + key, right.figures.get(key)) for key in compared],
        )
        for left, right in comparison.pairs
    ]
    return {
        "notes": cmp.notes(comparison),
        "columns": cmp.COLUMNS,
        "rows": cmp.rows(comparison),
        "chart": Markup(svg.grouped_bars(groups, "img/s", "throughput, A vs B")),
    }


def _over_runs_context(data: RunData) -> Dict[str, Any]:
    """The over-runs table, its legend and the chart of the throughputs' means with their intervals (none
    where every job ran once)."""
    found = series.of_run(data)
    repeated = series.any_repeated(found)
    return {
        "rows": series.rows(found) if repeated else [],
        "columns": series.COLUMNS,
        "legend": series.legend(found),
        "chart": Markup(
            svg.grouped_bars(
                figures.runs_groups(found), "img/s", "throughput over runs", figures.runs_ranges(found)
            )
        )
        if repeated
        else None,
    }


def _first_page(data: RunData, versus: Optional[str]) -> Dict[str, Any]:
    """The first page: the verdict, per accelerator and per host, the batch-size sweep, the device
    monitor's power and utilisation over time, the jobs by state."""
    rows = firstpage.rows(series.of_run(data))
    gathered = load.gathered(data)
    base = firstpage.baseline(rows, versus)
    sweep = firstpage.sweep_lines(rows)
    bars = [
        (row.label, [(key, (i.mean if (i := row.interval(key)) else None)) for key in firstpage.FIGURES])
        for row in rows
    ]
    ranges = {
        (row.label, key): (i.low, i.high, "95%% interval over K = %d runs" % i.k)
        for row in rows
        for key in firstpage.FIGURES
        if (i := row.interval(key)) is not None and i.low is not None and i.high is not None
    }
    power = firstpage.monitor_panels(rows, "power_w")
    utilisation = firstpage.monitor_panels(rows, "utilization_pct")
    top_power = max((v for _, lines, _ in power for _, points in lines for _, v in points), default=0.0)
    return {
        "verdict": firstpage.verdict(rows, base),
        "baseline": "%s: p_infer_core %s img/s" % (base.name, svg.fmt(base.core)) if base else "",
        "rows": [
            {
                "label": row.label,
                "where": row.where + (", run %s" % row.best.jobs[0].job["run_id"] if gathered else ""),
                "core": firstpage.shown(row.interval(firstpage.CORE)),
                "whole": firstpage.shown(row.interval(firstpage.WHOLE)),
                "ratio": firstpage.ratio(row.interval(firstpage.CORE), base),
                "mfu": firstpage.percent(row.interval("mfu")),
                "power": firstpage.watts(row),
                "energy": firstpage.joules(row),
            }
            for row in rows
        ],
        "hosts": [
            {
                "host": host.host,
                "vendor": host.vendor,
                "devices": ", ".join("%s: %s" % (d, firstpage.setting(item)) for d, item in host.devices),
                "core": firstpage.summed(host.total(firstpage.CORE)),
                "whole": firstpage.summed(host.total(firstpage.WHOLE)),
            }
            for host in firstpage.host_rows(series.of_run(data))
        ],
        "bars": Markup(svg.grouped_bars(bars, "img/s", "best per accelerator and toolkit", ranges))
        if bars
        else None,
        "sweep": Markup(svg.xy_lines(sweep, "batch size", "img/s", "p_infer_core over batch size"))
        if sweep
        else None,
        "power": Markup(svg.time_series(power, "W", svg.nice_ticks(top_power)[-1], "device power"))
        if power
        else None,
        "utilisation": Markup(svg.time_series(utilisation, "%", 100.0, "device utilisation"))
        if utilisation
        else None,
        "jobs": firstpage.job_summary(data),
    }


def render(
    data: RunData, lang: str, comparison: Optional[cmp.Comparison] = None, versus: Optional[str] = None
) -> str:
    """The report of a run, in ``lang``: the first page (ratios to ``versus``, see ``firstpage.baseline``),
    then the appendix, with a comparison section when one is given."""
    timeline_groups = figures.timeline_groups(data)
    rows = tables.result_rows(data)
    names, timeline_rows = figures.timeline_table(timeline_groups)
    context = {
        "lang": lang,
        "w": {key: labels.word(key, lang) for key in labels.WORDS},
        "env_label": lambda key: labels.env_label(key, lang),
        "run": data.run,
        "run_id": data.run_id,
        "created": _when(data.run.get("created_at")),
        "finished": _when(data.run.get("finished_at")),
        "generated": _when(time.time()),
        "store": data.store.path,
        "columns": tables.with_run_id(data, tables.shown_columns(labels.result_columns(lang), rows)),
        "rows": rows,
        "numeric": ["bs"] + [column.key for column in tables.FIGURE_COLUMNS],
        "blocks": environment_blocks(data),
        "spread_legend": tables.spread_legend(data),
        "marks": tables.MARKS,
        "over_runs": _over_runs_context(data),
        "throughput": Markup(
            svg.grouped_bars(
                figures.throughput_groups(data), "img/s", "throughput", figures.throughput_ranges(data)
            )
        ),
        "latency": Markup(svg.grouped_bars(figures.latency_groups(data), "ms", "latency")),
        "memory": Markup(svg.used_of_total(figures.memory_rows(data), "GiB", "memory")),
        "timelines": Markup(svg.timelines(timeline_groups, "timelines")),
        "host_cpu": Markup(svg.time_series(figures.host_cpu_panels(data), "%", 100.0, "host CPU"))
        if any(job.host_samples for job in data.jobs)
        else None,
        "phase_names": names,
        "timeline_rows": timeline_rows,
        "fmt": lambda v: "unknown" if v is None else svg.fmt(v),
        "metrics": labels.definitions(),
        "jobs": [
            (job.label(), job.job_id, figures.how_measured(job) + mlperf.lines(job)) for job in data.jobs
        ],
        "server_search": Markup(mlperf.server_search(data) or ""),
        "compare": _compare_context(comparison) if comparison else None,
        "first": _first_page(data, versus),
    }
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    return env.get_template("report.html.j2").render(**context)
