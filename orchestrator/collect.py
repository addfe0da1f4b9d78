"""Read a result document through the one typed reader (``runner_in_container.schema``) and derive the
table figures the host side owns (MFU).

Every result the orchestrator takes, fetched from a job or read back from the store, comes through ``read``:
within bounds (``bounded``: size, depth, no NaN or Infinity) and whole, typed and within its physical bounds
(``schema.parse``), or ``ResultInvalid`` with one line naming the field. MFU is recomputed from the vendor's
peak table for the device model the host's SMI reported, per metrics.md.
"""

from dataclasses import dataclass
from typing import Any, Dict, Optional, Union

from runner_in_container import protocol, schema
from runner_in_container.protocol import STATUS_FAILED_ACCURACY
from vendors.base import Vendor

from . import bounded

#: the largest result.json read (a real one is about 10 KiB)
MAX_RESULT_BYTES = 4 << 20


@dataclass(frozen=True)
class Figures:
    """The typed sections of a result with figures (status ok or failed_accuracy) the orchestrator reads."""

    toolkit: str
    precision: str
    e2e_time_s: float
    flops_per_image: float
    memory: schema.Memory
    device: schema.Device
    accuracy_gate: schema.AccuracyGate
    accuracy_meaningful: bool
    val: schema.Stage
    infer: schema.Stage
    #: 2; version 1 wrote "metrics.md/1"
    metric_version: Union[int, str]
    core_in_pipeline_img_per_s: Optional[float]
    core_ratio: Optional[float]
    loader_start_s: Optional[float]


@dataclass(frozen=True)
class Result:
    """A valid result: the document as the runner wrote it (stored as is), its typed reading and, when it
    carries figures, the sections read from it."""

    doc: Dict[str, Any]
    typed: schema.Result
    status: str
    figures: Optional[Figures]


class ResultInvalid(ValueError):
    """The result document is not a whole result within its bounds (one line naming the field)."""


def load_file(path: str) -> bytes:
    """The bytes of the result file ``path`` (a regular file, read within bounds); ResultInvalid otherwise,
    OSError when it cannot be opened."""
    try:
        return bounded.read_regular(path, MAX_RESULT_BYTES)
    except bounded.Refused as exc:
        raise ResultInvalid("result.json: %s" % exc) from None


def read_bytes(data: bytes) -> Result:
    """The result in the bytes ``data`` of a result file (JSON within bounds); ResultInvalid otherwise."""
    try:
        doc = bounded.loads(data)
    except bounded.Refused as exc:
        raise ResultInvalid("result.json: %s" % exc) from None
    return read(doc)


def read(doc: Any) -> Result:
    """The result in the decoded document ``doc``; ResultInvalid unless ``schema.parse`` takes it."""
    try:
        typed = schema.parse(doc)
    except schema.Invalid as exc:
        raise ResultInvalid("result.json: %s" % exc) from None
    figures = _figures(typed) if typed.status in schema.FIGURES_PRESENT else None
    return Result(doc, typed, typed.status, figures)


def _figures(typed: schema.Result) -> Figures:
    """The sections a result with figures carries (``schema.parse`` checked that they are there)."""
    val, infer = typed.stages.val, typed.stages.infer
    assert val is not None and infer is not None and typed.environment is not None
    assert typed.memory is not None and typed.accuracy_gate is not None
    assert typed.flops_per_image is not None
    return Figures(
        toolkit=typed.config.toolkit,
        precision=typed.config.precision,
        e2e_time_s=typed.durations.e2e_time_s,
        flops_per_image=typed.flops_per_image,
        memory=typed.memory,
        device=typed.environment.device,
        accuracy_gate=typed.accuracy_gate,
        accuracy_meaningful=typed.weights.accuracy_meaningful,
        val=val,
        infer=infer,
        metric_version=typed.metric_version,
        core_in_pipeline_img_per_s=infer.throughput_core_in_pipeline_img_per_s,
        core_ratio=infer.core_ratio,
        loader_start_s=typed.durations.loader_start_s,
    )


