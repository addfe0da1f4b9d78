"""Sample a device's memory, utilisation and power with the vendor's SMI while a job runs."""

import threading
import time
from typing import Any, Dict, Iterable, List, Optional, Tuple

from orchestrator.transport.base import Transport, TransportError
from runner_in_container.protocol import STAGE_INFER
from vendors.smi import MonitorSample
from vendors.vendor import Vendor


class Monitor:
    """Streams ``vendor.monitor_argv`` on the host in a thread until stopped."""

    def __init__(self, transport: Transport, vendor: Vendor, device: int, argv: List[str], interval_s: float):
        self.transport = transport
        self.vendor = vendor
        self.device = device
        self.argv = argv
        self.interval_s = interval_s
        self.samples: List[Tuple[float, MonitorSample]] = []
        self.windows: Dict[str, List[float]] = {}
        self.error: Optional[str] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="monitor-%s-%d" % (vendor.name, device), daemon=True
        )

    @classmethod
    def start(
        cls, transport: Transport, vendor: Vendor, device: int, interval_s: float
    ) -> Optional["Monitor"]:
        """A running monitor, or None when the vendor has no SMI to sample."""
        argv = vendor.monitor_argv([device], interval_s)
        if not argv:
            return None
        monitor = cls(transport, vendor, device, argv, interval_s)
        monitor._thread.start()
        return monitor

    @property
    def source(self) -> str:
        return " ".join(self.argv[:1]) + " (host side, every %.1f s)" % self.interval_s

    def _loop(self) -> None:
        def on_line(line: str) -> None:
            now = time.time()
            for sample in self.vendor.parse_monitor_line(line):
                if sample.device == self.device:
                    self.samples.append((now, sample))

        try:
            self.transport.stream(self.argv, on_line, lambda _line: None, cancel=self._stop.is_set)
        except TransportError as exc:
            if not self._stop.is_set():
                self.error = str(exc)

    def mark(self, stage: str, edge: str) -> None:
        """Record the wall time at which a runner stage started or ended (edge 'start'/'end')."""
        self.windows.setdefault(stage, [0.0, 0.0])[0 if edge == "start" else 1] = time.time()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

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
            "peak_memory_used_mib": _max(r["memory_used_mib"] for r in rows),
            "windows": self.windows,
        }
        start, end = self.windows.get(STAGE_INFER, [0.0, 0.0])
        if start and end > start:
            window = [s for t, s in self.samples if start <= t <= end]
            powers = [s.power_w for s in window if s.power_w is not None]
            utils = [s.utilization_pct for s in window if s.utilization_pct is not None]
            if powers:
                mean_power = sum(powers) / len(powers)
                out["infer_mean_power_w"] = mean_power
                out["infer_power_samples"] = len(powers)
                if infer_images:
                    out["infer_energy_j_per_img"] = mean_power * (end - start) / infer_images
            if utils:
                out["infer_mean_utilization_pct"] = sum(utils) / len(utils)
        return out


def _max(values: Iterable[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return max(present) if present else None
