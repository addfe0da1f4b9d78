"""A job's monitors: the device's (the vendor's SMI, where it has one) and the host's, started, marked with
the runner's stage windows and stopped together."""

import time
from typing import Optional

from orchestrator.host.hostmonitor import HostMonitor
from orchestrator.host.monitor import Monitor
from orchestrator.transport.base import Transport
from vendors.vendor import Vendor


class JobMonitors:
    """The device monitor (None: the vendor has no SMI) and the host monitor of one job."""

    def __init__(self, device: Optional[Monitor], host: HostMonitor) -> None:
        self.device = device
        self.host = host

    @classmethod
    def start(cls, transport: Transport, vendor: Vendor, device: int, interval_s: float) -> "JobMonitors":
        """Both monitors running on the host behind ``transport``."""
        device_monitor = Monitor.start(transport, vendor, device, interval_s)
        return cls(device_monitor, HostMonitor.start(transport, interval_s))

    def mark(self, stage: str, edge: str) -> None:
        """Record, in both, the wall time at which a runner stage started or ended (edge 'start'/'end')."""
        now = time.time()
        for sampler in (self.device, self.host):
            if sampler is not None:
                sampler.mark(stage, edge, now)

    def stop(self) -> None:
        for sampler in (self.device, self.host):
            if sampler is not None:
                sampler.stop()
