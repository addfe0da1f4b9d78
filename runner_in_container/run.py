"""The run: load, count FLOPs, val stage, infer stage, result document (metrics.md version 3).

The data pipeline starts first (its decoding processes, if any, start up while the model loads and
compiles) and is started and warm before any window. Each stage (stage.py) compiles the model with its
toolkit, warms it up, then makes R whole passes over all N images, then the core pass: one pass's worth of
model calls (N images, whatever R) over a bounded number of this set's batches, kept on the device from the
first pass, with nothing else working on it (the core figure and latency). The document is checked against
its schema before it is written (result.conform): the runner never writes what the orchestrator refuses.
"""

import os
import shutil
import sys
import time
import traceback
from typing import Dict, Optional, Tuple

import torch

from . import environment, metrics, protocol, result, schema
from .data.loader import Loader
from .data.pipeline import open_loader
from .device import Device
from .flops import count_flops
from .hold import hold
from .host_batches import example_batch
from .mlperf.scenario import Model, run_scenario
from .progress import Where
from .protocol import STAGE_MLPERF
from .runconfig import Config
from .stage import run_stage
from .toolkits.base import Forward


def _run_stages(
    config: Config, doc: Dict, dev: Device, where: Where, loader: Loader
) -> Tuple[Dict[str, torch.Tensor], Forward]:
    """Load the model, count its FLOPs, run the stages asked for (both, or infer alone) over ``loader``;
    each stage's last predictions, and the infer stage's compiled model."""
    where.enter("load")
    start = time.perf_counter()
    model = config.case.build(config.weights)
    doc["durations"]["load_s"] = result.rounded_s(time.perf_counter() - start)

    where.enter("flops")
    doc["flops_per_image"], doc["flops_method"] = count_flops(model, config.case.preprocessing.crop)
    example_u8 = example_batch(config.dataset, config.case.preprocessing, config.batch_size, config.workers)

    preds = {}
    for name, toolkit in zip(protocol.PASS_STAGES, (config.val_toolkit, config.infer_toolkit)):
        if toolkit is None:  # no val stage (--stages infer): its figures stay absent
            continue
        doc["stages"][name], doc["memory"]["stages"][name], preds[name], fn = run_stage(
            name, toolkit, model, config, dev, where, loader, example_u8
        )
        doc["environment"]["toolkits"][toolkit.name] = toolkit.versions()
        doc["durations"]["loader_start_s"] = result.rounded_s(loader.wait_started())
        if loader.start_phases is not None:
            doc["data"]["decode_start_s"] = result.since_start(loader.start_phases)
        if loader.cpu_fallbacks is not None:  # decoded on the device
            doc["data"]["cpu_fallback_images"] = sum(loader.cpu_fallbacks.values())
            doc["data"]["cpu_fallback_reasons"] = loader.cpu_fallbacks
    return preds, fn


