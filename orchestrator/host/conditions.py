"""The conditions a job ran under, checked on its host just before and just after it runs (metrics.md,
"Conditions"), over the host's transport with nothing installed there: the CPUs' load, the frequency
governor, other running containers and, through the vendor's SMI, other processes on the job's device, its
utilisation at idle and its clock-throttle reasons. The page cache can be dropped first (``clear_caches``).

A check finds the host busy (``Check.busy``, one line each) when, by these thresholds:

- the CPUs were more than ``CPU_BUSY_LIMIT`` busy over a ``CPU_WINDOW_S`` window (/proc/stat: what runs now,
  so the job's own load, which lingers in the load average for minutes, does not count after it);
- the device was more than ``DEVICE_BUSY_PCT`` % utilised;
- another compute process was on the device (the MPS control server excepted: it is no work);
- another container ran on a docker host (this run's own jobs on other devices excepted).

The 1-minute load average, the CPU count, the governor and the throttle reasons are recorded, not judged.
What could not be read is listed in ``Check.unknown`` with why, never judged busy. The policy
(``isolation``) decides what a busy check does: ``warn`` marks the job's figures, ``error`` fails the job
(FAILED_ISOLATION) with the first reason.
"""

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from orchestrator.host.orphans import RUN_LABEL
from orchestrator.outcome import Stage, StageFailure
from orchestrator.safeio.text import one_line
from orchestrator.transport.base import Transport, TransportError
from runner_in_container import schema
from vendors.vendor import Vendor

#: a check finds the CPUs busy above this share of them busy over the window
CPU_BUSY_LIMIT = 0.5
CPU_WINDOW_S = 0.5
#: a check finds the device busy above this utilisation (%) at idle
DEVICE_BUSY_PCT = 5.0
#: the most processes or containers a check names
MOST_NAMED = 20
#: compute processes that are no work of anyone's: CUDA MPS's control server
IDLE_PROCESSES = ("nvidia-cuda-mps-server",)
POLICIES = ("warn", "error")
DROP_CACHES = "/proc/sys/vm/drop_caches"
#: the page cache of a job whose host was not asked to drop it (the default, so summaries leave it out)
NOT_CLEARED = "not cleared (clear_caches: false)"

#: a constant script (no value reaches it): load average, CPU count, /proc/stat's CPU line before and after
#: the window, the governors (none where cpufreq is absent); sections between "--" lines
_HOST_SCRIPT = (
    "cat /proc/loadavg; echo --; nproc; echo --; head -n 1 /proc/stat; sleep %g; head -n 1 /proc/stat;"
    " echo --; cat /sys/devices/system/cpu/cpu*/cpufreq/scaling_governor 2>/dev/null; exit 0" % CPU_WINDOW_S
)


def _optional() -> Any:
    """A field older records may lack (read as None)."""
    return field(default=None, metadata={"rule": schema.Rule(), "present": "optional"})


@dataclass(frozen=True)
class Check:
    """What one check found; None where it was not read (``unknown`` says why)."""

    #: why the host or device was busy, one line each (empty: idle)
    busy: List[str] = schema.items()
    unknown: List[str] = schema.items()
    cpus: Optional[int] = schema.counted(present="optional")
    load_1m: Optional[float] = schema.ratio(present="optional")
    #: the share of the CPUs busy over the window (0..1)
    cpu_busy: Optional[float] = schema.ratio(present="optional")
    #: the governors of the CPUs ("performance x 64"), or why there are none
    governor: Optional[str] = schema.text(present="optional")
    device_utilization_pct: Optional[float] = schema.ratio(present="optional")
    device_processes: Optional[List[str]] = schema.items(present="optional")
    containers: Optional[List[str]] = schema.items(present="optional")
    throttle: Optional[List[str]] = schema.items(present="optional")


