"""The stage loop: load, count FLOPs, val stage, infer stage, result document (metrics.md version 3).

The data pipeline starts first (its decoding processes, if any, start up while the model loads and
compiles) and is started and warm before any window. Each stage compiles the model with its toolkit,
warms it up, then makes R whole passes over all N images. Per batch: H2D copy of the uint8 batch
(none when the decoder made it on the device), normalisation on the device, the model call between two
device events (the forward time inside the pipeline, ``core_in_pipeline``), top-5 into a device
buffer. Per pass: one D2H copy of the predictions, accuracy on the host. No host sync per batch.
Then the core pass: one pass's worth of model calls (N images, whatever R) over a bounded number of this
set's batches, kept on the device from the first pass, with nothing else working on it (the core figure
and latency).
"""

import copy
import os
import shutil
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy
import torch

from . import environment, metrics, protocol, result
from .cases import Case, Weights
from .data import Dataset
from .data.decode import decode_rgb
from .data.decode_procs import Spawned
from .data.gpu import Decoder
from .data.loader import Loader
from .data.pipeline import open_loader
from .data.preprocess import Preprocessing, normalize, resize_crop_pil
from .device import Device
from .flops import count_flops
from .hold import hold
from .toolkits.base import Toolkit

PROGRESS_INTERVAL_S = 2.0
CALIBRATION_IMAGES = 500
#: distinct images in the compile and warm-up example batch
EXAMPLE_IMAGES = 16
#: the most batches the core pass keeps on the device, and the most memory they may take (one at least)
CORE_BATCHES = 8
CORE_BYTES = 2 << 30


class Config(NamedTuple):
    """Everything a run needs, checked by the CLI."""

    case: Case
    dataset: Dataset
    weights: Weights
    val_toolkit: Toolkit
    infer_toolkit: Toolkit
    calibration: Optional[Dict[str, Any]]  # what int8 calibration reads, for the result
    precision: str
    batch_size: int
    repeat: int
    dev: Device  # opened, its memory baseline taken
    decoder: Decoder  # PIL threads or the device decoder (data/gpu.py)
    spawned: Optional[Spawned]  # decoding processes spawned ahead for the loader
    workers: int
    warmup: int
    out: str
    work_dir: str  # scratch for exports and engines (toolkit settings point below it), removed at the end
    engine_cache: Optional[str]
    peak_flops: Optional[float]
    peak_source: Optional[str]
    max_images: Optional[int]
    args: Dict[str, Any]


class Where:
    """Which stage and step the run is in, for the error report."""

    def __init__(self) -> None:
        self.stage = protocol.STAGE_SETUP
        self.step: Optional[str] = None

    def enter(self, stage: str, step: Optional[str] = None, **fields: Any) -> None:
        self.stage, self.step = stage, step
        protocol.emit("stage", stage=stage, step=step, **fields)


class Progress:
    """Progress events every PROGRESS_INTERVAL_S seconds and at the end of each pass.

    The device's memory is sampled with each event (no sync: a host-side query).
    """

    def __init__(self, stage: str, total: int, dev: Device) -> None:
        self.stage, self.total, self.dev = stage, total, dev
        self.done = 0
        self.pass_index = 0
        self._last_t = time.perf_counter()
        self._last_done = 0

    def batch_done(self, valid: int) -> None:
        self.done += valid
        if time.perf_counter() - self._last_t >= PROGRESS_INTERVAL_S:
            self.report()

    def report(self) -> None:
        if self.done == self._last_done and self.done:
            return  # already reported (a timed event fell on the pass's last batch)
        now = time.perf_counter()
        self.dev.sample()
        protocol.emit(
            "progress",
            stage=self.stage,
            pass_index=self.pass_index,
            images_done=self.done,
            images_total=self.total,
            img_per_s=round((self.done - self._last_done) / max(now - self._last_t, 1e-9), 2),
        )
        self._last_t, self._last_done = now, self.done


def _r(seconds: float) -> float:
    return round(seconds, 6)


def _decoded(dataset: Dataset, pp: Preprocessing, index: int) -> numpy.ndarray:
    return resize_crop_pil(decode_rgb(dataset.read(index), dataset.location(index)), pp)


