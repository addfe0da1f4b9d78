"""The result document (docs/result_schema.md), built here and nowhere else in the runner: the skeleton
with what is known before anything runs, each stage's section from its measured figures, the MFU section,
the error section, and ``conform``, which holds the finished document to its schema (schema.py) before it
is written.
"""

import json
import os
import traceback
from dataclasses import fields
from typing import Any, Dict, List, NamedTuple, Optional, Sequence

import torch

from . import metrics, protocol, schema
from .runconfig import Config
from .toolkits.base import Toolkit

GIB = float(1 << 30)
#: the most keys ``conform`` drops from one document before it gives up
MAX_DROPPED = 64


def rounded_s(seconds: float) -> float:
    """Seconds as the document gives them (microseconds)."""
    return round(seconds, 6)


def since_start(unix_times: Dict[str, float]) -> Dict[str, float]:
    """{name: Unix time} as seconds after the runner started (never below 0)."""
    started = protocol.runner_started_at()
    return {name: rounded_s(max(0.0, when - started)) for name, when in unix_times.items()}


class StageRun(NamedTuple):
    """What a stage measured (stage.py's run_stage), before it becomes the stage's section."""

    name: str  # val or infer
    toolkit: Toolkit
    dtype: torch.dtype
    channels_last: bool
    counts: Dict[str, int]  # batches, padded_slots over all passes
    warmup_s: float
    warm_s: List[float]  # per warm-up call
    waited_s: float  # for the pipeline to be started, before the passes
    totals: metrics.StageTotals  # the whole passes
    core_batches_s: List[float]  # the core pass, per call
    core_wall_s: float
    held_batches: int
    held_bytes: int
    deterministic: bool
    timing_method: str
    accuracy: metrics.Accuracy


def stage_section(config: Config, run: StageRun) -> Dict[str, Any]:
    """``stages.<stage>`` of the document."""
    toolkit, totals = run.toolkit, run.totals
    precision = toolkit.settings.precision
    n = len(config.dataset.samples)
    images = config.repeat * n
    core_s = sum(run.core_batches_s)  # one pass's worth of calls: n images
    section = {
        "toolkit": toolkit.name,
        "toolkit_notes": [str(note) for note in toolkit.notes],
        "precision": precision,
        "precision_note": None
        if precision == config.precision
        else f"val runs {precision}: the run's precision {config.precision} is the infer stage's",
        "input_dtype": str(run.dtype).replace("torch.", ""),
        "channels_last": bool(run.channels_last),
        "batch_size": config.batch_size,
        "n_images": len(config.dataset.samples),
        "passes": config.repeat,
        "images": images,
        "batches": run.counts["batches"],
        "padded_slots": run.counts["padded_slots"],
        "export_s": rounded_s(toolkit.durations.get("export_s", 0.0)),
        "compile_s": rounded_s(toolkit.durations.get("compile_s", 0.0)),
        "warmup_s": rounded_s(run.warmup_s),
        "warmup_batches": config.warmup,
        "warmup_latency_ms": metrics.latency_ms(run.warm_s) if run.warm_s else None,
        "pipeline_wait_s": rounded_s(run.waited_s),
        "whole_s": rounded_s(totals.whole_s),
        "pass_whole_s": [rounded_s(s) for s in totals.pass_whole_s],
        "core_s": rounded_s(core_s),
        "core_in_pipeline_s": rounded_s(totals.core_s),
        "core_ratio": metrics.core_ratio(totals.core_batches_s, run.core_batches_s),
        "core_pass": {
            "images": n,
            "batches": len(run.core_batches_s),
            "held_batches": run.held_batches,
            "held_gib": round(run.held_bytes / GIB, 4),
            "wall_s": rounded_s(run.core_wall_s),
        },
        "h2d_s": rounded_s(totals.h2d_s),
        "d2h_s": rounded_s(totals.d2h_s),
        "throughput_whole_img_per_s": metrics.rate(images, totals.whole_s),
        "throughput_core_img_per_s": metrics.rate(n, core_s),
        "throughput_core_in_pipeline_img_per_s": metrics.rate(images, totals.core_s),
        "latency_ms": metrics.latency_ms(run.core_batches_s),
        "latency_in_pipeline_ms": metrics.latency_ms(totals.core_batches_s),
        "deterministic_across_passes": run.deterministic,
        "timing_method": run.timing_method,
        "calibration": config.calibration if run.name == protocol.STAGE_INFER else None,
    }
    section.update(run.accuracy.as_dict())
    return section


def mfu_section(config: Config, flops: int, core_img_per_s: Optional[float]) -> Dict:
    """The ``mfu`` section: MFU from the given peak (protocol.mfu), or why there is none."""
    section = {
        "mfu": None,
        "mfu_flagperf_convention": None,
        "peak_flops_per_s": config.peak_flops,
        "peak_source": config.peak_source,
        "precision": config.precision,
        "flagperf_flops_per_image": protocol.FLAGPERF_FLOPS_PER_IMAGE,
        "reason": None,
    }
    if config.peak_flops is None:
        section["reason"] = "no --peak-flops given: the runner never guesses a device's peak"
    elif core_img_per_s is None:
        section["reason"] = "infer core time is zero"
    else:
        section["mfu"], section["mfu_flagperf_convention"] = protocol.mfu(
            flops, core_img_per_s, config.peak_flops
        )
    return section


