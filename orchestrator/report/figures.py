"""What the HTML report plots and lists per job, taken from the stored result, derived figures and timings."""

import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from orchestrator.host import monitor
from orchestrator.metrics import table
from orchestrator.outcome import Stage
from orchestrator.report import firstpage
from orchestrator.report.load import JobData, RunData, dig, finite
from orchestrator.report.series import Series
from orchestrator.report.svg import Bar, Group, Panel, Ranges, fmt
from runner_in_container.protocol import PASS_STAGES, STAGE_INFER, STAGE_SETUP, STAGE_VAL

#: throughput series: the metric table's throughputs with a column in the results table
THROUGHPUT = tuple(metric for metric in table.METRICS if metric.unit == "img/s" and metric.table)
PERCENTILES = ("p50", "p90", "p99")


def throughput_groups(data: RunData) -> List[Group]:
    """Per job with figures: its throughputs (img/s)."""
    return [
        (job.label(), [(metric.key, job.derived.figure(metric.key)) for metric in THROUGHPUT])
        for job in data.ok_jobs()
        if job.derived is not None
    ]


def throughput_ranges(data: RunData) -> Ranges:
    """Per job and throughput with a spread over two passes or more: its min..max over the passes."""
    return {
        (job.label(), key): (spread.min, spread.max, "min..max over R = %d passes" % spread.n)
        for job in data.ok_jobs()
        if job.derived is not None
        for key, spread in job.derived.spreads.items()
        if spread.cv is not None
    }


def runs_groups(found: Sequence[Series]) -> List[Group]:
    """Per series with figures: the mean of each throughput over its runs (img/s)."""
    return [
        (
            item.plot_label(),
            [(m.key, i.mean if (i := item.interval(m.key)) else None) for m in THROUGHPUT],
        )
        for item in found
        if item.intervals
    ]


def runs_ranges(found: Sequence[Series]) -> Ranges:
    """Per series and throughput with an interval (K >= 2): the 95% interval of its mean."""
    return {
        (item.plot_label(), metric.key): (
            interval.low,
            interval.high,
            "95%% interval over K = %d runs" % interval.k,
        )
        for item in found
        for metric in THROUGHPUT
        if (interval := item.interval(metric.key)) is not None
        and interval.low is not None
        and interval.high is not None
    }


#: the latencies of a stage: (result key, its samples' count: a path in the stage, what the samples are)
LATENCIES = (
    ("latency_ms", ("core_pass", "batches"), "core pass"),
    ("latency_in_pipeline_ms", ("batches",), "whole passes"),
)
#: fewer samples than this make a coarse p99 (docs/metrics.md)
FEW_SAMPLES = 100


def latency(job: JobData, stage: str, key: str) -> Tuple[Dict[str, Any], Optional[int]]:
    """A stage's latency ``key`` (p50, p90, p99 ... in ms) and the count of model calls it is taken over."""
    count_path = next(path for name, path, _ in LATENCIES if name == key)
    count = dig(job.result, "stages", stage, *count_path)
    return dig(job.result, "stages", stage, key) or {}, count if isinstance(count, int) else None


def latency_text(job: JobData, stage: str, key: str) -> str:
    """ "7.6 / 7.6 / 7.6 ms (n=196)": p50 / p90 / p99 with their sample count, "coarse" under FEW_SAMPLES."""
    values, count = latency(job, stage, key)
    shown = " / ".join("unknown" if values.get(p) is None else fmt(values[p]) for p in PERCENTILES)
    coarse = "; coarse: under %d samples" % FEW_SAMPLES if count is not None and count < FEW_SAMPLES else ""
    return "%s ms (n=%s%s)" % (shown, "unknown" if count is None else count, coarse)


def latency_groups(data: RunData) -> List[Group]:
    """Per job with figures and per stage: p50 / p90 / p99 of the per-batch core time (ms), the label with
    their sample count."""
    groups: List[Group] = []
    for job in data.ok_jobs():
        for stage in PASS_STAGES:
            values, count = latency(job, stage, "latency_ms")
            label = "%s %s (n=%s)" % (job.label(), stage, "unknown" if count is None else count)
            groups.append((label, [(p, values.get(p)) for p in PERCENTILES]))
    return groups


