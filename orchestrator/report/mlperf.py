"""What the HTML report says of a job that ran an MLPerf scenario (result.json's ``mlperf``): its lines of
the per-job table (compliance, LoadGen's verdict in plain words, the Server search, links to LoadGen's logs
fetched beside the result) and the Server search's latency-throughput chart."""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from markupsafe import Markup

from orchestrator.report import svg
from orchestrator.report.load import JobData, RunData


def _mlperf(job: JobData) -> Optional[Dict[str, Any]]:
    section = (job.result or {}).get("mlperf")
    return section if isinstance(section, dict) else None


def _run_text(run: Dict[str, Any]) -> str:
    latency = run.get("latency_ms") or {}
    text = "%s; %s samples/s; p50/p90/p99 %s/%s/%s ms over %s queries" % (
        run.get("validity"),
        run.get("samples_per_s"),
        latency.get("p50"),
        latency.get("p90"),
        latency.get("p99"),
        run.get("queries"),
    )
    return text + (": " + run["reason"] if run.get("reason") else "")


def lines(job: JobData) -> List[Tuple[str, Any]]:
    """The job's MLPerf lines of the per-job table ([] for flagperf); the logs as links to the files fetched
    into the job's folder (beside its runner.log)."""
    section = _mlperf(job)
    if section is None:
        return []
    out: List[Tuple[str, Any]] = [
        ("MLPerf", "%s; %s; LoadGen %s, %s" % (section.get("scenario"), section.get("compliance"),
                                              section.get("loadgen_version"), section.get("rules"))),
        ("MLPerf performance", _run_text(section.get("performance") or {})),
    ]  # fmt: skip
    for number, run in enumerate(section.get("search") or [], 1):
        out.append(("MLPerf Server search %d: %s QPS" % (number, run.get("target_qps")), _run_text(run)))
    accuracy = section.get("accuracy") or {}
    out.append(("MLPerf accuracy", "top-1 %s%% (%s of %s samples)" % (
        accuracy.get("top1_pct"), accuracy.get("top1_count"), accuracy.get("samples"))))  # fmt: skip
    log_path = job.job.get("log_path")
    folder = Path(log_path).parent if log_path else None
    links = [
        Markup('<a href="{}">{}</a>').format((folder / name).as_uri(), name) if folder else name
        for name in section.get("log_files") or []
    ]
    out.append(("MLPerf logs", Markup(", ").join(links)))
    return out


def server_search(data: RunData) -> Optional[str]:
    """The latency-throughput chart of every Server search of the run (p99 over the target QPS of each
    run, the bound dashed), or None when no job searched."""
    series: List[Tuple[str, Sequence[svg.RunPoint]]] = []
    bound = None
    for job in data.jobs:
        section = _mlperf(job)
        if section is None or not section.get("search"):
            continue
        bound = section.get("server_latency_ms")
        points = [
            (run["target_qps"], run["latency_ms"]["p99"], bool(run.get("latency_bound_met")),
             "%s QPS: p99 %s ms, %s" % (run["target_qps"], run["latency_ms"]["p99"], run["validity"]))
            for run in section["search"]
            if run.get("target_qps") and run.get("latency_ms")
        ]  # fmt: skip
        series.append((job.label(), points))
    if not series:
        return None
    return svg.latency_throughput(
        series, "QPS", "p99 ms", bound, "Server search: p99 latency over target QPS"
    )
