"""Check a fetched result document and derive the table figures the host side owns (MFU).

The runner's schema is documented in docs/result_schema.md; the fields checked here
are the ones the orchestrator reads. MFU is recomputed from the vendor's peak
table for the device model the host's SMI reported, per metrics.md.
"""

import math
from typing import Any, Dict, Optional, Sequence, Tuple

from runner_in_container import protocol
from runner_in_container.protocol import SCHEMA_NAME, SCHEMA_VERSION, STATUS_FAILED_ACCURACY, STATUS_OK
from vendors.base import Vendor

_NUMBER = (int, float)
_STAGE_FIELDS = (
    ("images", int),
    ("throughput_whole_img_per_s", _NUMBER),
    ("throughput_core_img_per_s", _NUMBER),
    ("top1_pct", _NUMBER),
    ("top5_pct", _NUMBER),
)
_REQUIRED: Sequence[Tuple[Tuple[str, ...], Any]] = (
    (("status",), str),
    (("config", "toolkit"), str),
    (("config", "precision"), str),
    (("config", "batch_size"), int),
    (("durations", "e2e_time_s"), _NUMBER),
    (("flops_per_image",), _NUMBER),
    (("memory",), dict),
    (("environment", "device"), dict),
    (("accuracy_gate",), dict),
    (("weights", "accuracy_meaningful"), bool),
) + tuple(((stage, key), kind) for stage in ("val", "infer") for key, kind in _STAGE_FIELDS)


#: statuses whose documents carry every figure (failed_accuracy: all there, flagged)
FIGURES_PRESENT = (STATUS_OK, STATUS_FAILED_ACCURACY)


class ResultInvalid(ValueError):
    """The result document does not follow the schema (message names the field)."""


def _get(doc: Dict[str, Any], path: Sequence[str]) -> Any:
    node: Any = doc
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise ResultInvalid("result.json: missing field %s" % ".".join(path))
        node = node[key]
    return node


def _stage_path(path: Tuple[str, ...]) -> Tuple[str, ...]:
    return ("stages",) + path if path[0] in ("val", "infer") else path


def validate(doc: Any) -> Dict[str, Any]:
    """Raise ResultInvalid unless ``doc`` is a complete result of this schema version."""
    if not isinstance(doc, dict):
        raise ResultInvalid("result.json: top level is not an object")
    if doc.get("schema") != SCHEMA_NAME or doc.get("schema_version") != SCHEMA_VERSION:
        raise ResultInvalid(
            "result.json: schema %r v%r, expected %s v%d"
            % (doc.get("schema"), doc.get("schema_version"), SCHEMA_NAME, SCHEMA_VERSION)
        )
    if doc.get("status") not in FIGURES_PRESENT:
        return doc  # a failed run's document carries the error, not the figures
    for path, kind in _REQUIRED:
        full = _stage_path(path)
        value = _get(doc, full)
        if isinstance(value, bool) and kind is not bool:
            raise ResultInvalid("result.json: %s is a boolean" % ".".join(full))
        if not isinstance(value, kind):
            raise ResultInvalid("result.json: %s has type %s" % (".".join(full), type(value).__name__))
        if isinstance(value, float) and not math.isfinite(value):
            raise ResultInvalid("result.json: %s is not finite" % ".".join(full))
    return doc


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


def derive(doc: Dict[str, Any], vendor: Vendor, device_model: Optional[str]) -> Dict[str, Any]:
    """The figures of the results table (reference columns), from a validated ok result."""
    stages = doc["stages"]
    val, infer = stages["val"], stages["infer"]
    config = doc["config"]
    memory = doc["memory"]
    model = device_model or doc["environment"]["device"].get("name")
    out = {
        "tool": config["toolkit"],
        "precision": config["precision"],
        "bs": config["batch_size"],
        "e2e_time_s": doc["durations"]["e2e_time_s"],
        "p_val_whole": val["throughput_whole_img_per_s"],
        "p_val_core": val["throughput_core_img_per_s"],
        "p_infer_whole": infer["throughput_whole_img_per_s"],
        "p_infer_core": infer["throughput_core_img_per_s"],
        "acc_val_top1": val["top1_pct"],
        "acc_infer_top1": infer["top1_pct"],
        "acc_meaningful": doc["weights"]["accuracy_meaningful"],
        "mem_used_gib": memory.get("mem_used_gib"),
        "mem_total_gib": memory.get("mem_total_gib"),
        "mem_source": (memory.get("stages") or {}).get("infer", {}).get("mem_used_source"),
        "device_model": model,
        "p_infer_core_in_pipeline": infer.get("throughput_core_in_pipeline_img_per_s"),
        "core_ratio": infer.get("core_ratio"),
        "loader_start_s": doc["durations"].get("loader_start_s"),
        "metric_version": doc.get("metric_version"),
    }
    out.update(mfu(doc["flops_per_image"], out["p_infer_core"], vendor, model, config["precision"]))
    return out


def accuracy_failure(doc: Dict[str, Any]) -> Optional[str]:
    """The reason when the case's accuracy gate failed, else None."""
    gate = doc.get("accuracy_gate") or {}
    if doc.get("status") == STATUS_FAILED_ACCURACY or gate.get("passed") is False:
        return "infer top-1 %.2f%% below the gate %.2f%%: %s" % (
            doc["stages"]["infer"]["top1_pct"],
            gate.get("target_top1_pct") or float("nan"),
            gate.get("reason", ""),
        )
    return None