@dataclass(frozen=True)
class Conditions:
    """The conditions of one job: its policy, the page cache's state, and the checks before and after."""

    policy: str = schema.text(choices=POLICIES)
    #: "cleared", NOT_CLEARED or "could not clear: why"
    cache: str = schema.text()
    before: Optional[Check] = _optional()
    after: Optional[Check] = _optional()

    def busy(self) -> List[str]:
        """Every busy reason, saying when ("... before the job")."""
        return [
            "%s %s the job" % (reason, when)
            for when, check in (("before", self.before), ("after", self.after))
            for reason in (check.busy if check else [])
        ]

    def summary(self) -> str:
        """One compact line: idle or busy (with the reasons), the throttle reasons, the page cache where the
        host was asked to drop it."""
        busy = self.busy()
        parts = ["busy: " + "; ".join(busy) if busy else "idle"]
        throttled = sorted(
            {r for c in (self.before, self.after) if c for r in (c.throttle or []) if r != "GpuIdle"}
        )
        if throttled:
            parts.append("throttle: " + ", ".join(throttled))
        if self.cache != NOT_CLEARED:
            parts.append("cache " + self.cache)
        return "; ".join(parts)

    def as_stored(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def read(doc: Dict[str, Any]) -> Conditions:
    """A stored record, typed (schema.Invalid when it is not one)."""
    return schema.parse_as(Conditions, doc)


class Watch:
    """The checks of one job on its host: ``before`` (dropping the page cache first where asked) and
    ``after``; ``conditions`` holds what they found. Under policy ``error`` a busy check raises
    StageFailure(ISOLATION)."""

    def __init__(
        self,
        transport: Transport,
        vendor: Vendor,
        device: int,
        run_id: str,
        docker: bool,
        policy: str,
        clear_caches: bool,
        timeout: float,
    ) -> None:
        self.transport, self.vendor, self.device, self.run_id = transport, vendor, device, run_id
        self.docker, self.policy, self.clear_caches, self.timeout = docker, policy, clear_caches, timeout
        self.conditions = Conditions(policy=policy, cache=NOT_CLEARED)

    def before(self) -> None:
        cache = drop_caches(self.transport, self.timeout) if self.clear_caches else self.conditions.cache
        found = self._check()
        self.conditions = dataclasses.replace(self.conditions, cache=cache, before=found)
        self._enforce(found, "before")

    def after(self) -> None:
        found = self._check()
        self.conditions = dataclasses.replace(self.conditions, after=found)
        self._enforce(found, "after")

    def _check(self) -> Check:
        return check(self.transport, self.vendor, self.device, self.run_id, self.docker, self.timeout)

    def _enforce(self, found: Check, when: str) -> None:
        """Under policy ``error``, StageFailure(ISOLATION) naming the first thing ``found`` busy."""
        if self.policy == "error" and found.busy:
            raise StageFailure(Stage.ISOLATION, "%s %s the job (isolation: error)" % (found.busy[0], when))


def drop_caches(transport: Transport, timeout: float) -> str:
    """``sync``, then "3" into /proc/sys/vm/drop_caches (FlagPerf's ``sync; echo 3 > ...``): "cleared", or
    "could not clear: why" (the write needs root on the host)."""
    try:
        transport.run(["sync"], timeout=timeout).check()
        done = transport.run(["tee", "--", DROP_CACHES], timeout=timeout, stdin=b"3\n")
        if done.returncode != 0:
            who = transport.run(["id", "-u"], timeout=timeout).stdout.strip()
            why = done.stderr.strip().splitlines()[-1:] or ["exit %d" % done.returncode]
            root = "the login user is root" if who == "0" else "the login user is not root"
            return one_line("could not clear: %s (%s)" % (why[0], root))
    except TransportError as exc:
        return one_line("could not clear: %s" % exc)
    return "cleared"


def check(
    transport: Transport, vendor: Vendor, device: int, run_id: str, docker: bool, timeout: float
) -> Check:
    """One check of the host and of ``device``; ``docker``: the host runs jobs in containers (others are
    listed, those of ``run_id`` excepted)."""
    unknown: List[str] = []
    busy: List[str] = []
    host = _host(transport, timeout, unknown)
    cpus, cpu_busy = host.get("cpus"), host.get("cpu_busy")
    if cpu_busy is not None and cpu_busy > CPU_BUSY_LIMIT:
        load = host.get("load_1m")
        busy.append(
            "CPUs %.0f%% busy over %g s (load average %s on %s CPUs)"
            % (cpu_busy * 100, CPU_WINDOW_S, "?" if load is None else "%.2f" % load, cpus or "?")
        )
    processes = _processes(transport, vendor, device, timeout, unknown)
    if processes:
        busy.append("device %d has other processes: %s" % (device, ", ".join(processes)))
    containers = _containers(transport, run_id, timeout, unknown) if docker else None
    if containers:
        busy.append("other containers run: %s" % ", ".join(containers))
    utilization = _utilization(transport, vendor, device, timeout, unknown)
    if utilization is not None and utilization > DEVICE_BUSY_PCT:
        busy.append("device %d %.0f%% utilised at idle" % (device, utilization))
    return Check(
        cpus=cpus,
        load_1m=host.get("load_1m"),
        cpu_busy=cpu_busy,
        governor=host.get("governor"),
        device_utilization_pct=utilization,
        device_processes=processes,
        containers=containers,
        throttle=_throttle(transport, vendor, device, timeout, unknown),
        unknown=unknown,
        busy=busy,
    )


def _run(
    transport: Transport, argv: List[str], timeout: float, what: str, unknown: List[str]
) -> Optional[str]:
    """The output of ``argv``, or None with why in ``unknown``."""
    try:
        return transport.run(argv, timeout=timeout).check().stdout
    except TransportError as exc:
        unknown.append(one_line("%s: %s" % (what, exc)))
        return None


def _host(transport: Transport, timeout: float, unknown: List[str]) -> Dict[str, Any]:
    """cpus, load_1m, cpu_busy and governor, as far as they were read."""
    out = _run(transport, ["sh", "-c", _HOST_SCRIPT], timeout + CPU_WINDOW_S, "host load", unknown)
    return parse_host(out, unknown) if out is not None else {}


def parse_host(text: str, unknown: List[str]) -> Dict[str, Any]:
    """The output of ``_HOST_SCRIPT`` read (what is missing or malformed is named in ``unknown``)."""
    sections = [s.strip().splitlines() for s in ("\n" + text).split("\n--\n")] + [[], [], [], []]
    loadavg, nproc, stat, governors = sections[:4]
    out: Dict[str, Any] = {}
    try:
        out["load_1m"] = float(loadavg[0].split()[0])
        out["cpus"] = int(nproc[0])
        (busy0, total0), (busy1, total1) = (_busy_total(line) for line in stat[:2])
        out["cpu_busy"] = (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0
    except (IndexError, ValueError):
        unknown.append("host load: /proc/loadavg, nproc or /proc/stat unreadable")
    counts: Dict[str, int] = {}
    for name in governors:
        counts[name.strip()] = counts.get(name.strip(), 0) + 1
    out["governor"] = (
        ", ".join("%s x %d" % item for item in sorted(counts.items()))
        if counts
        else "none: no cpufreq scaling_governor (a VM, or no cpufreq driver)"
    )
    return out


def _busy_total(line: str) -> Tuple[int, int]:
    """(busy, total) jiffies of /proc/stat's ``cpu`` line: all but idle and iowait are busy."""
    fields = line.split()
    if not fields or fields[0] != "cpu":
        raise ValueError(line)
    values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(values)
    return total - values[3] - values[4], total


def _processes(
    transport: Transport, vendor: Vendor, device: int, timeout: float, unknown: List[str]
) -> Optional[List[str]]:
    argv = vendor.processes_argv([device])
    if argv is None:
        if vendor.smi:
            unknown.append("device processes: %s documents no process list" % vendor.smi)
        return None
    out = _run(transport, argv, timeout, "device processes", unknown)
    if out is None:
        return None
    found = [p for p in vendor.parse_processes(out) if p.name.rsplit("/", 1)[-1] not in IDLE_PROCESSES]
    return ["%d %s" % (p.pid, p.name) for p in found[:MOST_NAMED]]


def _containers(transport: Transport, run_id: str, timeout: float, unknown: List[str]) -> Optional[List[str]]:
    """The running containers that are not this run's jobs (by the run label every job container has)."""
    form = '{{.Names}}\t{{.Label "%s"}}' % RUN_LABEL
    out = _run(transport, ["docker", "ps", "--format", form], timeout, "other containers", unknown)
    if out is None:
        return None
    names = [n for n, _, run in (line.partition("\t") for line in out.splitlines()) if n and run != run_id]
    return names[:MOST_NAMED]


def _utilization(
    transport: Transport, vendor: Vendor, device: int, timeout: float, unknown: List[str]
) -> Optional[float]:
    argv = vendor.sample_argv([device])
    out = _run(transport, argv, timeout, "device utilisation", unknown) if argv else None
    found = [
        s.utilization_pct
        for line in (out or "").splitlines()
        for s in vendor.parse_monitor_line(line)
        if s.device == device and s.utilization_pct is not None
    ]
    if argv and out is not None and not found:
        unknown.append("device utilisation: %s gave no reading of device %d" % (argv[0], device))
    return found[0] if found else None


def _throttle(
    transport: Transport, vendor: Vendor, device: int, timeout: float, unknown: List[str]
) -> Optional[List[str]]:
    """The device's active throttle reasons, from the first of the vendor's queries that works."""
    tried: List[str] = []
    for argv in vendor.throttle_argvs([device]):
        out = _run(transport, argv, timeout, "throttle reasons", tried)
        if out is not None:
            return vendor.parse_throttle(out).get(device)
    unknown.extend(tried[-1:])
    return None
