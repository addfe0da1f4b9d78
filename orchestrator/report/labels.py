"""Titles of columns, fields and sections in English and in the reference's Chinese (FlagPerf's README).

English is the default. Column keys are those of ``tables.RESULT_COLUMNS`` and ``tables.ENV_COLUMNS``;
the figures' titles in both languages are the metric table's (``metrics.table``); the Chinese ones are the
labels of the reference's metric list and environment sections.
"""

from typing import Dict, List, Sequence, Tuple

from orchestrator.metrics import table
from orchestrator.report import tables

LANGS = ("en", "zh")

#: the job's own columns in Chinese
_JOB_ZH = {
    "host": "主机",
    "vendor": "厂商",
    "device": "设备",
    "tool": "推理工具",
    "precision": "数据精度",
    "bs": "批尺寸",
    "scenario": "场景",
    "run": "轮次",
    "state": "状态",
    "conditions": "运行条件",
}

#: environment fields: key -> (English, Chinese)
ENV_FIELDS: Dict[str, Tuple[str, str]] = {
    "machine": ("Machine, accelerator model", "机器、加速卡型号"),
    "cpu": ("CPU", "处理器"),
    "memory": ("Memory", "内存"),
    "os": ("OS version", "OS版本"),
    "kernel": ("OS kernel version", "OS kernel版本"),
    "driver": ("Accelerator driver version", "加速卡驱动版本"),
    "docker": ("Docker version", "Docker 版本"),
    "image": ("Image (bundle)", "镜像（离线包）"),
    "framework": ("Framework version", "训练框架版本"),
    "dependencies": ("Dependencies", "依赖软件版本"),
    "toolkits": ("Inference toolkits", "推理工具包"),
    "artefacts": ("Vendor's own artefacts (ONNX, engine)", "厂商自带模型文件 (ONNX, 引擎)"),
    "python": ("Python", "Python 版本"),
    "host": ("host", "主机"),
}

#: section headings and other words: key -> (English, Chinese)
WORDS: Dict[str, Tuple[str, str]] = {
    "report": ("rn50bench report", "rn50bench 测试报告"),
    "run": ("run", "运行"),
    "results": ("Results", "运行情况"),
    "environment": ("Environment", "软硬件配置与运行信息"),
    "hardware": ("Hardware", "硬件环境"),
    "software": ("Software", "软件环境"),
    "plots": ("Plots", "图表"),
    "throughput": ("Throughput (img/s): core vs whole", "吞吐量 (img/s): 计算 vs 总"),
    "latency": ("Per-batch core latency (ms)", "单批计算延迟 (ms)"),
    "memory": ("Memory used / total (GiB)", "硬件存储使用 / 总量 (GiB)"),
    "timelines": ("Job timelines (s)", "任务时间线 (s)"),
    "host_cpu": ("Host CPU % through each job, stage windows shaded", "任务期间主机 CPU 使用率 (%)"),
    "how": ("How measured", "测量方法"),
    "metrics": ("Metric definitions", "指标列表"),
    "per_job": ("Per job: constants, sources, checksums", "每个任务: 常数、来源、校验和"),
    "compare": ("Comparison", "对比"),
    "over_runs": ("Over runs: mean, 95% interval, CV", "多次运行: 均值、95% 置信区间、变异系数"),
    "runs_chart": (
        "Throughput over runs (img/s): mean, 95% interval",
        "多次运行吞吐量 (img/s): 均值、95% 置信区间",
    ),
    "failed": ("Failed jobs", "失败的任务"),
    "summary": ("Summary", "结论"),
    "per_accelerator": (
        "Per accelerator and toolkit: the best batch size, mean over runs (95% interval)",
        "每种加速卡与推理工具: 最佳批尺寸, 多次运行均值 (95% 置信区间)",
    ),
    "per_host": ("Per host: the sum over its devices", "每台主机: 各设备之和"),
    "accelerator": ("accelerator · toolkit precision", "加速卡 · 推理工具 数据精度"),
    "where": ("host, device, bs", "主机, 设备, 批尺寸"),
    "ratio": ("ratio to the baseline", "相对基准"),
    "power_w": ("W", "功耗 (W)"),
    "energy": ("J/img", "能耗 (J/img)"),
    "devices": ("devices (best of each)", "设备 (各自最佳)"),
    "best_chart": (
        "Best per accelerator and toolkit (img/s): mean, 95% interval",
        "每种加速卡与推理工具的最佳结果 (img/s): 均值、95% 置信区间",
    ),
    "sweep": ("p_infer_core over batch size (img/s)", "推理计算吞吐量与批尺寸 (img/s)"),
    "power": ("Device power over time (W)", "设备功耗随时间 (W)"),
    "utilisation": ("Device utilisation over time (%)", "设备使用率随时间 (%)"),
    "jobs": ("Jobs by state (time they ran)", "任务状态 (运行时间)"),
    "appendix": ("Appendix: every job", "附录: 全部任务"),
    "baseline": ("Baseline", "基准"),
}


