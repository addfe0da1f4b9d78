"""The metric table: one ``Metric`` row per figure of a job, in the order the reports show them.

Each row says what the figure is (unit, titles in English and in the reference's Chinese, the one-line
definition of docs/metrics.md), how it shows (format, what a null shows as), how it is judged (whether higher
is better, whether compare shows it, whether the results table has a column for it) and where it comes from:
the dotted path of its field in the runner's result (``runner_in_container.schema``), whose type and bounds
it takes, or a function of the result and the device's peak (MFU: the peak is the host's, from the vendor's
table). The results table, Markdown, CSV, JSON, HTML, the labels, compare, the charts and bench iterate these
rows; ``derived.derive`` reads each figure through its row.
"""

from dataclasses import Field, dataclass, fields, is_dataclass
from types import MappingProxyType
from typing import (
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Tuple,
    Union,
    get_args,
    get_type_hints,
)

from runner_in_container import protocol, schema

#: what a figure of a stage that did not run shows as (the val stage, with stages: [infer])
NOT_RUN = "not run"


class Inputs(NamedTuple):
    """What a host-side figure is derived from: the typed result, the device's dense peak FLOP/s at the
    precision that ran (None when neither the host's peaks nor the vendor's table has one) and the host
    monitor's summary of the window the job's figures were measured under (``host.hostmonitor``: the infer
    stage's whole passes, an MLPerf job's LoadGen runs; {} when the host was not monitored or the window not
    seen)."""

    result: schema.Result
    peak_flops: Optional[float]
    host: Mapping[str, Any] = MappingProxyType({})


#: a result path ("stages.infer.throughput_core_img_per_s") or a function of ``Inputs``
Source = Union[str, Callable[[Inputs], Optional[float]]]

#: the most power a figure may state (W): beyond any node
MAX_WATTS = 1e6

#: results-table columns that several rows share, their values joined by "/" (the reference's layout):
#: cell key -> (English title, Chinese title)
SHARED_CELLS: Dict[str, Tuple[str, str]] = {
    "acc": ("acc (val/infer)", "推理结果 (验证/推理)"),
    "mem": ("mem (GiB)", "硬件存储使用 (GiB)"),
    "mlperf_latency": ("MLPerf p50/p90/p99 (ms)", "MLPerf 延迟 p50/p90/p99 (ms)"),
}


@dataclass(frozen=True)
class Metric:
    """One figure of a job."""

    key: str
    unit: str
    #: %-format of the value times ``scale``
    format: str
    title: str
    title_zh: str
    definition: str
    higher_is_better: bool
    compare: bool
    source: Source
    #: every result with figures has it (a number, never null); else null where unknown or older results
    #: lack it
    always: bool = True
    #: a column of its own in the results table (or the ``cell`` it shares)
    table: bool = True
    cell: str = ""
    scale: float = 1.0
    #: what a null shows as
    absent: str = "unknown"
    #: shown "(n/m)" when the weights make accuracy not meaningful
    needs_meaningful_weights: bool = False
    #: bounds of a figure derived by a function (a figure read from the result has its field's)
    bounds: Optional[schema.Rule] = None
    #: the reference's own note on it (特殊说明), where it has one
    reference_note: str = ""
    #: the results table shows its column only for a run where some job has the figure (the MLPerf
    #: scenarios' figures: a run of flagperf jobs alone keeps its table as it was)
    optional_column: bool = False
    #: the result path of the stage ("stages.val") whose passes give the figure pass by pass (n_images / each
    #: pass's whole wall time, ``pass_whole_s``): its spread over the passes (``spread.Spread``)
    per_pass: str = ""

    def show(self, value: Optional[float]) -> str:
        """``value`` as the reports write it."""
        return self.absent if value is None else self.format % (value * self.scale)

    def label(self) -> str:
        """The key with its unit, as compare and bench name the figure."""
        return "%s (%s)" % (self.key, self.unit) if self.unit else self.key

    def rule(self) -> schema.Rule:
        """The type's bounds: those of the result field it is read from, or its own."""
        if isinstance(self.source, str):
            return field_at(self.source).metadata["rule"]
        assert self.bounds is not None, self.key
        return self.bounds

    def value(self, inputs: Inputs) -> Optional[float]:
        """The figure of the result in ``inputs``."""
        if callable(self.source):
            return self.source(inputs)
        node: object = inputs.result
        for name in self.source.split("."):
            node = getattr(node, name)
            if node is None:
                return None
        assert isinstance(node, (int, float)), self.key
        return float(node)

    def pass_values(self, inputs: Inputs) -> List[float]:
        """The figure pass by pass, from the stage ``per_pass`` names ([] without one, or where a pass took
        no measurable time)."""
        if not self.per_pass:
            return []
        stage: object = inputs.result
        for name in self.per_pass.split("."):
            stage = getattr(stage, name)
        if not isinstance(stage, schema.Stage) or not all(s > 0 for s in stage.pass_whole_s):
            return []
        return [stage.n_images / seconds for seconds in stage.pass_whole_s]


