"""Sample a device's memory, utilisation, power and, where the SMI gives them, its SM clock and clock-throttle
reasons with the vendor's SMI while a job runs."""

import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from orchestrator.host.sampler import PROBE_TIMEOUT_S, Sampler, mean, peak
from orchestrator.transport.base import Transport, TransportError
from runner_in_container.protocol import STAGE_INFER, STAGE_MLPERF
from vendors.smi import THROTTLE_REASONS, MonitorSample
from vendors.vendor import Vendor

#: the windows the device's figures are summarised over: the infer stage's passes, an MLPerf job's LoadGen
#: runs
WINDOWS = (STAGE_INFER, STAGE_MLPERF)
#: the throttle reason of a device with nothing to do, left out of the shares
IDLE_REASON = THROTTLE_REASONS[0][1]


class Monitor(Sampler):
    """Streams ``vendor.monitor_argv`` (or the richest of its ``richer_sample_argvs`` that answers) on the
    host in a thread until stopped."""

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

    def before_stream(self) -> None:
        """Stream the first of the vendor's richer queries whose one-shot reading gives a sample of the device
        (an SMI fails a whole query for one field it does not know); else the basic ``monitor_argv``."""
        for query in self.vendor.richer_sample_argvs([self.device]):
            if self.stopped:
                return
            try:
                done = self.transport.run(query, timeout=PROBE_TIMEOUT_S)
            except TransportError:
                continue
            if done.returncode == 0 and self._own(done.stdout):
                self.argv = self.vendor.repeat_sample_argv(query, self.interval_s)
                return

    def _own(self, text: str) -> List[MonitorSample]:
        """The samples of this monitor's device in ``text``."""
        parsed = (s for line in text.splitlines() for s in self.vendor.parse_monitor_line(line))
        return [s for s in parsed if s.device == self.device]

    @property
    def source(self) -> str:
        return " ".join(self.argv[:1]) + " (host side, every %.1f s)" % self.interval_s

    def on_line(self, line: str) -> None:
        now = time.time()
        self.samples.extend((now, sample) for sample in self._own(line))

    def window_summary(self, stage: str, images: Optional[int]) -> Dict[str, Any]:
        """Over the samples inside ``stage``'s window, its figures keyed ``<stage>_<figure>``: mean power (and
        energy per image where ``images`` counts the window's images), mean utilisation, mean SM clock, and
        the share of the samples that read throttle reasons in which each reason but GpuIdle was active; {}
        when the window was not seen, a figure absent where no sample in it has it."""
        window = self.window(stage)
        if window is None:
            return {}
        start, end = window
        inside = [s for t, s in self.samples if start <= t <= end]
        out: Dict[str, Any] = {}
        powers = [s.power_w for s in inside if s.power_w is not None]
        if powers:
            out["mean_power_w"] = sum(powers) / len(powers)
            out["power_samples"] = len(powers)
            if images:
                out["energy_j_per_img"] = out["mean_power_w"] * (end - start) / images
        for name, value in (
            ("mean_utilization_pct", mean([s.utilization_pct for s in inside])),
            ("mean_sm_clock_mhz", mean([s.sm_clock_mhz for s in inside])),
        ):
            if value is not None:
                out[name] = value
        throttled = [s.throttle for s in inside if s.throttle is not None]
        if throttled:
            out["throttle"] = throttle_shares(throttled)
            out["throttle_samples"] = len(throttled)
        return {"%s_%s" % (stage, name): value for name, value in out.items()}

    def summary(self, images: Mapping[str, int]) -> Dict[str, Any]:
        """Samples and aggregates: per window of ``WINDOWS`` that was seen, its ``window_summary`` (``images``
        counts each window's images); ``figure_window`` names the one the job's figures were measured
        under."""
        rows = [
            {
                "t": round(t, 3),
                "memory_used_mib": s.memory_used_mib,
                "utilization_pct": s.utilization_pct,
                "power_w": s.power_w,
                "sm_clock_mhz": s.sm_clock_mhz,
                "throttle": list(s.throttle) if s.throttle is not None else None,
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
            "peak_memory_used_mib": peak([s.memory_used_mib for _, s in self.samples]),
            "windows": self.windows,
            "figure_window": self.figure_window(),
        }
        for stage in WINDOWS:
            out.update(self.window_summary(stage, images.get(stage)))
        return out


def throttle_shares(readings: Sequence[Sequence[str]]) -> Dict[str, float]:
    """Per throttle reason but GpuIdle active in any of ``readings`` (each the reasons active at a sample),
    the share of the readings in which it was."""
    seen = sorted({name for names in readings for name in names if name != IDLE_REASON})
    return {name: sum(name in names for names in readings) / len(readings) for name in seen}


def figure(summary: Mapping[str, Any], name: str) -> Any:
    """A stored device summary's figure ``name`` (mean_power_w, ...) over the window the job's figures were
    measured under (a summary stored before ``figure_window`` was recorded: the infer stage's); None where
    absent."""
    return summary.get("%s_%s" % (summary.get("figure_window") or STAGE_INFER, name))
