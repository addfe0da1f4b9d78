"""Sample the host's CPU %, memory and, where IPMI DCMI answers, node power while a job runs.

Nothing is installed on the host: one long-running command over the job's transport (``smi.repeat_argv``, as
the device monitor's) prints one line per interval, read with shell builtins from /proc/stat and
/proc/meminfo, plus ``ipmitool dcmi power reading`` when a probe before the job found that it works. CPU % is
the change of /proc/stat's all-CPU line between two lines: busy (all but idle and iowait) and each mode, as a
share of all CPUs' time.
"""

import re
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from orchestrator.host.sampler import PROBE_TIMEOUT_S, SUMMARISED, Sampler, mean, peak
from orchestrator.safeio.text import one_line
from orchestrator.transport.base import Transport, TransportError
from vendors.smi import repeat_argv

#: /proc/stat's all-CPU fields in order (guest time is counted in user and nice already)
CPU_MODES = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
#: modes that are not busy
IDLE_MODES = ("idle", "iowait")
POWER_ARGV = ["ipmitool", "dcmi", "power", "reading"]
#: where the script reads the kernel's counters
PROC = "/proc"
#: a constant script, values only as positional parameters: $1 = 1 reads node power too, $2 is PROC. One
#: line: ``rn50bench-host <all-CPU line>|mem <MemTotal> <MemAvailable>|power <ipmitool's words>``
SAMPLE_SCRIPT = (
    'read -r c < "$2/stat"; t=; a=; '
    'while read -r k v r; do case "$k" in MemTotal:) t=$v;; MemAvailable:) a=$v;; esac; '
    'done < "$2/meminfo"; '
    'p=; if [ "$1" = 1 ]; then p=$(ipmitool dcmi power reading 2>/dev/null); fi; '
    'set -f; set -- $p; printf "rn50bench-host %s|mem %s %s|power %s\\n" "$c" "$t" "$a" "$*"'
)
_LINE = re.compile(r"^rn50bench-host cpu\s+([\d ]+)\|mem (\d*) (\d*)\|power ?(.*)$")
_POWER = re.compile(r"Instantaneous power reading:\s*(\d+(?:\.\d+)?)\s*Watts", re.IGNORECASE)


@dataclass(frozen=True)
class HostReading:
    """One line of the sampling command: cumulative CPU jiffies per mode, memory (KiB), node power (W)."""

    cpu: Tuple[int, ...]
    mem_total_kib: Optional[int]
    mem_available_kib: Optional[int]
    power_w: Optional[float]


def parse_line(line: str) -> Optional[HostReading]:
    """The reading in one line of ``SAMPLE_SCRIPT``'s output; None for anything else."""
    found = _LINE.match(line.strip())
    if found is None:
        return None
    cpu = tuple(int(v) for v in found.group(1).split())
    if len(cpu) < len(CPU_MODES):
        return None
    total, available = (int(v) if v else None for v in found.group(2, 3))
    return HostReading(cpu[: len(CPU_MODES)], total, available, parse_power(found.group(4)))


def parse_power(text: str) -> Optional[float]:
    """Watts of ``ipmitool dcmi power reading``'s "Instantaneous power reading" line, or None."""
    found = _POWER.search(text)
    return float(found.group(1)) if found else None


def cpu_percent(before: HostReading, after: HostReading) -> Optional[Dict[str, float]]:
    """CPU % between two readings over all CPUs: ``cpu_pct`` (busy) and ``<mode>_pct`` for each busy mode and
    iowait; None when no time passed (or the counters went back)."""
    deltas = dict(zip(CPU_MODES, (b - a for a, b in zip(before.cpu, after.cpu))))
    total = sum(deltas.values())
    if total <= 0 or min(deltas.values()) < 0:
        return None
    out = {"cpu_pct": 100.0 * sum(v for k, v in deltas.items() if k not in IDLE_MODES) / total}
    out.update(("%s_pct" % mode, 100.0 * deltas[mode] / total) for mode in CPU_MODES if mode != "idle")
    return out


def probe_power(transport: Transport) -> Optional[str]:
    """None when ``ipmitool dcmi power reading`` gives a reading on the host, else why not (one line)."""
    what = " ".join(POWER_ARGV)
    try:
        done = transport.run(POWER_ARGV, timeout=PROBE_TIMEOUT_S)
    except TransportError as exc:
        return one_line("%s: %s" % (what, exc))
    said = one_line(done.stderr.strip() or done.stdout.strip() or "no output")
    if done.returncode == 127:
        return "ipmitool is not installed on the host"
    if done.returncode != 0:
        return "%s failed (exit status %d): %s" % (what, done.returncode, said)
    if parse_power(done.stdout) is None or "state is: deactivated" in " ".join(done.stdout.split()):
        return "%s gave no instantaneous reading: %s" % (what, one_line(done.stdout) or said)
    return None