@dataclass(frozen=True)
class Derived:
    """The derived figures as stored beside a result (``derive``, and the monitor's source and MPS note that
    hostrun adds), declared like the result so that a stored cell is read through the same checks."""

    tool: str = schema.text()
    precision: str = schema.text()
    e2e_time_s: float = schema.seconds()
    p_val_whole: float = schema.img_per_s()
    p_val_core: float = schema.img_per_s()
    p_infer_whole: float = schema.img_per_s()
    p_infer_core: float = schema.img_per_s()
    acc_val_top1: float = schema.percent()
    acc_infer_top1: float = schema.percent()
    acc_meaningful: bool = schema.flag()
    mem_used_gib: Optional[float] = schema.gib()
    mem_total_gib: Optional[float] = schema.gib()
    mem_source: Optional[str] = schema.text()
    device_model: Optional[str] = schema.text()
    mfu: Optional[float] = schema.ratio()
    mfu_flagperf: Optional[float] = schema.ratio()
    peak_flops: Optional[float] = schema.flops_per_s()
    peak_source: Optional[str] = schema.text()
    mfu_note: Optional[str] = schema.text()
    p_infer_core_in_pipeline: Optional[float] = schema.img_per_s(present="optional")
    core_ratio: Optional[float] = schema.ratio(present="optional")
    loader_start_s: Optional[float] = schema.seconds(present="optional")
    metric_version: Union[int, str, None] = schema.metric_version(present="optional")
    samples_source: Optional[str] = schema.text(present="optional")
    mps: Optional[str] = schema.text(present="optional")


def check_derived(doc: Any) -> None:
    """ResultInvalid unless the decoded stored derived figures ``doc`` follow ``Derived``."""
    try:
        schema.parse_as(Derived, doc)
    except schema.Invalid as exc:
        raise ResultInvalid("derived figures: %s" % exc) from None


def mfu(
    flops_per_image: float,
    p_infer_core: Optional[float],
    vendor: Vendor,
    device_model: Optional[str],
    precision: str,
) -> Dict[str, Any]:
    """MFU and the FlagPerf-convention figure from the vendor peak table; None when unknown."""
    peak = vendor.peak_flops(device_model or "", precision) if device_model else None
    if peak is None:
        reason = "no peak for %r at %s in vendor %s" % (device_model, precision, vendor.name)
        return {
            "mfu": None,
            "mfu_flagperf": None,
            "peak_flops": None,
            "peak_source": None,
            "mfu_note": reason,
        }
    flops, source = peak
    value, flagperf = protocol.mfu(flops_per_image, p_infer_core, flops)
    return {
        "mfu": value,
        "mfu_flagperf": flagperf,
        "peak_flops": flops,
        "peak_source": source,
        "mfu_note": None,
    }


def derive(result: Result, vendor: Vendor, device_model: Optional[str]) -> Dict[str, Any]:
    """The figures of the results table (reference columns), from a result with figures; ResultInvalid when
    they break ``Derived`` (an MFU beyond any physical sense from figures each within its own bounds)."""
    figures = result.figures
    assert figures is not None
    val, infer, memory = figures.val, figures.infer, figures.memory
    stage_memory = memory.stages.infer
    model = device_model or figures.device.name
    out: Dict[str, Any] = {
        "tool": figures.toolkit,
        "precision": figures.precision,
        "e2e_time_s": figures.e2e_time_s,
        "p_val_whole": val.throughput_whole_img_per_s,
        "p_val_core": val.throughput_core_img_per_s,
        "p_infer_whole": infer.throughput_whole_img_per_s,
        "p_infer_core": infer.throughput_core_img_per_s,
        "acc_val_top1": val.top1_pct,
        "acc_infer_top1": infer.top1_pct,
        "acc_meaningful": figures.accuracy_meaningful,
        "mem_used_gib": memory.mem_used_gib,
        "mem_total_gib": memory.mem_total_gib,
        "mem_source": stage_memory.mem_used_source if stage_memory is not None else None,
        "device_model": model,
        "p_infer_core_in_pipeline": figures.core_in_pipeline_img_per_s,
        "core_ratio": figures.core_ratio,
        "loader_start_s": figures.loader_start_s,
        "metric_version": figures.metric_version,
    }
    core = infer.throughput_core_img_per_s
    out.update(mfu(figures.flops_per_image, core, vendor, model, figures.precision))
    check_derived(out)
    return out


def accuracy_failure(result: Result) -> Optional[str]:
    """The reason when the case's accuracy gate failed, else None."""
    figures = result.figures
    if figures is None:
        return None
    gate = figures.accuracy_gate
    if result.status == STATUS_FAILED_ACCURACY or gate.passed is False:
        target = "none" if gate.target_top1_pct is None else "%.2f%%" % gate.target_top1_pct
        return "infer top-1 %.2f%% below the gate %s: %s" % (figures.infer.top1_pct, target, gate.reason)
    return None