def field_at(path: str) -> Field:
    """The field of ``schema.Result`` at the dotted ``path``; KeyError naming it when there is none."""
    cls: object = schema.Result
    spec = None
    for name in path.split("."):
        declared = {f.name: f for f in fields(cls)} if is_dataclass(cls) else {}
        if name not in declared:
            raise KeyError("%s: not a field of the result (runner_in_container/schema.py)" % path)
        spec = declared[name]
        hint = get_type_hints(cls)[name]
        cls = next(
            (t for t in get_args(hint) or (hint,) if isinstance(t, type) and t is not type(None)), None
        )
    assert spec is not None
    return spec


def _mfu(inputs: Inputs) -> Optional[float]:
    result = inputs.result
    return protocol.mfu(result.flops_per_image, _infer_core(result), inputs.peak_flops)[0]


def _mfu_flagperf(inputs: Inputs) -> Optional[float]:
    return protocol.mfu(inputs.result.flops_per_image, _infer_core(inputs.result), inputs.peak_flops)[1]


def _host(key: str, scale: float = 1.0) -> Callable[[Inputs], Optional[float]]:
    """The figure ``key`` of the host monitor's summary of the figure window, times ``scale``."""

    def value(inputs: Inputs) -> Optional[float]:
        found = inputs.host.get(key)
        return None if found is None else float(found) * scale

    return value


def _mlperf_valid(inputs: Inputs) -> Optional[float]:
    """1 when LoadGen found the scenario's performance run VALID, 0 when INVALID; null for flagperf."""
    mlperf = inputs.result.mlperf
    return None if mlperf is None else float(mlperf.performance.validity == "VALID")


def _mlperf_latency(percentile: str) -> Metric:
    """The row of a LoadGen performance run's latency percentile."""
    return Metric(
        "mlperf_%s_ms" % percentile, "ms", "%.3f", "MLPerf %s (ms)" % percentile,
        "MLPerf %s 延迟 (ms)" % percentile,
        "The %s latency over the queries of LoadGen's performance run (SingleStream's figure is p90, "
        "MultiStream's and Server's bound p99); its count is mlperf_queries." % percentile,
        False, True, "mlperf.performance.latency_ms." + percentile, always=False, cell="mlperf_latency",
        absent="/", optional_column=True,
    )  # fmt: skip


def _infer_core(result: schema.Result) -> Optional[float]:
    infer = result.stages.infer
    return infer.throughput_core_img_per_s if infer is not None else None


#: the window the host figures are taken over (the device monitor's power too: docs/metrics.md, Energy)
_HOST_WINDOW = "the infer stage's whole passes (an MLPerf job: its LoadGen performance runs)"
_WHOLE = "R x N / wall time of the stage's passes, data pipeline already started: reading, decoding, "
_CORE = "N / the core pass's device time of the model call alone, input already on the device in the "