def _batch_indices(start: int, count: int, batch_size: int) -> List[int]:
    """Indices ``start`` .. up to ``count`` filled to ``batch_size`` by repeating them."""
    indices = list(range(start, min(start + batch_size, count)))
    return indices + [indices[i % len(indices)] for i in range(batch_size - len(indices))]


def decoded_batches(
    dataset: Dataset, pp: Preprocessing, batch_size: int, count: int
) -> Iterator[torch.Tensor]:
    """uint8 NCHW batches of the first ``count`` images, decoded in order on this thread.

    A short last batch is filled by repeating its images (for int8 calibration, never for measurement).
    """
    count = min(count, len(dataset.samples))
    for start in range(0, count, batch_size):
        arrays = [_decoded(dataset, pp, i) for i in _batch_indices(start, count, batch_size)]
        yield torch.from_numpy(numpy.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def example_batch(dataset: Dataset, pp: Preprocessing, batch_size: int, workers: int) -> torch.Tensor:
    """The compile and warm-up example: a uint8 NCHW batch of the set's first EXAMPLE_IMAGES images,
    decoded by ``workers`` threads, repeated to fill it (compile and warm-up need its shape, not more)."""
    count = min(EXAMPLE_IMAGES, batch_size, len(dataset.samples))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(lambda i: _decoded(dataset, pp, i), range(count)))
    indices = _batch_indices(0, count, batch_size)
    return torch.from_numpy(numpy.stack([arrays[i] for i in indices])).permute(0, 3, 1, 2).contiguous()


def calibration_source(
    dataset: Dataset, pp: Preprocessing, batch_size: int
) -> Tuple[Callable[[], Iterator[torch.Tensor]], Dict[str, Any]]:
    """For int8: (callable yielding normalised fp32 CPU batches of the set's first images, description)."""

    def batches() -> Iterator[torch.Tensor]:
        for u8 in decoded_batches(dataset, pp, batch_size, CALIBRATION_IMAGES):
            yield normalize(u8, pp, torch.float32, False)

    n = min(CALIBRATION_IMAGES, len(dataset.samples))
    return batches, {"images": n, "source": f"the first {n} images of the evaluation set (no separate set)"}


def run_pass(
    fn,
    loader: Loader,
    dev: Device,
    pp: Preprocessing,
    dtype: torch.dtype,
    channels_last: bool,
    n_images: int,
    progress: Progress,
    held: "HeldInputs",
) -> Tuple[metrics.PassTimes, torch.Tensor, metrics.Accuracy, Dict]:
    """One pass over every image: (times, CPU predictions, accuracy, batch counts); ``held`` is offered
    each batch's model input."""
    times = metrics.PassTimes()
    preds = metrics.Predictions(n_images, dev.device)
    labels: List[torch.Tensor] = []
    counts = {"batches": 0, "padded_slots": 0}
    start = time.perf_counter()
    for batch in loader:
        h2d, core = dev.interval(), dev.interval()
        h2d.start()
        images = batch.images.to(dev.device, non_blocking=dev.pin_memory)
        h2d.stop()
        x = normalize(images, pp, dtype, channels_last)
        held.offer(x)
        core.start()
        logits = fn(x)
        core.stop()
        preds.add(logits, batch.valid)
        labels.append(batch.labels[: batch.valid])
        times.h2d.append(h2d)
        times.core.append(core)
        counts["batches"] += 1
        counts["padded_slots"] += batch.images.shape[0] - batch.valid
        progress.batch_done(batch.valid)
    d2h = dev.interval()
    d2h.start()
    host = preds.to_host()
    d2h.stop()
    dev.synchronize()
    accuracy = metrics.count_accuracy(host, torch.cat(labels))
    times.whole_s = time.perf_counter() - start
    times.d2h.append(d2h)
    return times, host, accuracy, counts


class HeldInputs:
    """Model inputs of a stage's first batches, kept on the device for the core pass (bounded)."""

    def __init__(self, batches: int = CORE_BATCHES, max_bytes: int = CORE_BYTES) -> None:
        self.batches, self.max_bytes = batches, max_bytes
        self.inputs: List[torch.Tensor] = []
        self.bytes = 0

    def offer(self, x: torch.Tensor) -> None:
        """Keep ``x`` (a fresh tensor: nothing else writes it) while within the bounds."""
        size = x.numel() * x.element_size()
        if len(self.inputs) < self.batches and (not self.inputs or self.bytes + size <= self.max_bytes):
            self.inputs.append(x)
            self.bytes += size


