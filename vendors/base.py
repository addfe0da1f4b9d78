"""What a vendor plugin declares, and the behaviour all vendors share.

A vendor module (``vendors/<name>.py``) defines one subclass of ``Vendor`` and
exposes an instance as ``VENDOR``; ``vendors.discover()`` finds it by scanning the
package. A vendor file holds only what differs between vendors: its image
variables, SDK file names, toolkits, device nodes, SMI tool and peak table.

Nothing here imports torch: the control machine need not have it.
"""

import csv
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from runner_in_container.contract import PEAK_PRECISIONS, unsupported

#: values an SMI prints where a field is missing
_MISSING = ("", "n/a", "[n/a]", "[not supported]", "not supported", "-", "--", "[unknown error]")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_SDK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: a constant script: run "$@" (after the interval) every $1 seconds until killed; when the command
#: fails, exit with its status. Values reach it only as positional parameters, never as script text.
_REPEAT_SCRIPT = 'i="$1"; shift; while :; do "$@" || exit; sleep "$i"; done'


#: the runner's own dependencies where the vendor image does not ship them (not in the reference
#: tables; releases of late 2022, contemporary with torch 1.13, that support Python 3.8)
RUNNER_PIP_PINS = {"numpy_version": "1.23.5", "pillow_version": "9.3.0"}


class VendorError(ValueError):
    """A vendor descriptor is malformed or a vendor name is unknown (message names it)."""


@dataclass(frozen=True)
class Peak:
    """Dense peak FLOP/s (or OP/s for int8) of one device model, per precision, with where it came from."""

    model: str  # device model as people name it, e.g. "NVIDIA H200 SXM"
    match: str  # regular expression, searched case-insensitively in the SMI's device name
    flops: Mapping[str, float]  # precision -> FLOP/s (dense, no sparsity)
    source: str  # document (and table) the figures come from

    def __post_init__(self) -> None:
        unknown = sorted(set(self.flops) - set(PEAK_PRECISIONS))
        if unknown:
            raise VendorError("peak {}: unknown precision(s) {}".format(self.model, ", ".join(unknown)))
        if not all(value > 0 for value in self.flops.values()):
            raise VendorError(f"peak {self.model}: figures must be positive FLOP/s")
        if not self.source:
            raise VendorError(f"peak {self.model}: a source is required")
        re.compile(self.match)


@dataclass(frozen=True)
class SdkFile:
    """An installer the image build copies from the lab's local SDK directory.

    The descriptor declares the file *name* (the exact file the vendor ships for the
    pinned version) and what it is; the vendor does not publish checksums, so the lab
    states the sha256 of each file in its cluster file (``image.sdk_checksums``), and
    the build refuses a file whose digest differs. ``sha256`` here stays empty unless
    a vendor publishes one. No URL or mirror is ever declared.
    """

    name: str
    purpose: str
    sha256: str = ""
    #: an optional file is left out of the build (and the template) when sdk_dir lacks it
    optional: bool = False
    #: the toolkits the image has only with this file: without it their jobs are skipped, not run to fail
    toolkits: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _SDK_NAME.match(self.name):
            raise VendorError(f"SDK file name {self.name!r}: use letters, digits and . _ + - only")
        if self.sha256 and not _SHA256.match(self.sha256):
            raise VendorError(f"SDK file {self.name}: sha256 must be 64 lowercase hex digits")


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


# -- parsing helpers shared by the SMI parsers ---------------------------------------
def parse_number(text: Optional[str]) -> Optional[float]:
    """Leading number of an SMI field ("143771 MiB", "79.81 W", "0 %"); None for N/A and the like."""
    if text is None:
        return None
    value = text.strip()
    if value.lower() in _MISSING:
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
    return ["sh", "-c", _REPEAT_SCRIPT, "rn50bench-monitor", _seconds(interval_s)] + list(argv)


def _seconds(interval_s: float) -> str:
    if not interval_s > 0:
        raise ValueError(f"monitor interval must be positive, got {interval_s!r}")
    return f"{interval_s:.3f}".rstrip("0").rstrip(".")


