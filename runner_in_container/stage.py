"""One stage (val or infer): compile the model with the stage's toolkit, warm it up, make R whole passes
over all N images, then the core pass (core_pass.py); its section of the result (result.py).

Per batch: H2D copy of the uint8 batch (none when the decoder made it on the device), normalisation on the
device, the model call between two device events (the forward time inside the pipeline,
``core_in_pipeline``), top-5 into a device buffer. Per pass: one D2H copy of the predictions, accuracy on
the host. No host sync per batch.
"""

import copy
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import torch

from . import metrics, protocol, result
from .core_pass import HeldInputs, core_pass
from .data.loader import Loader
from .data.preprocess import Preprocessing, normalize
from .device import Device
from .progress import Progress, Where
from .runconfig import Config
from .toolkits.base import Forward, Toolkit


def run_pass(
    fn,
    loader: Loader,
    dev: Device,
    pp: Preprocessing,
    dtype: torch.dtype,
    channels_last: bool,
    n_images: int,
    progress: Progress,
    held: HeldInputs,
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


def run_stage(
    name: str,
    toolkit: Toolkit,
    model: torch.nn.Module,
    config: Config,
    dev: Device,
    where: Where,
    loader: Loader,
    example_u8: torch.Tensor,
) -> Tuple[Dict[str, Any], Dict[str, Any], torch.Tensor, Forward]:
    """Compile and warm up on ``example_u8``, run R whole passes over ``loader``, then the core pass;
    (stage section, memory section, last predictions, the compiled model)."""
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
    return section, dev.stage_memory(), last, fn
