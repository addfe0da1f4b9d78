"""The device the case runs on: facts, memory figures and timing, one class per device type.

``Interval`` objects time one span of device work. On CUDA they are a pair of events
recorded on the current stream (no host synchronisation; read them after
``synchronize()``); on the CPU, where every call is synchronous, a host timer.
"""

import gc
import os
import platform
import re
import resource
import time
from typing import Dict, Optional

import torch

from .data.process_count import usable_cpus

GIB = float(1 << 30)


class DeviceError(ValueError):
    """The requested device does not exist here."""


def resolve(spec: Optional[str]) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (default: cuda if available, else cpu) as a checked torch.device."""
    if spec is None:
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    match = re.match(r"^(cpu|cuda)(?::(\d+))?$", spec)
    if not match or (match.group(1) == "cpu" and match.group(2) is not None):
        raise DeviceError(f"expected cpu, cuda or cuda:N, got {spec!r}")
    if match.group(1) == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(f"{spec} requested but CUDA is not available here")
    index = int(match.group(2)) if match.group(2) is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceError(f"cuda:{index} does not exist ({torch.cuda.device_count()} CUDA devices)")
    return torch.device("cuda", index)


def _gib(n_bytes: float) -> float:
    return round(n_bytes / GIB, 3)


class Interval:
    """A host-timed span (CPU: the work inside it is synchronous)."""

    def __init__(self) -> None:
        self._start = 0.0
        self._end = 0.0

    def start(self) -> None:
        self._start = time.perf_counter()

    def stop(self) -> None:
        self._end = time.perf_counter()

    def seconds(self) -> float:
        return self._end - self._start


class CudaInterval(Interval):
    """A span between two CUDA events on the current stream."""

    def __init__(self) -> None:
        self._start_ev = torch.cuda.Event(enable_timing=True)
        self._end_ev = torch.cuda.Event(enable_timing=True)

    def start(self) -> None:
        self._start_ev.record()

    def stop(self) -> None:
        self._end_ev.record()

    def seconds(self) -> float:
        return self._start_ev.elapsed_time(self._end_ev) / 1000.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meminfo_total_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class Device:
    """The CPU: host timers, peak RSS of the process."""

    timing_method = "time.perf_counter around the call (CPU calls are synchronous)"
    pin_memory = False

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            # Some builds (Debian's torch 1.13) start with one thread: use every CPU this process may use.
            torch.set_num_threads(usable_cpus())

    def synchronize(self) -> None:
        """Wait for all queued work on the device."""

    def interval(self) -> Interval:
        return Interval()

    def facts(self) -> Dict:
        usable = usable_cpus()
        return {
            "type": "cpu",
            "name": _cpu_model(),
            "count": 1,
            "logical_cpus": os.cpu_count(),
            "usable_cpus": usable,
            "torch_threads": torch.get_num_threads(),
        }

    # -- memory ---------------------------------------------------------------------
    def take_baseline(self) -> None:
        """Record the device's idle memory use before the case starts."""

    def begin_stage(self) -> None:
        """Start a new stage's peak memory figures."""

    def sample(self) -> None:
        """Take one reading of the device's memory use."""

    def stage_memory(self) -> Dict:
        """Peak memory of the stage that ``begin_stage`` started."""
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return {
            "mem_used_gib": _gib(peak_kib * 1024.0),
            "mem_used_source": "ru_maxrss, host memory: peak RSS of the runner process since it started "
            "(not resettable per stage)",
        }

    def totals(self) -> Dict:
        """Total memory, baseline and where they come from."""
        total = _meminfo_total_bytes()
        return {
            "mem_total_gib": _gib(total) if total is not None else None,
            "mem_total_source": "/proc/meminfo MemTotal, host memory",
            "baseline_used_gib": None,
            "baseline_source": None,
        }

    def release(self) -> None:
        """Return memory freed by the previous stage."""
        gc.collect()


class CudaDevice(Device):
    """A CUDA device: event timing, torch allocator peaks, device used memory minus a baseline."""

    timing_method = "torch.cuda.Event pair recorded on the current stream, read after the pass"
    pin_memory = True

    def __init__(self, device: torch.device) -> None:
        super().__init__(device)
        self._baseline: Optional[int] = None
        self._peak_used = 0
        self._samples = 0

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def interval(self) -> Interval:
        return CudaInterval()

    def facts(self) -> Dict:
        props = torch.cuda.get_device_properties(self.device)
        return {
            "type": "cuda",
            "index": self.device.index,
            "name": props.name,
            "count": torch.cuda.device_count(),
            "capability": f"{props.major}.{props.minor}",
            "multiprocessors": props.multi_processor_count,
            "total_memory_gib": _gib(props.total_memory),
        }

    def _used(self) -> int:
        free, total = torch.cuda.mem_get_info(self.device)
        return total - free

    def take_baseline(self) -> None:
        self._baseline = self._used()

    def begin_stage(self) -> None:
        torch.cuda.reset_peak_memory_stats(self.device)
        self._peak_used = 0
        self._samples = 0

    def sample(self) -> None:
        self._peak_used = max(self._peak_used, self._used())
        self._samples += 1

    def stage_memory(self) -> Dict:
        reserved = torch.cuda.max_memory_reserved(self.device)
        device_used = max(0, self._peak_used - (self._baseline or 0))
        return {
            "mem_used_gib": _gib(max(device_used, reserved)),
            "mem_used_source": "larger of: device used memory (torch.cuda.mem_get_info) minus the baseline "
            f"taken before the case, max of {self._samples} samples (end of warm-up, each progress event, "
            "each pass end; counts any other process on the device); torch allocator reserved peak",
            "device_used_minus_baseline_peak_gib": _gib(device_used),
            "allocator_reserved_peak_gib": _gib(reserved),
            "allocator_allocated_peak_gib": _gib(torch.cuda.max_memory_allocated(self.device)),
            "allocator_source": "torch allocator reserved peak (torch.cuda.max_memory_reserved, "
            "max_memory_allocated since the stage began)",
        }

    def totals(self) -> Dict:
        return {
            "mem_total_gib": _gib(torch.cuda.get_device_properties(self.device).total_memory),
            "mem_total_source": "torch.cuda.get_device_properties().total_memory",
            "baseline_used_gib": _gib(self._baseline) if self._baseline is not None else None,
            "baseline_source": "torch.cuda.mem_get_info before the model is loaded, after the runner's CUDA "
            "context exists (NVML per-process figures are not used: PIDs differ inside a container)",
        }

    def release(self) -> None:
        gc.collect()
        torch.cuda.empty_cache()


def open_device(device: torch.device) -> Device:
    """The ``Device`` for a resolved torch device."""
    return CudaDevice(device) if device.type == "cuda" else Device(device)