class DevicePlaceholder:
    """A device index not known yet (Slurm allocates it on the node): it renders as ``token``, which the
    launcher replaces with the index where it is known."""

    def __init__(self, token: str) -> None:
        self.token = token

    def __str__(self) -> str:
        return self.token

    def __repr__(self) -> str:
        return f"DevicePlaceholder({self.token!r})"


#: a device in a command: a host index, or a placeholder for one
DeviceRef = Union[int, DevicePlaceholder]


def device_indices(devices: Sequence[DeviceRef]) -> List[DeviceRef]:
    """``devices`` as a checked list: non-negative integers (or placeholders), no repeats (ValueError
    otherwise)."""
    out: List[DeviceRef] = []
    for device in devices:
        if isinstance(device, DevicePlaceholder):
            out.append(device)
            continue
        if not isinstance(device, int) or isinstance(device, bool) or device < 0:
            raise ValueError(f"device index must be a non-negative integer, got {device!r}")
        out.append(device)
    if len({str(d) for d in out}) != len(out):
        raise ValueError("device indices repeat: {}".format(",".join(str(d) for d in out)))
    return out


class Vendor:
    """Base vendor. Subclasses override class attributes and, where needed, methods."""

    name = ""
    #: human label, e.g. "NVIDIA"
    label = ""
    #: jinja2 template in dockerfiles/
    template = ""
    #: variables handed to the template (base image, pinned versions); see dockerfiles/README.md
    image_vars = {}  # type: Dict[str, str]
    #: installers the build copies from the lab's SDK directory, in install order
    sdk_files = ()  # type: Tuple[SdkFile, ...]
    #: toolkit name -> precisions it runs on this vendor: the vendor's row of the capability matrix, within
    #: what the toolkit runs anywhere (contract.TOOLKIT_PRECISIONS; ``validate`` checks it)
    toolkits = {}  # type: Dict[str, Tuple[str, ...]]
    #: torch device string the runner uses for the val stage ("cuda" or "cpu")
    runner_device = "cpu"
    #: environment variable that selects visible devices, if any
    visible_devices_env = None  # type: Optional[str]
    #: device node of accelerator N, e.g. "/dev/xpu{}"; None when the vendor exposes devices otherwise
    device_node = None  # type: Optional[str]
    #: device nodes every container needs besides the per-device ones (control devices)
    control_nodes = ()  # type: Tuple[str, ...]
    #: True when the container sees its devices renumbered from 0 (NVIDIA's --gpus); False when
    #: the nodes keep their host names and the visibility variable takes host indices
    container_renumbers = False
    #: whether docker must run the container privileged (no vendor needs it)
    privileged = False
    #: whether jobs can join a CUDA MPS daemon on the host (hosts[].mps)
    mps = False
    #: the SMI executable on the host, None when there is none
    smi = None  # type: Optional[str]
    #: dense peak tables, searched in order; first match wins
    peaks = ()  # type: Tuple[Peak, ...]

    # -- descriptor checks ----------------------------------------------------------
    def validate(self) -> None:
        """Raise VendorError naming the first malformed field of this descriptor."""
        where = f"vendor {self.name or type(self).__name__!r}"
        if not re.match(r"^[a-z][a-z0-9_]*$", self.name):
            raise VendorError(f"{where}: name must be lowercase letters, digits and _")
        if not self.label or not self.template:
            raise VendorError(f"{where}: label and template are required")
        if not self.image_vars.get("base_image"):
            raise VendorError(f"{where}: image_vars.base_image is required")
        if self.runner_device not in ("cuda", "cpu"):
            raise VendorError(f"{where}: runner_device must be 'cuda' or 'cpu'")
        if not self.toolkits:
            raise VendorError(f"{where}: at least one toolkit is required")
        for toolkit, precisions in self.toolkits.items():
            if not precisions:
                raise VendorError(f"{where}: toolkit {toolkit}: no precisions")
            for precision in precisions:
                reason = unsupported(toolkit, precision)
                if reason:
                    raise VendorError(f"{where}: toolkits: {reason} (runner_in_container/contract.py)")
        names = [sdk.name for sdk in self.sdk_files]
        if len(set(names)) != len(names):
            raise VendorError(f"{where}: sdk_files repeat a name")

    def unsupported(self, toolkit: str, precision: str) -> Optional[str]:
        """Why this vendor cannot run ``toolkit`` at ``precision`` (the capability matrix), or None."""
        if toolkit not in self.toolkits:
            return "vendor {} has no toolkit {} (has: {})".format(
                self.name, toolkit, ", ".join(sorted(self.toolkits))
            )
        if precision not in self.toolkits[toolkit]:
            return "toolkit {} on {} runs {}, not {}".format(
                toolkit, self.name, ", ".join(self.toolkits[toolkit]), precision
            )
        return None

    # -- containers -------------------------------------------------------------
    def docker_device_args(self, devices: Sequence[DeviceRef]) -> List[str]:
        """docker run arguments that expose exactly ``devices`` (host indices) to the container."""
        indices = device_indices(devices)
        if self.device_node is None or not indices:
            return []
        nodes = [self.device_node.format(d) for d in indices] + list(self.control_nodes)
        args = []  # type: List[str]
        for node in nodes:
            args += ["--device", node]
        return args

    def device_env(self, devices: Sequence[DeviceRef]) -> Dict[str, str]:
        """Environment that makes ``devices`` (host indices) the visible ones for a runner on the host."""
        return self._visible(device_indices(devices))

    def container_env(self, devices: Sequence[DeviceRef]) -> Dict[str, str]:
        """Environment for the runner inside a container started with ``docker_device_args(devices)``."""
        indices = device_indices(devices)
        return self._visible(list(range(len(indices))) if self.container_renumbers else indices)

    def _visible(self, indices: Sequence[DeviceRef]) -> Dict[str, str]:
        if not self.visible_devices_env or not indices:
            return {}
        return {self.visible_devices_env: ",".join(str(d) for d in indices)}

    # -- SMI --------------------------------------------------------------------
    def inventory_argv(self) -> Optional[List[str]]:
        """argv that lists the devices (model, memory, driver); None if there is no SMI."""
        return None

    def parse_inventory(self, text: str) -> List[DeviceInfo]:
        """Parse the output of ``inventory_argv()``."""
        return []

    def monitor_argv(self, devices: Sequence[int], interval_s: float) -> Optional[List[str]]:
        """argv that prints samples every ``interval_s`` until killed; None without an SMI.

        Its lines may carry devices besides ``devices``: callers keep the samples whose
        ``device`` they asked for.
        """
        return None

    def parse_monitor_line(self, line: str) -> List[MonitorSample]:
        """Samples in one line of ``monitor_argv()`` output (empty for headers, blanks and noise)."""
        return []

    def process_memory_argv(self, devices: Sequence[int]) -> Optional[List[str]]:
        """argv that lists device memory per process; None when the SMI cannot (use device memory then)."""
        return None

    def parse_process_memory(self, text: str) -> Dict[int, float]:
        """pid -> device memory in MiB (summed over devices) from ``process_memory_argv()`` output."""
        return {}

    def _tool(self) -> str:
        """The SMI executable (VendorError when a vendor that needs one did not set it)."""
        if not self.smi:
            raise VendorError(f"vendor {self.name!r}: smi is not set")
        return self.smi

    # -- peaks ------------------------------------------------------------------
    def find_peak(self, model: str) -> Optional[Peak]:
        """Peak table of the device model named by the SMI, or None when the model is unknown."""
        for peak in self.peaks:
            if model and re.search(peak.match, model, re.IGNORECASE):
                return peak
        return None

    def peak_flops(self, model: str, precision: str) -> Optional[Tuple[float, str]]:
        """(dense FLOP/s, source) for the device model and precision; None when unknown (no MFU)."""
        peak = self.find_peak(model)
        if peak is None or precision not in peak.flops:
            return None
        return peak.flops[precision], peak.source

    # -- what `python -m orchestrator vendors` prints ------------------------------
    def describe(self) -> Dict[str, Any]:
        """Plain data about this vendor: image, toolkits, devices flags, SMI and known peaks."""
        return {
            "name": self.name,
            "label": self.label,
            "template": self.template,
            "image_vars": dict(self.image_vars),
            "sdk_files": [{"name": s.name, "purpose": s.purpose} for s in self.sdk_files],
            "toolkits": {k: list(v) for k, v in self.toolkits.items()},
            "runner_device": self.runner_device,
            "visible_devices_env": self.visible_devices_env,
            "docker_device_args_example": self.docker_device_args([0, 1]),
            "privileged": self.privileged,
            "smi": self.smi,
            "devices": [
                {"model": p.model, "match": p.match, "peak_flops": dict(p.flops), "source": p.source}
                for p in self.peaks
            ],
        }