METRICS: Tuple[Metric, ...] = (
    Metric(
        "e2e_time_s", "s", "%.1f", "e2e_time (s)", "端到端时间 (s)",
        "Runner process start to result written.",
        False, True, "durations.e2e_time_s",
        reference_note="总时间+Perf初始化等时间",
    ),
    Metric(
        "p_val_whole", "img/s", "%.1f", "p_val_whole", "验证总吞吐量",
        _WHOLE + "preprocessing, copies, compute, top-k; framework model (val stage; not run with stages: "
        "[infer]).",
        True, True, "stages.val.throughput_whole_img_per_s", always=False, absent=NOT_RUN,
        reference_note="实际验证图片数除以总验证时间", per_pass="stages.val",
    ),
    Metric(
        "p_val_core", "img/s", "%.1f", "p_val_core", "验证计算吞吐量",
        _CORE + "engine's dtype and layout, timed with device events; framework model (val stage).",
        True, True, "stages.val.throughput_core_img_per_s", always=False, absent=NOT_RUN,
        reference_note="不包含IO部分耗时",
    ),
    Metric(
        "p_infer_whole", "img/s", "%.1f", "p_infer_whole", "推理总吞吐量",
        "As p_val_whole, for the toolkit's compiled model (infer stage).",
        True, True, "stages.infer.throughput_whole_img_per_s",
        reference_note="实际推理图片数除以总推理时间", per_pass="stages.infer",
    ),
    Metric(
        "p_infer_core", "img/s", "%.1f", "*p_infer_core", "*推理计算吞吐量",
        "As p_val_core, for the toolkit's compiled model (infer stage); the same window for every toolkit.",
        True, True, "stages.infer.throughput_core_img_per_s",
        reference_note="不包含IO部分耗时",
    ),
    Metric(
        "mfu", "", "%.1f%%", "*MFU", "*计算卡使用率",
        "flops_per_image x p_infer_core / dense peak FLOP/s of the detected device at the precision that "
        "ran (vendor's table, or the host's peaks); no known peak: null, never a guess.",
        True, True, _mfu, always=False, scale=100, absent="/", bounds=schema.ratio().metadata["rule"],
        reference_note="model flops utilization",
    ),
    Metric(
        "mfu_flagperf", "", "%.1f%%", "MFU (4.12e9 convention)", "计算卡使用率 (4.12e9 约定)",
        "4.12e9 x p_infer_core / the same peak: the reference table's convention, for comparison only.",
        True, True, _mfu_flagperf, always=False, table=False, scale=100, absent="/",
        bounds=schema.ratio().metadata["rule"],
    ),
    Metric(
        "peak_flops", "FLOP/s", "%.4g", "peak FLOP/s", "峰值算力 (FLOP/s)",
        "Dense peak of the detected device at the precision that ran (vendor's table, or the host's peaks); "
        "null if unknown.",
        True, False, lambda inputs: inputs.peak_flops, always=False, table=False, absent="/",
        bounds=schema.flops_per_s().metadata["rule"],
    ),
    Metric(
        "acc_val_top1", "%", "%.2f", "acc val top-1 (%)", "验证结果 top-1 (%)",
        "Top-1 of the val stage over all N images, percent.",
        True, True, "stages.val.top1_pct", cell="acc", needs_meaningful_weights=True, always=False,
        absent=NOT_RUN,
        reference_note="单位为top1分类准确率(acc1)",
    ),
    Metric(
        "acc_infer_top1", "%", "%.2f", "acc infer top-1 (%)", "推理结果 top-1 (%)",
        "Top-1 of the infer stage over all N images, percent; n/m when the weights are random.",
        True, True, "stages.infer.top1_pct", cell="acc", needs_meaningful_weights=True,
        reference_note="单位为top1分类准确率(acc1)",
    ),
    Metric(
        "mem_used_gib", "GiB", "%.2f", "mem used (GiB)", "硬件存储使用 (GiB)",
        "Peak device memory the runner held during the infer stage; the source is recorded.",
        False, True, "memory.mem_used_gib", always=False, cell="mem",
        reference_note="通常称为“显存”,单位为GiB",
    ),
    Metric(
        "mem_total_gib", "GiB", "%.1f", "mem total (GiB)", "硬件存储总量 (GiB)",
        "The device's total memory.",
        True, False, "memory.mem_total_gib", always=False, cell="mem",
    ),
    Metric(
        "p_infer_core_in_pipeline", "img/s", "%.1f", "infer core in pipeline", "推理流水线内计算吞吐量",
        "The core window around the infer stage's model calls inside the whole passes.",
        True, False, "stages.infer.throughput_core_in_pipeline_img_per_s", always=False, table=False,
    ),
    Metric(
        "core_ratio", "", "%.2f", "core ratio", "计算时间比",
        "Mean model call time in the whole passes over the core pass's; above 1.1: the data path shared "
        "the device.",
        False, False, "stages.infer.core_ratio", always=False, table=False,
    ),
    Metric(
        "loader_start_s", "s", "%.1f", "pipeline start (s)", "数据流水线启动 (s)",
        "Starting the data pipeline, inside no window.",
        False, False, "durations.loader_start_s", always=False, table=False,
    ),
    Metric(
        "host_cpu_pct", "%", "%.1f", "host CPU (%)", "主机 CPU 使用率 (%)",
        "Mean busy share of all the host's CPUs (/proc/stat) over %s." % _HOST_WINDOW,
        False, False, _host("cpu_pct_mean"), always=False, table=False, absent="/",
        bounds=schema.Rule(0, 100, unit="%"),
    ),
    Metric(
        "host_mem_used_gib", "GiB", "%.2f", "host mem used (GiB)", "主机内存使用 (GiB)",
        "Peak host memory in use (MemTotal - MemAvailable, /proc/meminfo) over %s." % _HOST_WINDOW,
        False, False, _host("mem_used_peak_mib", 1 / 1024), always=False, table=False, absent="/",
        bounds=schema.Rule(0, schema.MAX_GIB, unit="GiB"),
    ),
    Metric(
        "node_power_w", "W", "%.0f", "node power (W)", "整机功耗 (W)",
        "Mean node power (ipmitool dcmi power reading) over %s; null where IPMI DCMI gives none."
        % _HOST_WINDOW,
        False, False, _host("power_mean_w"), always=False, table=False, absent="/",
        bounds=schema.Rule(0, MAX_WATTS, unit="W"),
    ),
    Metric(
        "node_j_per_img", "J/img", "%.3g", "node energy (J/img)", "整机能耗 (J/img)",
        "node_power_w x the window's wall time / the images run in it (an MLPerf job: LoadGen's samples); "
        "null without node power.",
        False, False, _host("energy_j_per_img"), always=False, table=False, absent="/",
        bounds=schema.Rule(0, MAX_WATTS * schema.MAX_SECONDS, unit="J"),
    ),
    Metric(
        "mlperf_samples_per_s", "samples/s", "%.1f", "MLPerf samples/s", "MLPerf 每秒样本数",
        "Completed samples per second of LoadGen's performance run (Offline's figure; Server: its best "
        "search run's); null for flagperf.",
        True, True, "mlperf.performance.samples_per_s", always=False, absent="/", optional_column=True,
    ),
    Metric(
        "mlperf_server_qps", "QPS", "%.1f", "MLPerf Server QPS", "MLPerf 服务器 QPS",
        "Server: the highest target QPS whose LoadGen run was good (VALID; a short run: p99 within the "
        "bound); null when none was, and for the other scenarios.",
        True, True, "mlperf.server_qps", always=False, absent="/", optional_column=True,
    ),
    _mlperf_latency("p50"),
    _mlperf_latency("p90"),
    _mlperf_latency("p99"),
    Metric(
        "mlperf_queries", "queries", "%.0f", "MLPerf queries", "MLPerf 查询数",
        "Queries LoadGen's performance run counted: the count of its latency figures.",
        True, False, "mlperf.performance.queries", always=False, absent="/", optional_column=True,
    ),
    Metric(
        "mlperf_valid", "", "%.0f%%", "MLPerf VALID", "MLPerf 有效",
        "100% when LoadGen found the performance run VALID, 0% when INVALID (result.json's "
        "mlperf.performance.reason says why); over several runs, the share of VALID ones.",
        True, False, _mlperf_valid, always=False, scale=100, absent="/", bounds=schema.Rule(0, 1),
        optional_column=True,
    ),
    Metric(
        "mlperf_top1", "%", "%.2f", "MLPerf acc top-1 (%)", "MLPerf 精度 top-1 (%)",
        "Top-1 of LoadGen's accuracy run: each sample's response in its accuracy log against the labels.",
        True, True, "mlperf.accuracy.top1_pct", always=False, table=False, absent="/",
        needs_meaningful_weights=True,
    ),
)  # fmt: skip

BY_KEY: Dict[str, Metric] = {metric.key: metric for metric in METRICS}


class Column(NamedTuple):
    """A results-table column of figures: its key, titles, and the rows whose values it shows."""

    key: str
    title: str
    title_zh: str
    metrics: Tuple[Metric, ...]


def columns() -> List[Column]:
    """The results table's columns of figures, in table order: one per row with ``table``, rows that share a
    ``cell`` in one."""
    out: List[Column] = []
    for metric in METRICS:
        if not metric.table:
            continue
        if not metric.cell:
            out.append(Column(metric.key, metric.title, metric.title_zh, (metric,)))
            continue
        shared = next((c for c in out if c.key == metric.cell), None)
        if shared is None:
            title, title_zh = SHARED_CELLS[metric.cell]
            out.append(Column(metric.cell, title, title_zh, (metric,)))
        else:
            out[out.index(shared)] = shared._replace(metrics=shared.metrics + (metric,))
    return out