def spread_line(job: JobData) -> str:
    """The job's spreads over passes: per figure R, median, min, max and CV, or that R = 1 gives none."""
    derived = job.derived
    if derived is None or not derived.spreads:
        return "not stored (an older record)"
    parts = []
    for key, spread in derived.spreads.items():
        metric = table.BY_KEY[key]
        if spread.cv is None:
            parts.append("%s: R = %d: no spread" % (key, spread.n))
            continue
        median, low, high = (metric.show(v) for v in (spread.median, spread.min, spread.max))
        parts.append(
            "%s: R = %d, median %s, min %s, max %s, CV %.2g%%"
            % (key, spread.n, median, low, high, 100 * spread.cv)
        )
    return "; ".join(parts)


def memory_rows(data: RunData) -> List[Tuple[str, Optional[float], Optional[float]]]:
    """Per job with figures: (label, used GiB, total GiB) of the infer stage."""
    return [
        (job.label(), job.derived.figure("mem_used_gib"), job.derived.figure("mem_total_gib"))
        for job in data.ok_jobs()
        if job.derived is not None
    ]


#: the host monitor's CPU series drawn: busy, and the modes that tell decoding (user) from the kernel's part
CPU_LINES = (("cpu_pct", "busy"), ("user_pct", "user"), ("system_pct", "system"), ("iowait_pct", "iowait"))


def host_cpu_panels(data: RunData) -> List[Panel]:
    """Per job the host monitor sampled: its CPU % lines over seconds from the first sample's start, and its
    stage windows on the same clock."""
    panels: List[Panel] = []
    for job in data.jobs:
        host = job.host_samples
        if host is None:
            continue
        rows = [row for row in _list(host.get("samples")) if _numbers(row, "t", "span_s")]
        windows = {
            stage: (window[0], window[1])
            for stage, window in _dict(host.get("windows")).items()
            if _numbers(dict(enumerate(_list(window))), 0, 1) and 0 < window[0] < window[1]
        }
        origin = (
            rows[0]["t"] - rows[0]["span_s"] if rows else min((w[0] for w in windows.values()), default=0.0)
        )
        lines = [
            (name, [(row["t"] - origin, row[key]) for row in rows if _numbers(row, key)])
            for key, name in CPU_LINES
        ]
        spans = [(stage, start - origin, end - origin) for stage, (start, end) in windows.items()]
        panels.append((job.label(), lines, spans))
    return panels