def word(key: str, lang: str) -> str:
    """A section heading or word in ``lang``."""
    en, zh = WORDS[key]
    return zh if lang == "zh" else en


def env_label(key: str, lang: str) -> str:
    """An environment field's label in ``lang``."""
    en, zh = ENV_FIELDS[key]
    return zh if lang == "zh" else en


def result_columns(lang: str) -> List[Tuple[str, str]]:
    """``tables.RESULT_COLUMNS`` with titles in ``lang``."""
    if lang == "zh":
        figures = {column.key: column.title_zh for column in tables.FIGURE_COLUMNS}
        return [(key, figures.get(key) or _JOB_ZH[key]) for key, _ in tables.RESULT_COLUMNS]
    return list(tables.RESULT_COLUMNS)


def env_columns(lang: str) -> Sequence[Tuple[str, str]]:
    """``tables.ENV_COLUMNS`` with titles in ``lang``."""
    if lang == "zh":
        return [
            (key, ENV_FIELDS[key][1] if key in ENV_FIELDS else title) for key, title in tables.ENV_COLUMNS
        ]
    return tables.ENV_COLUMNS


#: the definitions of the job's own columns and of the latency the report plots: index, Chinese title,
#: definition, the reference's own note (特殊说明) where it has one
_JOB_DEFINITIONS: Sequence[Tuple[str, str, str, str]] = (
    (
        "precision",
        "数据精度",
        "Precision the infer stage ran (fp32 without TF32, tf32, fp16, bf16, int8).",
        "可选fp32/fp16",
    ),
    (
        "bs",
        "批尺寸",
        "Images per batch; the last partial batch is padded and padded slots are never counted.",
        "",
    ),
    (
        "scenario",
        "场景",
        "flagperf (the val and infer passes), or the MLPerf scenario LoadGen ran over the infer stage's "
        "model after them (offline, server, singlestream, multistream; metrics.md, Scenarios).",
        "",
    ),
    (
        "run",
        "轮次",
        "Which of the job's K runs (runs: K in the case) the row is, each a fresh runner process; the "
        "over-runs table gives each figure's mean, 95% interval (Student t) and CV over them.",
        "",
    ),
    (
        "conditions",
        "运行条件",
        "The host and device just before and after the job (host/conditions.py): idle, or busy with the "
        "reason (CPUs over half busy, device over 5% utilised at idle, another process on the device, "
        "another container); non-idle clock-throttle reasons; the page cache it ran with.",
        "",
    ),
    (
        "latency",
        "延迟",
        "Per-batch core time of the core pass: p50 / p90 / p99 (ms) over its n model calls; a percentile of "
        "fewer than 100 calls is coarse.",
        "",
    ),
)


def definitions() -> List[Tuple[str, str, str, str]]:
    """The metric definitions (docs/metrics.md) the HTML report lists: index, Chinese title, definition,
    the reference's note; the job's columns first, then every row of the metric table."""
    figures = [
        (metric.label(), metric.title_zh, metric.definition, metric.reference_note)
        for metric in table.METRICS
    ]
    return list(_JOB_DEFINITIONS) + figures