def core_pass(fn, held: HeldInputs, batches: int, dev: Device) -> Tuple[List[float], float]:
    """``batches`` model calls cycling over the held inputs, each between two device events, nothing
    else on the device: (per-call seconds, wall seconds)."""
    dev.synchronize()
    start = time.perf_counter()
    intervals = []
    for number in range(batches):
        interval = dev.interval()
        interval.start()
        fn(held.inputs[number % len(held.inputs)])
        interval.stop()
        intervals.append(interval)
    dev.synchronize()
    return [interval.seconds() for interval in intervals], time.perf_counter() - start


def run_stage(
    name: str,
    toolkit: Toolkit,
    model: torch.nn.Module,
    config: Config,
    dev: Device,
    where: Where,
    loader: Loader,
    example_u8: torch.Tensor,
) -> Tuple[Dict, Dict, torch.Tensor]:
    """Compile and warm up on ``example_u8``, run R whole passes over ``loader``, then the core pass;
    (stage section, memory section, last predictions)."""
    pp, n = config.case.preprocessing, len(config.dataset.samples)
    precision = toolkit.settings.precision
    dev.release()
    dev.begin_stage()
    os.makedirs(toolkit.settings.work_dir, exist_ok=True)
    dtype, channels_last = toolkit.input_dtype(), toolkit.channels_last()

    where.enter(name, "compile", toolkit=toolkit.name, precision=precision)
    example = normalize(example_u8.to(dev.device), pp, dtype, channels_last)
    fn = toolkit.compile(copy.deepcopy(model).to(dev.device).eval(), example)

    where.enter(name, "warmup", batches=config.warmup)
    warm = []
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(config.warmup):
            interval = dev.interval()
            interval.start()
            fn(example)
            interval.stop()
            warm.append(interval)
        dev.synchronize()
    warmup_s = time.perf_counter() - start
    warm_s = [interval.seconds() for interval in warm[1:] or warm]  # the first call may initialise lazily
    dev.sample()
    del example

    wait_start = time.perf_counter()
    loader.wait_started()  # outside every window (metrics.md: loader_start_s)
    waited_s = time.perf_counter() - wait_start

    where.enter(name, "passes", passes=config.repeat, images=n)
    progress = Progress(name, config.repeat * n, dev)
    totals = metrics.StageTotals()
    counts = {"batches": 0, "padded_slots": 0}
    held = HeldInputs()
    deterministic = True
    last: Optional[torch.Tensor] = None
    with torch.no_grad():
        for index in range(config.repeat):
            progress.pass_index = index
            times, host, accuracy, pass_counts = run_pass(
                fn, loader, dev, pp, dtype, channels_last, n, progress, held
            )
            progress.report()
            totals.add(times)
            for key in counts:
                counts[key] += pass_counts[key]
            deterministic = deterministic and (last is None or torch.equal(last, host))
            last = host
            held.batches = len(held.inputs)  # held from the first pass only

        where.enter(name, "core", batches=len(loader), held_batches=len(held.inputs))
        core_batches_s, core_wall_s = core_pass(fn, held, len(loader), dev)
    held_count, held_bytes = len(held.inputs), held.bytes
    del held
    section = result.stage_section(
        config,
        result.StageRun(
            name=name,
            toolkit=toolkit,
            dtype=dtype,
            channels_last=channels_last,
            counts=counts,
            warmup_s=warmup_s,
            warm_s=warm_s,
            waited_s=waited_s,
            totals=totals,
            core_batches_s=core_batches_s,
            core_wall_s=core_wall_s,
            held_batches=held_count,
            held_bytes=held_bytes,
            deterministic=deterministic,
            timing_method=dev.timing_method,
            accuracy=accuracy,
        ),
    )
    protocol.emit(
        "metric",
        stage=name,
        throughput_whole_img_per_s=section["throughput_whole_img_per_s"],
        throughput_core_img_per_s=section["throughput_core_img_per_s"],
        top1_pct=section["top1_pct"],
    )
    return section, dev.stage_memory(), last