def _list(value: Any) -> List[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> Dict[Any, Any]:
    return value if isinstance(value, dict) else {}


def _numbers(row: Any, *keys: Any) -> bool:
    """``row`` is a dict with a finite number at each of ``keys`` (a stored summary is read as it is)."""
    return isinstance(row, dict) and all(finite(row.get(k)) for k in keys)


def _number(value: Any) -> Optional[float]:
    """``value`` where it is a finite number (a stored summary is read as it is), else None."""
    return float(value) if finite(value) else None


def _monitor_line(samples: Dict[str, Any]) -> str:
    """The device monitor's source, peak memory, and its figures over the window the job's figures were
    measured under: mean power, energy, SM clock, throttle reasons."""

    def shown(value: Any) -> str:
        number = _number(value)
        return "unknown" if number is None else fmt(number)

    shares = monitor.figure(samples, "throttle")
    clocks = firstpage.clocks(
        _number(monitor.figure(samples, "mean_sm_clock_mhz")), shares if isinstance(shares, dict) else None
    )
    return "%s; peak used %s MiB; %s: mean power %s W, energy %s J/img%s" % (
        samples.get("source"),
        shown(samples.get("peak_memory_used_mib")),
        samples.get("figure_window") or STAGE_INFER,
        shown(monitor.figure(samples, "mean_power_w")),
        shown(monitor.figure(samples, "energy_j_per_img")),
        "; " + clocks if clocks else "",
    )


def _host_line(host: Dict[str, Any]) -> str:
    """The host monitor's source, its summary of the window the job's figures were measured under, and why
    node power is missing."""
    window = host.get("figure_window") or STAGE_INFER
    stage = _dict(_dict(host.get("stages")).get(window))
    power = _dict(host.get("power"))
    parts = [
        str(host.get("source")),
        "%d samples" % len(_list(host.get("samples"))),
        "%s: mean CPU %s %%, peak memory used %s MiB, mean node power %s W, node energy %s J/img"
        % (
            (window,)
            + tuple(
                "%.4g" % stage[key] if _numbers(stage, key) else "unknown"
                for key in ("cpu_pct_mean", "mem_used_peak_mib", "power_mean_w", "energy_j_per_img")
            )
        ),
        "node power " + ("read" if power.get("available") else "unavailable: %s" % power.get("reason")),
    ]
    if host.get("error"):
        parts.append("error: %s" % host["error"])
    return "; ".join(parts)


def _sum(values: Sequence[Optional[float]]) -> Optional[float]:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def timeline(job: JobData) -> List[Bar]:
    """The job's phases in order (s): image build, container start, the runner's stages, collection.

    start = the runner's wall time seen by the orchestrator minus its own e2e time (container start,
    interpreter start and exit); setup = the runner's imports and set-up (device, decoder probe, data set
    and weights opened, toolkits built); pipeline = what the runner waited for its data pipeline to start
    (``durations.loader_start_s`` overlaps load and compile: only the rest is on this line); core = the
    two stages' core passes; other = e2e minus the listed stages (FLOP count, report).
    """
    timings = job.job.get("timings") or {}
    result = job.result
    e2e = dig(result, "durations", "e2e_time_s")
    runner = timings.get("runner_s")
    val = dig(result, "stages", STAGE_VAL) or {}
    infer = dig(result, "stages", STAGE_INFER) or {}
    stages = [stage for stage in (val, infer) if stage]
    stage_val = _sum([val.get(k) for k in ("export_s", "compile_s", "warmup_s", "whole_s")]) if val else None
    phases: List[Bar] = [
        (Stage.BUILD, timings.get("build_s")),
        (Stage.START, runner - e2e if runner is not None and e2e is not None else None),
        (STAGE_SETUP, dig(result, "durations", "setup_s")),
        ("load", dig(result, "durations", "load_s")),
        ("pipeline", _sum([stage.get("pipeline_wait_s", 0.0) for stage in stages]) if stages else None),
        (STAGE_VAL, stage_val),
        ("export", infer.get("export_s")),
        ("compile", infer.get("compile_s")),
        ("warm-up", infer.get("warmup_s")),
        (STAGE_INFER, infer.get("whole_s")),
        (
            "core",
            _sum([(stage.get("core_pass") or {}).get("wall_s", 0.0) for stage in stages]) if stages else None,
        ),
    ]
    inside = _sum([v for _, v in phases[2:]])
    phases.append(("other", e2e - inside if e2e is not None and inside is not None else None))
    if e2e is None and runner is not None:
        phases.append(("runner", runner))  # no result: only the runner's wall time is known
    elif e2e is None and job.seconds() is not None:
        phases.append(("ran", job.seconds()))  # cancelled or interrupted: its start to its end
    phases.append(("collect", timings.get("collect_s")))
    return phases


def timeline_groups(data: RunData) -> List[Group]:
    return [(job.label(), timeline(job)) for job in data.jobs]


def how_measured(job: JobData) -> List[Tuple[str, str]]:
    """Constants, sources and checksums behind a job's figures, as (what, value) lines."""
    result, derived = job.result or {}, job.derived

    def text(value: Any) -> str:
        return "unknown" if value is None or value == "" else str(value)

    def figure(key: str) -> Optional[float]:
        return derived.figure(key) if derived is not None else None

    def note(name: str) -> Any:
        return getattr(derived, name) if derived is not None else None

    flops = result.get("flops_per_image")
    peak = figure("peak_flops")
    data, weights = result.get("data") or {}, result.get("weights") or {}
    gate = result.get("accuracy_gate") or {}

    def pairs(section: Dict[str, Any], keys: Sequence[str]) -> str:
        return "; ".join("%s %s" % (key, text(section.get(key))) for key in keys)

    def percent(value: Optional[float]) -> str:
        return "unknown" if value is None else "%.2f%%" % (100 * value)

    lines = [
        (
            "FLOP per image",
            "%s (%.3g): %s" % (flops, flops, text(result.get("flops_method"))) if flops else "unknown",
        ),
        ("device model", text(note("device_model"))),
        (
            "peak FLOP/s",
            "%.4g, %s" % (peak, text(note("peak_source")))
            if peak
            else "unknown: %s (MFU null)" % text(note("mfu_note")),
        ),
        (
            "MFU",
            "%s (metrics.md); %s (4.12e9 convention)"
            % (percent(figure("mfu")), percent(figure("mfu_flagperf"))),
        ),
        ("core timing", text(dig(result, "stages", STAGE_INFER, "timing_method"))),
        ("spread over passes", spread_line(job)),
    ]
    lines += [
        ("latency %s, %s" % (stage, what), latency_text(job, stage, key))
        for stage in PASS_STAGES
        if dig(result, "stages", stage)
        for key, _, what in LATENCIES
    ]
    lines += [
        ("memory used", text(note("mem_source"))),
        ("memory total", text(dig(result, "memory", "mem_total_source"))),
        ("data", pairs(data, ("root", "layout", "n_images", "max_images", "labels_source"))),
        ("data md5", text(data.get("md5")) if data.get("md5") else "not checked (no --data-md5)"),
        (
            "decoding, preprocessing",
            "%s; %s; %s"
            % (
                pairs(data, ("decoder", "resize")),
                json.dumps(data.get("preprocessing")),
                pairs(data, ("decoded_image_cache",)),
            ),
        ),
    ]
    if data.get("decode_start_s"):
        lines.append(("decoding processes' start", decode_start_line(data)))
    lines += [
        ("weights", pairs(weights, ("spec", "path", "sha256", "verified", "reference", "seed"))),
        (
            "accuracy",
            "%s; gate: %s" % (text(weights.get("accuracy_meaningful_reason")), text(gate.get("reason"))),
        ),
        ("metric version", text(note("metric_version") or result.get("metric_version"))),
    ]
    samples = job.samples or {}
    if samples:
        lines.append(("monitor", _monitor_line(samples)))
    if job.host_samples:
        lines.append(("host monitor", _host_line(job.host_samples)))
    for warning in result.get("warnings") or []:
        lines.append(("warning", warning))
    if not job.ok:
        lines.append(("state", "%s: %s" % (job.job["state"], text(job.job.get("reason")))))
    return lines


def decode_start_line(data: Dict[str, Any]) -> str:
    """The decoding processes' start, phase by phase in the order they ended, seconds after the runner
    started (the slowest process at each phase): "8 processes (...): spawned 2.1 s, imported 7.9 s, ..."."""
    ordered = sorted(data["decode_start_s"].items(), key=lambda item: item[1])  # a store sorts the keys
    phases = ", ".join("%s %.1f s" % (phase, seconds) for phase, seconds in ordered)
    return "%s processes (the slowest at each phase, seconds after the runner started): %s" % (
        data.get("decode_processes"),
        phases,
    )


def timeline_table(groups: List[Group]) -> Tuple[List[str], List[Dict[str, Any]]]:
    """Phase names and per-job rows {label, phase: seconds or None}, for the numbers under the timelines."""
    names: List[str] = []
    rows = []
    for label, phases in groups:
        for name, _ in phases:
            if name not in names:
                names.append(name)
        rows.append(dict(phases, label=label))
    return names, rows
