"""What the run tells the orchestrator while it runs: the stage and step it is in (``Where``, also the
error report's place) and progress events with the device's memory sampled (``Progress``)."""

import time
from typing import Any, Optional

from . import protocol
from .device import Device

PROGRESS_INTERVAL_S = 2.0


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