def _measure(config: Config, doc: Dict, dev: Device, where: Where, loader: Loader) -> None:
    """Fill ``doc`` with the figures of a run, section by section (a failure keeps what was done)."""
    doc["environment"] = environment.collect(dev.facts())
    memory = dict(dev.totals(), mem_used_gib=None, stages=dict.fromkeys(protocol.PASS_STAGES))
    doc["memory"] = memory

    # started first: its decoding processes, if any, get ready while the model loads and compiles
    where.enter(protocol.STAGE_SETUP, "loader")
    loader.start()
    preds, fn = _run_stages(config, doc, dev, where, loader)
    settings = config.mlperf
    if settings is not None:
        infer = config.infer_toolkit
        doc["mlperf"] = run_scenario(
            settings,
            Model(fn, config.batch_size, infer.input_dtype(), infer.channels_last()),
            config.dataset,
            config.case.preprocessing,
            dev,
            config.workers,
            config.out,
            lambda step, **fields: where.enter(STAGE_MLPERF, step, scenario=settings.scenario, **fields),
        )
    del fn

    where.enter("report")
    for name in preds:
        warning = metrics.sharing_warning(name, doc["stages"][name])
        if warning:
            doc["warnings"].append(warning)
    infer = doc["stages"][protocol.STAGE_INFER]
    for key in ("export_s", "compile_s", "warmup_s"):
        doc["durations"][key] = infer[key]
    memory["mem_used_gib"] = memory["stages"][protocol.STAGE_INFER]["mem_used_gib"]
    if protocol.STAGE_VAL in preds:
        doc["agreement_top1"] = metrics.agreement(preds[protocol.STAGE_VAL], preds[protocol.STAGE_INFER])
    n = infer["n_images"]
    doc["accuracy_gate"] = config.case.accuracy_gate(
        config.weights, config.precision, n, 100.0 * infer["top1_count"] / n
    )
    doc["mfu"] = result.mfu_section(config, doc["flops_per_image"], infer["throughput_core_img_per_s"])
    doc["status"] = (
        protocol.STATUS_FAILED_ACCURACY if doc["accuracy_gate"]["passed"] is False else protocol.STATUS_OK
    )


def _finish(config: Config, doc: Dict) -> Optional[str]:
    """Stamp the end times, hold the document to its schema (result.conform: a value that breaks it fails
    the run, with an error event) and write result.json atomically; its path, or None (one line on stderr,
    nothing written) when the document cannot be made to conform."""
    now = time.time()
    doc["durations"]["e2e_time_s"] = round(now - protocol.runner_started_at(), 3)
    doc["finished_at_unix"] = round(now, 3)
    try:
        written = result.conform(doc)
    except schema.Invalid as exc:
        doc["status"] = protocol.STATUS_FAILED
        message = "result.json not written: it breaks its schema: %s" % exc
        protocol.emit("error", stage="report", step="schema", type=type(exc).__name__, message=message)
        sys.stderr.write("error: %s\n" % message)
        return None
    if written["status"] != doc["status"]:
        doc["status"] = written["status"]
        protocol.emit("error", **{key: written["error"][key] for key in ("stage", "step", "type", "message")})
    path = os.path.join(config.out, protocol.RESULT_FILE)
    protocol.write_json_atomic(path, written)
    return path


def run(config: Config) -> int:
    """Run the case; write result.json; the exit status.

    One loader serves both stages (each pass reads and decodes the files again); it is closed once the
    result is written (its processes' exit is no part of the case).
    """
    setup_s = time.time() - protocol.runner_started_at()
    os.makedirs(config.out, exist_ok=True)
    if config.engine_cache:
        os.makedirs(config.engine_cache, exist_ok=True)
    doc = result.skeleton(config)
    doc["durations"]["setup_s"] = round(setup_s, 3)
    where = Where()
    dev = config.dev
    loader = open_loader(
        config.decoder,
        config.dataset,
        config.batch_size,
        config.case.preprocessing,
        dev.device,
        config.workers,
        dev.pin_memory,
        config.spawned,
    )
    held = hold(config.infer_toolkit.settings.options, config.out, where.enter)
    if held:
        doc["warnings"].append(held)
    try:
        try:
            _measure(config, doc, dev, where, loader)
        except Exception as exc:
            traceback.print_exc()
            doc["status"] = protocol.STATUS_FAILED
            doc["error"] = result.error_section(where.stage, where.step, exc)
            protocol.emit(
                "error", stage=where.stage, step=where.step, type=type(exc).__name__, message=str(exc)
            )
        finally:
            shutil.rmtree(config.work_dir, ignore_errors=True)
        path = _finish(config, doc)
        if path is not None:
            protocol.emit("result", path=path, status=doc["status"])
    finally:
        loader.close()
    return {
        protocol.STATUS_OK: protocol.EXIT_OK,
        protocol.STATUS_FAILED_ACCURACY: protocol.EXIT_FAILED_ACCURACY,
    }.get(doc["status"], protocol.EXIT_FAILED)