class HostMonitor(Sampler):
    """Streams ``SAMPLE_SCRIPT`` every ``interval_s`` on the host in a thread until stopped."""

    def __init__(self, transport: Transport, interval_s: float) -> None:
        super().__init__(transport, [], interval_s, "host-monitor")
        #: why node power is not read ("not probed" until the probe has run); None when it is
        self.power_unavailable: Optional[str] = "not probed"
        self.readings: List[Tuple[float, HostReading]] = []
        #: the sampling command run once (set once the power probe has run)
        self.once_argv: List[str] = []

    @classmethod
    def start(cls, transport: Transport, interval_s: float) -> "HostMonitor":
        monitor = cls(transport, interval_s)
        monitor.begin()
        return monitor

    def before_stream(self) -> None:
        """Probe node power once; the sampling command reads it only where the probe got a reading."""
        self.power_unavailable = probe_power(self.transport)
        flag = "1" if self.power_unavailable is None else "0"
        self.once_argv = ["sh", "-c", SAMPLE_SCRIPT, "rn50bench-host", flag, PROC]
        self.argv = repeat_argv(self.once_argv, self.interval_s)

    def stop(self) -> None:
        """Stop the stream, then take one reading more, so that the interval a job's last window ended in
        is closed: a window shorter than ``interval_s`` at a job's end (a small set's infer stage) would
        otherwise lie past the last reading, with no figure at all."""
        super().stop()
        if not self.once_argv:
            return
        try:
            done = self.transport.run(self.once_argv, timeout=PROBE_TIMEOUT_S)
        except TransportError:
            return
        for line in done.stdout.splitlines():
            self.on_line(line)

    @property
    def source(self) -> str:
        return "/proc/stat, /proc/meminfo%s (host side, every %.1f s)" % (
            ", " + " ".join(POWER_ARGV) if self.power_unavailable is None else "",
            self.interval_s,
        )

    def on_line(self, line: str) -> None:
        reading = parse_line(line)
        if reading is not None:
            self.readings.append((time.time(), reading))

    def rows(self) -> List[Dict[str, Any]]:
        """One row per interval between two readings: its end ``t``, its length ``span_s``, CPU %, and the
        memory (MiB) and power (W) read at its end."""
        out = []
        for (t0, before), (t1, after) in zip(self.readings, self.readings[1:]):
            percent = cpu_percent(before, after)
            if percent is None:
                continue
            total, available = after.mem_total_kib, after.mem_available_kib
            row: Dict[str, Any] = {"t": round(t1, 3), "span_s": round(t1 - t0, 3)}
            row.update((key, round(value, 2)) for key, value in percent.items())
            row["mem_used_mib"] = (
                None if total is None or available is None else round((total - available) / 1024, 1)
            )
            row["mem_available_mib"] = None if available is None else round(available / 1024, 1)
            row["power_w"] = after.power_w
            out.append(row)
        return out

    def stage_summary(self, rows: List[Dict[str, Any]], stage: str, images: Optional[int]) -> Dict[str, Any]:
        """Over the rows whose interval overlaps the stage's window: mean CPU % (weighted by the overlap),
        peak memory used, mean node power and node energy per image (power x the window / ``images``)."""
        window = self.window(stage)
        if window is None:
            return {}
        start, end = window
        weights = [(row, min(end, row["t"]) - max(start, row["t"] - row["span_s"])) for row in rows]
        inside = [(row, w) for row, w in weights if w > 0]
        weight = sum(w for _, w in inside)
        power = mean([row["power_w"] for row, _ in inside])
        return {
            "window_s": end - start,
            "intervals": len(inside),
            "cpu_pct_mean": sum(row["cpu_pct"] * w for row, w in inside) / weight if weight else None,
            "mem_used_peak_mib": peak([row["mem_used_mib"] for row, _ in inside]),
            "power_mean_w": power,
            "energy_j_per_img": power * (end - start) / images if power is not None and images else None,
        }

    def summary(self, images: Mapping[str, int]) -> Dict[str, Any]:
        """The series and, per summarised window that was seen (val, infer, mlperf; whatever else the runner
        named is kept in ``windows`` only), its summary, with energy per image where ``images`` counts the
        window's images; ``figure_window`` names the window the job's figures were measured under."""
        rows = self.rows()
        return {
            "source": self.source,
            "argv": self.argv,
            "interval_s": self.interval_s,
            "error": self.error,
            "power": {"available": self.power_unavailable is None, "reason": self.power_unavailable},
            "samples": rows,
            "windows": self.windows,
            "figure_window": self.figure_window(),
            "stages": {
                stage: self.stage_summary(rows, stage, images.get(stage))
                for stage in SUMMARISED
                if stage in self.windows
            },
        }