class QueryCsvVendor(Vendor):
    """Vendors whose SMI speaks nvidia-smi's ``--query-gpu=... --format=csv`` dialect."""

    #: fields of the inventory query; index, name, memory.total, driver_version come first
    inventory_fields = ("index", "name", "memory.total", "driver_version")  # type: Tuple[str, ...]
    #: fields of the monitor query
    monitor_fields = ("index", "utilization.gpu", "memory.used", "power.draw")  # type: Tuple[str, ...]
    #: fields of the per-process query (None: the SMI cannot list processes, or it is unverified)
    process_fields = None  # type: Optional[Tuple[str, ...]]
    #: whether the SMI has nvidia-smi's ``-lms`` loop flag (else the query is repeated by sh)
    loop_ms_flag = False
    _FORMAT = "--format=csv,noheader,nounits"

    def inventory_argv(self) -> Optional[List[str]]:
        return [self._tool(), "--query-gpu=" + ",".join(self.inventory_fields), self._FORMAT]

    def parse_inventory(self, text: str) -> List[DeviceInfo]:
        out = []
        for rec in csv_records(text, self.inventory_fields, required=4):
            driver = rec.get("driver_version", "")
            extra = {
                k: v
                for k, v in rec.items()
                if k not in self.inventory_fields[:4] and v.lower() not in _MISSING
            }
            out.append(
                DeviceInfo(
                    index=int(rec["index"]),
                    model=rec["name"],
                    memory_total_mib=parse_number(rec.get("memory.total")),
                    driver=None if driver.lower() in _MISSING else driver,
                    extra=extra,
                )
            )
        return out

    def monitor_argv(self, devices: Sequence[int], interval_s: float) -> Optional[List[str]]:
        query = self._query_gpu(devices, self.monitor_fields)
        if self.loop_ms_flag:
            _seconds(interval_s)  # validates
            return query + ["-lms", str(max(1, round(interval_s * 1000)))]
        return repeat_argv(query, interval_s)

    def parse_monitor_line(self, line: str) -> List[MonitorSample]:
        out = []
        for rec in csv_records(line, self.monitor_fields):
            out.append(
                MonitorSample(
                    device=int(rec["index"]),
                    memory_used_mib=parse_number(rec.get("memory.used")),
                    utilization_pct=parse_number(rec.get("utilization.gpu")),
                    power_w=parse_number(rec.get("power.draw")),
                )
            )
        return out

    def process_memory_argv(self, devices: Sequence[int]) -> Optional[List[str]]:
        if not self.process_fields:
            return None
        argv = [self._tool(), "--query-compute-apps=" + ",".join(self.process_fields), self._FORMAT]
        return argv + self._ids(devices)

    def parse_process_memory(self, text: str) -> Dict[int, float]:
        out = {}  # type: Dict[int, float]
        for rec in csv_records(text, self.process_fields or ()):
            used = parse_number(rec.get("used_memory"))
            if used is not None:
                pid = int(rec["pid"])
                out[pid] = out.get(pid, 0.0) + used
        return out

    def _query_gpu(self, devices: Sequence[int], fields: Sequence[str]) -> List[str]:
        return [self._tool(), "--query-gpu=" + ",".join(fields), self._FORMAT] + self._ids(devices)

    @staticmethod
    def _ids(devices: Sequence[int]) -> List[str]:
        indices = device_indices(devices)
        return ["-i", ",".join(str(d) for d in indices)] if indices else []
