"""Read a fetched result document through one typed reader and derive the table figures the host side
owns (MFU).

The runner's schema is documented in docs/result_schema.md; the fields read here (``Figures``)
are the ones the orchestrator uses, each checked for presence and type. MFU is recomputed from
the vendor's peak table for the device model the host's SMI reported, per metrics.md.
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from runner_in_container import protocol
from runner_in_container.protocol import SCHEMA_NAME, SCHEMA_VERSION, STATUS_FAILED_ACCURACY, STATUS_OK
from vendors.base import Vendor

_NUMBER = (int, float)


@dataclass(frozen=True)
class StageFigures:
    """The figures of one stage (val or infer) the orchestrator reads."""

    images: int
    throughput_whole_img_per_s: float
    throughput_core_img_per_s: float
    top1_pct: float
    top5_pct: float


@dataclass(frozen=True)
class Figures:
    """The fields of a result with figures (status ok or failed_accuracy) the orchestrator reads."""

    toolkit: str
    precision: str
    e2e_time_s: float
    flops_per_image: float
    memory: Dict[str, Any]
    device: Dict[str, Any]
    accuracy_gate: Dict[str, Any]
    accuracy_meaningful: bool
    val: StageFigures
    infer: StageFigures
    #: metric version 2 and later (None in older documents)
    metric_version: Union[int, str, None]
    core_in_pipeline_img_per_s: Optional[float]
    core_ratio: Optional[float]
    loader_start_s: Optional[float]


@dataclass(frozen=True)
class Result:
    """A fetched result.json: the document as the runner wrote it (stored as is) and, when it carries
    figures, the fields read from it, typed."""

    doc: Dict[str, Any]
    status: str
    figures: Optional[Figures]


#: where each field lies in the document, and its type
_STAGE_FIELDS: Sequence[Tuple[str, Tuple[str, ...], Any]] = (
    ("images", ("images",), int),
    ("throughput_whole_img_per_s", ("throughput_whole_img_per_s",), _NUMBER),
    ("throughput_core_img_per_s", ("throughput_core_img_per_s",), _NUMBER),
    ("top1_pct", ("top1_pct",), _NUMBER),
    ("top5_pct", ("top5_pct",), _NUMBER),
)
_FIELDS: Sequence[Tuple[str, Tuple[str, ...], Any]] = (
    ("toolkit", ("config", "toolkit"), str),
    ("precision", ("config", "precision"), str),
    ("e2e_time_s", ("durations", "e2e_time_s"), _NUMBER),
    ("flops_per_image", ("flops_per_image",), _NUMBER),
    ("memory", ("memory",), dict),
    ("device", ("environment", "device"), dict),
    ("accuracy_gate", ("accuracy_gate",), dict),
    ("accuracy_meaningful", ("weights", "accuracy_meaningful"), bool),
)
#: fields that older documents lack (None then)
_OPTIONAL_FIELDS: Sequence[Tuple[str, Tuple[str, ...], Any]] = (
    ("metric_version", ("metric_version",), (int, str)),  # 2; version 1 wrote "metrics.md/1"
    ("core_in_pipeline_img_per_s", ("stages", "infer", "throughput_core_in_pipeline_img_per_s"), _NUMBER),
    ("core_ratio", ("stages", "infer", "core_ratio"), _NUMBER),
    ("loader_start_s", ("durations", "loader_start_s"), _NUMBER),
)


#: statuses whose documents carry every figure (failed_accuracy: all there, flagged)
FIGURES_PRESENT = (STATUS_OK, STATUS_FAILED_ACCURACY)


class ResultInvalid(ValueError):
    """The result document does not follow the schema (message names the field)."""


def _read(doc: Dict[str, Any], path: Sequence[str], kind: Any) -> Any:
    """The field at ``path``, checked to be of ``kind`` (a number finite); ResultInvalid naming it."""
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ResultInvalid("result.json: missing field %s" % ".".join(path))
        node = node[key]
    if isinstance(node, bool) and kind is not bool:
        raise ResultInvalid("result.json: %s is a boolean" % ".".join(path))
    if not isinstance(node, kind):
        raise ResultInvalid("result.json: %s has type %s" % (".".join(path), type(node).__name__))
    if isinstance(node, float) and not math.isfinite(node):
        raise ResultInvalid("result.json: %s is not finite" % ".".join(path))
    return node


def _optional(doc: Dict[str, Any], path: Sequence[str], kind: Any) -> Any:
    """The field at ``path`` checked as ``_read`` does; None where it (or its section) is missing or null."""
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return _read(doc, path, kind)


def _stage(doc: Dict[str, Any], stage: str) -> StageFigures:
    return StageFigures(
        **{name: _read(doc, ("stages", stage) + path, kind) for name, path, kind in _STAGE_FIELDS}
    )


def read(doc: Any) -> Result:
    """The result in ``doc``; ResultInvalid unless it is a result of this schema version, complete when it
    carries figures."""
    if not isinstance(doc, dict):
        raise ResultInvalid("result.json: top level is not an object")
    if doc.get("schema") != SCHEMA_NAME or doc.get("schema_version") != SCHEMA_VERSION:
        raise ResultInvalid(
            "result.json: schema %r v%r, expected %s v%d"
            % (doc.get("schema"), doc.get("schema_version"), SCHEMA_NAME, SCHEMA_VERSION)
        )
    status = doc.get("status")
    if status not in FIGURES_PRESENT:
        return Result(doc, str(status), None)  # a failed run's document carries the error, not the figures
    fields = {name: _read(doc, path, kind) for name, path, kind in _FIELDS}
    fields.update({name: _optional(doc, path, kind) for name, path, kind in _OPTIONAL_FIELDS})
    return Result(doc, status, Figures(val=_stage(doc, "val"), infer=_stage(doc, "infer"), **fields))


def mfu(
    flops_per_image: float, p_infer_core: float, vendor: Vendor, device_model: Optional[str], precision: str
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
    """The figures of the results table (reference columns), from a result with figures."""
    figures = result.figures
    assert figures is not None
    val, infer, memory = figures.val, figures.infer, figures.memory
    model = device_model or figures.device.get("name")
    out = {
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
        "mem_used_gib": memory.get("mem_used_gib"),
        "mem_total_gib": memory.get("mem_total_gib"),
        "mem_source": (memory.get("stages") or {}).get("infer", {}).get("mem_used_source"),
        "device_model": model,
        "p_infer_core_in_pipeline": figures.core_in_pipeline_img_per_s,
        "core_ratio": figures.core_ratio,
        "loader_start_s": figures.loader_start_s,
        "metric_version": figures.metric_version,
    }
    out.update(mfu(figures.flops_per_image, out["p_infer_core"], vendor, model, figures.precision))
    return out


def accuracy_failure(result: Result) -> Optional[str]:
    """The reason when the case's accuracy gate failed, else None."""
    figures = result.figures
    gate = figures.accuracy_gate if figures is not None else {}
    if figures is not None and (result.status == STATUS_FAILED_ACCURACY or gate.get("passed") is False):
        return "infer top-1 %.2f%% below the gate %.2f%%: %s" % (
            figures.infer.top1_pct,
            gate.get("target_top1_pct") or float("nan"),
            gate.get("reason", ""),
        )
    return None