def _run_stages(
    config: Config, doc: Dict, dev: Device, where: Where, loader: Loader
) -> Dict[str, torch.Tensor]:
    """Load the model, count its FLOPs, run both stages over ``loader``; each stage's last predictions."""
    where.enter("load")
    start = time.perf_counter()
    model = config.case.build(config.weights)
    doc["durations"]["load_s"] = _r(time.perf_counter() - start)

    where.enter("flops")
    doc["flops_per_image"], doc["flops_method"] = count_flops(model, config.case.preprocessing.crop)
    example_u8 = example_batch(config.dataset, config.case.preprocessing, config.batch_size, config.workers)

    preds = {}
    for name, toolkit in zip(protocol.PASS_STAGES, (config.val_toolkit, config.infer_toolkit)):
        doc["stages"][name], doc["memory"]["stages"][name], preds[name] = run_stage(
            name, toolkit, model, config, dev, where, loader, example_u8
        )
        doc["environment"]["toolkits"][toolkit.name] = toolkit.versions()
        doc["durations"]["loader_start_s"] = _r(loader.wait_started())
        if loader.cpu_fallbacks is not None:  # decoded on the device
            doc["data"]["cpu_fallback_images"] = sum(loader.cpu_fallbacks.values())
            doc["data"]["cpu_fallback_reasons"] = loader.cpu_fallbacks
    return preds


def _measure(config: Config, doc: Dict, dev: Device, where: Where, loader: Loader) -> None:
    """Fill ``doc`` with the figures of a run, section by section (a failure keeps what was done)."""
    doc["environment"] = environment.collect(dev.facts())
    memory = dict(dev.totals(), mem_used_gib=None, stages=dict.fromkeys(protocol.PASS_STAGES))
    doc["memory"] = memory

    # started first: its decoding processes, if any, get ready while the model loads and compiles
    where.enter(protocol.STAGE_SETUP, "loader")
    loader.start()
    preds = _run_stages(config, doc, dev, where, loader)

    where.enter("report")
    for name in protocol.PASS_STAGES:
        warning = metrics.sharing_warning(name, doc["stages"][name])
        if warning:
            doc["warnings"].append(warning)
    infer = doc["stages"][protocol.STAGE_INFER]
    for key in ("export_s", "compile_s", "warmup_s"):
        doc["durations"][key] = infer[key]
    memory["mem_used_gib"] = memory["stages"][protocol.STAGE_INFER]["mem_used_gib"]
    doc["agreement_top1"] = metrics.agreement(preds[protocol.STAGE_VAL], preds[protocol.STAGE_INFER])
    n = infer["n_images"]
    doc["accuracy_gate"] = config.case.accuracy_gate(
        config.weights, config.precision, n, 100.0 * infer["top1_count"] / n
    )
    doc["mfu"] = result.mfu_section(config, doc["flops_per_image"], infer["throughput_core_img_per_s"])
    doc["status"] = (
        protocol.STATUS_FAILED_ACCURACY if doc["accuracy_gate"]["passed"] is False else protocol.STATUS_OK
    )


def _finish(config: Config, doc: Dict) -> str:
    """Stamp the end times and write result.json atomically; its path."""
    now = time.time()
    doc["durations"]["e2e_time_s"] = round(now - protocol.runner_started_at(), 3)
    doc["finished_at_unix"] = round(now, 3)
    path = os.path.join(config.out, protocol.RESULT_FILE)
    protocol.write_json_atomic(path, doc)
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
            doc["error"] = {
                "stage": where.stage,
                "step": where.step,
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(),
            }
            protocol.emit(
                "error", stage=where.stage, step=where.step, type=type(exc).__name__, message=str(exc)
            )
        finally:
            shutil.rmtree(config.work_dir, ignore_errors=True)
        path = _finish(config, doc)
        protocol.emit("result", path=path, status=doc["status"])
    finally:
        loader.close()
    return {
        protocol.STATUS_OK: protocol.EXIT_OK,
        protocol.STATUS_FAILED_ACCURACY: protocol.EXIT_FAILED_ACCURACY,
    }.get(doc["status"], protocol.EXIT_FAILED)
