"""Sample a device's memory, utilisation and power with the vendor's SMI while a job runs."""

import time
from typing import Any, Dict, List, Optional, Tuple

from orchestrator.host.sampler import Sampler, mean, peak
from orchestrator.transport.base import Transport
from runner_in_container.protocol import STAGE_INFER
from vendors.smi import MonitorSample
from vendors.vendor import Vendor


class Monitor(Sampler):
    """Streams ``vendor.monitor_argv`` on the host in a thread until stopped."""

    def __init__(self, transport: Transport, vendor: Vendor, device: int, argv: List[str], interval_s: float):
        super().__init__(transport, argv, interval_s, "monitor-%s-%d" % (vendor.name, device))
        self.vendor = vendor
        self.device = device
        self.samples: List[Tuple[float, MonitorSample]] = []

    @classmethod
    def start(
        cls, transport: Transport, vendor: Vendor, device: int, interval_s: float
    ) -> Optional["Monitor"]:
        """A running monitor, or None when the vendor has no SMI to sample."""
        argv = vendor.monitor_argv([device], interval_s)
        if not argv:
            return None
        monitor = cls(transport, vendor, device, argv, interval_s)
        monitor.begin()
        return monitor

    @property
    def source(self) -> str:
        return " ".join(self.argv[:1]) + " (host side, every %.1f s)" % self.interval_s

    def on_line(self, line: str) -> None:
        now = time.time()
        for sample in self.vendor.parse_monitor_line(line):
            if sample.device == self.device:
                self.samples.append((now, sample))

    def summary(self, infer_images: Optional[int] = None) -> Dict[str, Any]:
        """Samples and aggregates; power and energy over the infer window when it was seen."""
        rows = [
            {
                "t": round(t, 3),
                "memory_used_mib": s.memory_used_mib,
                "utilization_pct": s.utilization_pct,
                "power_w": s.power_w,
            }
            for t, s in self.samples
        ]
        out: Dict[str, Any] = {
            "source": self.source,
            "argv": self.argv,
            "interval_s": self.interval_s,
            "device": self.device,
            "error": self.error,
            "samples": rows,
            "peak_memory_used_mib": peak([r["memory_used_mib"] for r in rows]),
            "windows": self.windows,
        }
        window = self.window(STAGE_INFER)
        if window is not None:
            start, end = window
            inside = [s for t, s in self.samples if start <= t <= end]
            powers = [s.power_w for s in inside if s.power_w is not None]
            if powers:
                mean_power = sum(powers) / len(powers)
                out["infer_mean_power_w"] = mean_power
                out["infer_power_samples"] = len(powers)
                if infer_images:
                    out["infer_energy_j_per_img"] = mean_power * (end - start) / infer_images
            utilization = mean([s.utilization_pct for s in inside])
            if utilization is not None:
                out["infer_mean_utilization_pct"] = utilization
        return out
