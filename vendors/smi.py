"""What an SMI reports (devices, monitor samples) and the helpers its parsers share."""

import csv
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

#: values an SMI prints where a field is missing
MISSING = ("", "n/a", "[n/a]", "[not supported]", "not supported", "-", "--", "[unknown error]")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")

#: a constant script: run "$@" (after the interval) every $1 seconds until killed; when the command
#: fails, exit with its status. Values reach it only as positional parameters, never as script text.
_REPEAT_SCRIPT = 'i="$1"; shift; while :; do "$@" || exit; sleep "$i"; done'


@dataclass(frozen=True)
class DeviceInfo:
    """One accelerator (or CPU package) as the vendor's SMI reports it."""

    index: int
    model: str
    memory_total_mib: Optional[float] = None
    driver: Optional[str] = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MonitorSample:
    """One reading of one device while a job runs (None where the SMI gives nothing)."""

    device: int
    memory_used_mib: Optional[float] = None
    utilization_pct: Optional[float] = None
    power_w: Optional[float] = None
    #: set by SMIs that report memory only as a share of the total
    memory_used_pct: Optional[float] = None
    #: the SM clock (MHz), where the SMI was asked for it
    sm_clock_mhz: Optional[float] = None
    #: the active clock-throttle reasons (``throttle_names``; () for none), None where not sampled
    throttle: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True)
class DeviceProcess:
    """A compute process on a device, as the SMI lists it (the isolation check's "other processes")."""

    pid: int
    name: str
    used_memory_mib: Optional[float] = None


#: NVML's clock-throttle (clock-event) reason bits, as ``clocks_throttle_reasons.active`` reports them
THROTTLE_REASONS = (
    (0x1, "GpuIdle"),
    (0x2, "ApplicationsClocksSetting"),
    (0x4, "SwPowerCap"),
    (0x8, "HwSlowdown"),
    (0x10, "SyncBoost"),
    (0x20, "SwThermalSlowdown"),
    (0x40, "HwThermalSlowdown"),
    (0x80, "HwPowerBrakeSlowdown"),
    (0x100, "DisplayClockSetting"),
)


def throttle_names(mask: str) -> Optional[List[str]]:
    """The reasons a hex bit mask ("0x0000000000000004") names ([] for none; None when it is no mask)."""
    try:
        bits = int(mask.strip(), 16)
    except ValueError:
        return None
    names = [name for bit, name in THROTTLE_REASONS if bits & bit]
    unknown = bits & ~sum(bit for bit, _ in THROTTLE_REASONS)
    return names + (["0x%x" % unknown] if unknown else [])


def parse_number(text: Optional[str]) -> Optional[float]:
    """Leading number of an SMI field ("143771 MiB", "79.81 W", "0 %"); None for N/A and the like."""
    if text is None:
        return None
    value = text.strip()
    if value.lower() in MISSING:
        return None
    found = _NUMBER.match(value)
    return float(found.group(0)) if found else None


def parse_int(text: Optional[str]) -> Optional[int]:
    """An integer field (a device index); None when it is not one."""
    value = (text or "").strip()
    return int(value) if value.isdigit() else None


def csv_records(text: str, fields: Sequence[str], required: Optional[int] = None) -> List[Dict[str, str]]:
    """Rows of ``--format=csv`` output as field -> text, skipping blank, header and short lines.

    A row counts when it has at least ``required`` (default: all) fields and its first
    field is an integer (the device index or a pid), so a header line (``index, name,
    ...``) and noise are dropped without knowing the flags.
    """
    need = len(fields) if required is None else required
    out = []
    for row in csv.reader(text.splitlines(), skipinitialspace=True):
        cells = [cell.strip() for cell in row]
        if not cells or len(cells) < need or parse_int(cells[0]) is None:
            continue
        out.append(dict(zip(fields, cells)))
    return out


def repeat_argv(argv: Sequence[str], interval_s: float) -> List[str]:
    """argv that runs ``argv`` every ``interval_s`` seconds until killed (for SMIs without a loop mode)."""
    return ["sh", "-c", _REPEAT_SCRIPT, "rn50bench-monitor", interval_text(interval_s)] + list(argv)


def interval_text(interval_s: float) -> str:
    """A positive interval as the shortest decimal text (``0.5``, ``2``); ValueError otherwise."""
    if not interval_s > 0:
        raise ValueError(f"monitor interval must be positive, got {interval_s!r}")
    return f"{interval_s:.3f}".rstrip("0").rstrip(".")
