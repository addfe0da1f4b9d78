"""A job's monitors: the device's (the vendor's SMI, where it has one) and the host's, started, marked with
the runner's stage windows and stopped together."""

import time
from typing import Optional

from orchestrator.host.hostmonitor import HostMonitor
from orchestrator.host.monitor import Monitor
from orchestrator.transport.base import Transport
from vendors.vendor import Vendor

#: the LoadGen scenarios whose figure is a latency: their jobs' monitors sample at most every
#: LATENCY_INTERVAL_S, since sampling disturbs what they measure (the H100, SingleStream bs 1 through the
#: product: p50 / p90 0.506 / 0.545 ms with nvidia-smi asked every 1 s, 0.421 / 0.487 ms every 60 s)
LATENCY_SCENARIOS = ("server", "singlestream", "multistream")
LATENCY_INTERVAL_S = 10.0


def job_interval(interval_s: float, scenario: str) -> float:
    """How often the monitors of a job of ``scenario`` sample: ``interval_s`` (defaults.monitor_interval_s),
    raised to LATENCY_INTERVAL_S in a latency scenario's job."""
    return max(interval_s, LATENCY_INTERVAL_S) if scenario in LATENCY_SCENARIOS else interval_s


class JobMonitors:
    """The device monitor (None: the vendor has no SMI) and the host monitor of one job."""

    def __init__(self, device: Optional[Monitor], host: HostMonitor) -> None:
        self.device = device
        self.host = host

    @classmethod
    def start(
        cls, transport: Transport, vendor: Vendor, device: int, interval_s: float, scenario: str
    ) -> "JobMonitors":
        """Both monitors running on the host behind ``transport``, for a job of ``scenario``
        (``job_interval``)."""
        interval_s = job_interval(interval_s, scenario)
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