def _config(args: Dict[str, Any]) -> Dict[str, Any]:
    """Every CLI value; an option whose key the schema marks optional (added since) is left out when not
    given, as documents written before it lack it (read as None either way)."""
    optional = {f.name for f in fields(schema.Config) if f.metadata["present"] != schema.PRESENT_ALWAYS}
    return {key: value for key, value in args.items() if value is not None or key not in optional}


def skeleton(config: Config) -> Dict:
    """The result document with what is known before anything runs."""
    ds, weights = config.dataset, config.weights
    meaningful, why = config.case.meaningful_accuracy(weights)
    warnings: List[str] = []
    if config.max_images is not None:
        warnings.append(f"subset: only the first {len(ds.samples)} images were used (--max-images)")
    if config.decoder.warning:
        warnings.append(config.decoder.warning)
    return {
        "schema": protocol.SCHEMA_NAME,
        "schema_version": protocol.SCHEMA_VERSION,
        "metric_version": protocol.METRIC_VERSION,
        "status": None,
        "error": None,
        "warnings": warnings,
        "case": config.case.name,
        "config": _config(config.args),
        "started_at_unix": round(protocol.runner_started_at(), 3),
        "finished_at_unix": None,
        "data": {
            "root": os.path.abspath(ds.root),
            "layout": ds.layout,
            "n_images": len(ds.samples),
            "max_images": config.max_images,
            "labels_source": ds.labels_source,
            "md5": ds.md5,
            "decoder": config.decoder.description,
            "resize": config.decoder.resize,
            "decoder_fallback_reason": config.decoder.fallback_reason,
            "decode_processes": config.decoder.processes,
            "cpu_fallback_images": None,
            "cpu_fallback_reasons": None,
            "preprocessing": config.case.preprocessing._asdict(),
            "decoded_image_cache": False,
            "workers": config.workers,
        },
        "weights": {
            "spec": weights.spec,
            "path": weights.path,
            "sha256": weights.sha256,
            "name_sha256_prefix": weights.name_sha256_prefix,
            "verified": weights.verified,
            "reference": weights.reference,
            "seed": weights.seed,
            "accuracy_meaningful": meaningful,
            "accuracy_meaningful_reason": why,
        },
        "artefacts": config.artefacts,
        "environment": None,
        "durations": {
            "load_s": None,
            "export_s": None,
            "compile_s": None,
            "warmup_s": None,
            "setup_s": None,
            "loader_start_s": None,
            "e2e_time_s": None,
        },
        "stages": dict.fromkeys(protocol.PASS_STAGES),
        "agreement_top1": None,
        "accuracy_gate": None,
        "memory": None,
        "flops_per_image": None,
        "flops_method": None,
        "mfu": None,
    }  # "mlperf": a LoadGen scenario's section, only where one ran


def error_section(stage: str, step: Optional[str], exc: BaseException) -> Dict[str, Any]:
    """``error`` of a run that failed in ``stage``/``step`` with ``exc`` (while handling it), its texts
    within the schema's bounds (a traceback keeps its end, where the failure is)."""
    return {
        "stage": stage,
        "step": step,
        "type": type(exc).__name__,
        "message": str(exc)[: schema.LONG_TEXT_MAX],
        "traceback": traceback.format_exc()[-schema.LONG_TEXT_MAX :],
    }


def conform(doc: Dict[str, Any]) -> Dict[str, Any]:
    """``doc`` as it will be written (JSON: tuples become lists) and as the orchestrator will read it
    (schema.parse): the same when it conforms. Otherwise each value that breaks the schema is dropped (the
    nearest enclosing key that may be null is set to null, a warning says which and why) and the run is
    failed at step "schema" of the report unless it had failed already; schema.Invalid when no such key
    can hold it (nothing to write)."""
    written = json.loads(json.dumps(doc))
    for _ in range(MAX_DROPPED):  # each round nulls one more key, or returns
        try:
            schema.parse(written)
            return written
        except schema.Invalid as exc:
            keys = schema.nullable(exc.keys)
            if keys is None or not isinstance(written.get("warnings"), list):
                raise
            _set_null(written, keys)
            written["warnings"].append("%s dropped from the result: %s" % (".".join(keys), exc))
            if written.get("status") != protocol.STATUS_FAILED or written.get("error") is None:
                written["status"] = protocol.STATUS_FAILED
                written["error"] = {
                    "stage": "report",
                    "step": "schema",
                    "type": type(exc).__name__,
                    "message": "the result breaks its schema (docs/result_schema.md): %s" % exc,
                    "traceback": "",
                }
    schema.parse(written)
    return written


def _set_null(doc: Dict[str, Any], keys: Sequence[str]) -> None:
    node = doc
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = None
