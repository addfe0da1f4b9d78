"""What a vendor plugin declares, and the behaviour all vendors share.

A vendor module (``vendors/<name>.py``) defines one subclass of ``Vendor`` and
exposes an instance as ``VENDOR``; ``vendors.discover()`` finds it by scanning the
package. A vendor file holds only what differs between vendors.
"""
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Peak:
    """Dense peak FLOP/s of one device model, per precision, with where it came from."""

    model: str  # regular expression, matched case-insensitively against the device model name
    flops: Mapping[str, float]  # precision -> FLOP/s (dense, no sparsity)
    source: str  # document and table the figures come from


@dataclass(frozen=True)
class SdkFile:
    """An installer the image build needs, taken from the lab's local SDK directory."""

    name: str
    sha256: str


@dataclass(frozen=True)
class DeviceInfo:
    """One accelerator as the vendor's SMI reports it."""

    index: int
    model: str
    memory_total_mib: Optional[float] = None
    driver: Optional[str] = None
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MonitorSample:
    """One reading of one device while a job runs."""

    device: int
    memory_used_mib: Optional[float] = None
    utilization_pct: Optional[float] = None
    power_w: Optional[float] = None


class Vendor:
    """Base vendor. Subclasses override class attributes and, where needed, methods."""

    name = ""
    #: human label, e.g. "NVIDIA"
    label = ""
    #: jinja2 template in dockerfiles/
    template = ""
    #: variables handed to the template (base image, pinned versions); see dockerfiles/README.md
    image_vars = {}  # type: Dict[str, str]
    #: installers the build copies from the host's sdk_dir, checked by sha256
    sdk_files = ()  # type: Tuple[SdkFile, ...]
    #: toolkit name -> precisions it runs on this vendor
    toolkits = {}  # type: Dict[str, Tuple[str, ...]]
    #: torch device string the runner uses for the val stage ("cuda" or "cpu")
    runner_device = "cpu"
    #: environment variable that selects visible devices in the container, if any
    visible_devices_env = None  # type: Optional[str]
    #: device nodes the container needs (besides per-device nodes from device_nodes())
    peaks = ()  # type: Tuple[Peak, ...]

    # -- containers -------------------------------------------------------------
    def docker_device_args(self, devices: Sequence[int]) -> List[str]:
        """docker run arguments that expose exactly ``devices`` to the container."""
        return []

    def device_env(self, devices: Sequence[int]) -> Dict[str, str]:
        """Environment for the runner that makes ``devices`` visible."""
        if not self.visible_devices_env or not devices:
            return {}
        return {self.visible_devices_env: ",".join(str(d) for d in devices)}

    # -- SMI --------------------------------------------------------------------
    def inventory_argv(self) -> Optional[List[str]]:
        """argv that lists the devices (model, memory, driver); None if there is no SMI."""
        return None

    def parse_inventory(self, text: str) -> List[DeviceInfo]:
        """Parse the output of ``inventory_argv()``."""
        return []

    def monitor_argv(self, devices: Sequence[int], interval_s: float) -> Optional[List[str]]:
        """argv that prints samples of ``devices`` every ``interval_s`` until killed."""
        return None

    def parse_monitor_line(self, line: str) -> List[MonitorSample]:
        """Samples in one line of ``monitor_argv()`` output (empty for headers)."""
        return []

    # -- peaks ------------------------------------------------------------------
    def peak_flops(self, model: str, precision: str) -> Optional[Tuple[float, str]]:
        """(FLOP/s, source) for the device model and precision; None when unknown."""
        for peak in self.peaks:
            if re.search(peak.model, model or "", re.IGNORECASE) and precision in peak.flops:
                return peak.flops[precision], peak.source
        return None
