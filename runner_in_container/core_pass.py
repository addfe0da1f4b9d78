"""The core pass: one pass's worth of model calls over a stage's first batches, kept on the device from its
first pass, with nothing else working on the device (the core figure and latency, metrics.md)."""

import time
from typing import List, Tuple

import torch

from .device import Device

#: the most batches the core pass keeps on the device, and the most memory they may take (one at least)
CORE_BATCHES = 8
CORE_BYTES = 2 << 30


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
