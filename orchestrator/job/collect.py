"""Read a result document through the one typed reader (``runner_in_container.schema``) and derive its
figures (``metrics.derived``: the rows of the metric table, MFU from the host's peak table).

Every result the orchestrator takes, fetched from a job or read back from the store, comes through ``read``:
within bounds (``bounded``: size, depth, no NaN or Infinity) and whole, typed and within its physical bounds
(``schema.parse``), or ``ResultInvalid`` with one line naming the field. MFU is recomputed from the vendor's
peak table for the device model the host's SMI reported, per metrics.md.
"""

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from orchestrator.metrics import derived
from orchestrator.metrics.derived import Derived
from orchestrator.safeio import bounded
from runner_in_container import schema
from runner_in_container.protocol import STAGE_INFER, STAGE_MLPERF, STATUS_FAILED_ACCURACY
from vendors.vendor import Vendor

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
    val: Optional[schema.Stage]  # None: no val stage (stages: [infer])
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
    assert infer is not None and typed.environment is not None
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


def window_images(typed: schema.Result) -> Dict[str, int]:
    """The images run in each monitor window of a result with figures: the infer stage's, and an MLPerf job's
    LoadGen performance runs' (Server: all its search runs'; queries x samples per query, a sample one
    image)."""
    assert typed.stages.infer is not None
    out = {STAGE_INFER: typed.stages.infer.images}
    if typed.mlperf is not None:
        runs = typed.mlperf.search if typed.mlperf.search is not None else [typed.mlperf.performance]
        out[STAGE_MLPERF] = sum(run.queries * run.samples_per_query for run in runs)
    return out


def derive(
    result: Result,
    vendor: Vendor,
    device_model: Optional[str],
    host: Optional[Mapping[str, Any]] = None,
    own_peaks: Mapping[str, Tuple[float, str]] = MappingProxyType({}),
) -> Derived:
    """The derived figures of a result with figures (``metrics.derived``: MFU from the host's ``own_peaks``
    or ``vendor``'s peak table for ``device_model``, the host figures from the host monitor's ``host``
    summary of the window the job's figures were measured under); ResultInvalid when one breaks its
    bounds."""
    try:
        return derived.derive(result.typed, vendor, device_model, host, own_peaks)
    except schema.Invalid as exc:
        raise ResultInvalid("derived figures: %s" % exc) from None


def read_derived(doc: Any) -> Derived:
    """The stored derived figures in the decoded ``doc``; ResultInvalid naming the field unless they follow
    ``metrics.derived``."""
    try:
        return derived.from_stored(doc)
    except schema.Invalid as exc:
        raise ResultInvalid("derived figures: %s" % exc) from None


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
