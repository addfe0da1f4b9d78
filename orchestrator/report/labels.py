"""Titles of columns, fields and sections in English and in the reference's Chinese (FlagPerf's README).

English is the default. Column keys are those of ``tables.RESULT_COLUMNS`` and ``tables.ENV_COLUMNS``;
the English titles are the lead's, the Chinese ones the labels of the reference's metric list and
environment sections.
"""

from typing import Dict, List, Sequence, Tuple

from orchestrator.report import tables

LANGS = ("en", "zh")

_RESULT_ZH = {
    "host": "主机",
    "vendor": "厂商",
    "device": "设备",
    "tool": "推理工具",
    "precision": "数据精度",
    "bs": "批尺寸",
    "e2e_time": "端到端时间 (s)",
    "p_val_whole": "验证总吞吐量",
    "p_val_core": "验证计算吞吐量",
    "p_infer_whole": "推理总吞吐量",
    "p_infer_core": "*推理计算吞吐量",
    "mfu": "*计算卡使用率",
    "acc": "推理结果 (验证/推理)",
    "mem": "硬件存储使用 (GiB)",
    "state": "状态",
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
    "how": ("How measured", "测量方法"),
    "metrics": ("Metric definitions", "指标列表"),
    "per_job": ("Per job: constants, sources, checksums", "每个任务: 常数、来源、校验和"),
    "compare": ("Comparison", "对比"),
    "failed": ("Failed jobs", "失败的任务"),
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
        return [(key, _RESULT_ZH.get(key, title)) for key, title in tables.RESULT_COLUMNS]
    return list(tables.RESULT_COLUMNS)


def env_columns(lang: str) -> Sequence[Tuple[str, str]]:
    """``tables.ENV_COLUMNS`` with titles in ``lang``."""
    if lang == "zh":
        return [
            (key, ENV_FIELDS[key][1] if key in ENV_FIELDS else title) for key, title in tables.ENV_COLUMNS
        ]
    return tables.ENV_COLUMNS


#: metric definitions (metrics.md, metric version metrics.md/1): index, zh label, definition (en),
#: the reference's own note (特殊说明) where it has one
METRICS: Sequence[Tuple[str, str, str, str]] = (
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
        "mem",
        "硬件存储使用",
        "Peak device memory held by the runner during the infer stage / the device's total "
        "(GiB); the source of each figure is recorded per job.",
        "通常称为“显存”,单位为GiB",
    ),
    ("e2e_time", "端到端时间", "Runner process start to result written (s).", "总时间+Perf初始化等时间"),
    (
        "p_val_whole",
        "验证总吞吐量",
        "R x N / wall time of the val stage's passes (PyTorch): reading, decoding, "
        "preprocessing, copies, compute, top-k; every pass decodes again.",
        "实际验证图片数除以总验证时间",
    ),
    (
        "p_val_core",
        "验证计算吞吐量",
        "R x N / sum over batches of the model call alone, input already on the "
        "device in the engine's dtype and layout, timed with device events.",
        "不包含IO部分耗时",
    ),
    (
        "p_infer_whole",
        "推理总吞吐量",
        "As p_val_whole, for the toolkit's compiled model.",
        "实际推理图片数除以总推理时间",
    ),
    (
        "p_infer_core",
        "推理计算吞吐量",
        "As p_val_core, for the toolkit's compiled model; the same window for every toolkit.",
        "不包含IO部分耗时",
    ),
    ("latency", "延迟", "Per-batch core time over all batches of all passes: p50 / p90 / p99 (ms).", ""),
    (
        "mfu",
        "计算卡使用率",
        "flops_per_image x p_infer_core / dense peak FLOP/s of the detected device at the "
        "precision that ran; no known peak -> null, never a guess. The reference's convention (4.12e9 "
        "multiply-adds counted as FLOPs) is shown beside it for comparison only.",
        "model flops utilization",
    ),
    (
        "acc",
        "推理结果",
        "Top-1 over all N images, percent (val / infer); n/m when the weights make accuracy not "
        "meaningful (random or unverified).",
        "单位为top1分类准确率(acc1)",
    ),
)
