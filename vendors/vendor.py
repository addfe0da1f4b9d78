"""What a vendor plugin declares, and the behaviour all vendors share.

A vendor module (``vendors/<name>.py``) defines one subclass of ``Vendor`` and
exposes an instance as ``VENDOR`` (the discovery convention of
``runner_in_container/discovery.py``). A vendor file holds only what differs between
vendors: its image variables, SDK file names, toolkits, device nodes, SMI tool and
peak table.

Nothing here imports torch: the control machine need not have it.
"""

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from runner_in_container.contract import unsupported

from .devices import DeviceRef, device_indices
from .errors import VendorError
from .image import ImageStack, SdkFile
from .peaks import Peak
from .smi import DeviceInfo, DeviceProcess, MonitorSample, repeat_argv


class Vendor:
    """Base vendor. Subclasses override class attributes and, where needed, methods."""

    name = ""
    #: human label, e.g. "NVIDIA"
    label = ""
    #: jinja2 template in dockerfiles/
    template = ""
    #: variables handed to the template (base image, pinned versions); see dockerfiles/README.md
    image_vars: Dict[str, str] = {}
    #: installers the build copies from the lab's SDK directory, in install order
    sdk_files: Tuple[SdkFile, ...] = ()
    #: the name of the image stack that template, image_vars and sdk_files make: the vendor's first, the
    #: default of hosts[].image.stack
    stack = "default"
    #: the packages that stack's template pins (ImageStack.pins)
    pins: Tuple[str, ...] = ()
    #: the vendor's other image stacks, which a host may choose (hosts[].image.stack)
    other_stacks: Tuple[ImageStack, ...] = ()
    #: toolkit name -> precisions it runs on this vendor: the vendor's row of the capability matrix, within
    #: what the toolkit runs anywhere (contract.TOOLKIT_PRECISIONS; ``validate`` checks it)
    toolkits: Dict[str, Tuple[str, ...]] = {}
    #: torch device string the runner uses for the val stage ("cuda" or "cpu")
    runner_device = "cpu"
    #: environment variable that selects visible devices, if any
    visible_devices_env: Optional[str] = None
    #: device node of accelerator N, e.g. "/dev/xpu{}"; None when the vendor exposes devices otherwise
    device_node: Optional[str] = None
    #: device nodes every container needs besides the per-device ones (control devices)
    control_nodes: Tuple[str, ...] = ()
    #: True when the container sees its devices renumbered from 0 (NVIDIA's --gpus); False when
    #: the nodes keep their host names and the visibility variable takes host indices
    container_renumbers = False
    #: where a container that reaches its devices through their nodes (hosts[].docker.gpu_access: nodes,
    #: beside the vendor's own docker_device_args) finds the host's driver folder (lib64/, bin/), mounted
    #: read-only; the vendor's images have it on their library path and PATH. None: no such choice
    driver_mount: Optional[str] = None
    #: the container toolkit of docker_device_args, as doctor looks for it: its name, the docker runtime it
    #: registers and its command-line tool; None where docker alone exposes the devices
    container_toolkit: Optional[Tuple[str, str, str]] = None
    #: whether docker must run the container privileged (no vendor needs it)
    privileged = False
    #: whether jobs can join a CUDA MPS daemon on the host (hosts[].mps)
    mps = False
    #: the SMI executable on the host, None when there is none
    smi: Optional[str] = None
    #: dense peak tables, searched in order; first match wins
    peaks: Tuple[Peak, ...] = ()

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
        if self.driver_mount is not None and self.device_node is None:
            raise VendorError(f"{where}: driver_mount needs device_node (gpu_access nodes gives the nodes)")
        stacks = [stack.name for stack in self.stacks()]
        if len(set(stacks)) != len(stacks):
            raise VendorError(f"{where}: image stacks repeat a name")
        for stack in self.stacks():
            self._validate_stack(stack, f"{where}: image stack {stack.name!r}")

    def _validate_stack(self, stack: ImageStack, where: str) -> None:
        if not re.match(r"^[a-z0-9][a-z0-9._-]{0,39}$", stack.name):
            raise VendorError(f"{where}: name must be lowercase letters, digits and . _ -")
        names = [sdk.name for sdk in stack.sdk_files]
        if len(set(names)) != len(names):
            raise VendorError(f"{where}: sdk_files repeat a name")
        unknown = sorted(set(stack.lacks) - set(self.toolkits))
        if unknown:
            raise VendorError(f"{where}: lacks {', '.join(unknown)}, which the vendor has not")
        for name in stack.pins:
            if "%s_version" % name not in stack.image_vars:
                raise VendorError(f"{where}: pins {name} but image_vars has no {name}_version")

    def stacks(self) -> Tuple[ImageStack, ...]:
        """The vendor's image stacks, its own first (stack, template, image_vars and sdk_files)."""
        own = ImageStack(self.stack, self.template, self.image_vars, self.sdk_files, self.pins)
        return (own,) + self.other_stacks

    def image_stack(self, name: Optional[str] = None) -> ImageStack:
        """The image stack called ``name`` (None: the first); VendorError listing the vendor's otherwise."""
        stacks = self.stacks()
        for stack in stacks:
            if name is None or stack.name == name:
                return stack
        raise VendorError(
            "vendor %s has no image stack %r (has: %s)" % (self.name, name, ", ".join(s.name for s in stacks))
        )

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
        """docker run arguments that expose exactly ``devices`` (host indices) to the container, the vendor's
        own way (hosts[].docker.gpu_access: toolkit): by default their device nodes."""
        return self.device_node_args(devices)

    def device_node_args(self, devices: Sequence[DeviceRef]) -> List[str]:
        """``--device`` for the node of each of ``devices`` (host indices) and for the control nodes."""
        indices = device_indices(devices)
        if self.device_node is None or not indices:
            return []
        nodes = [self.device_node.format(d) for d in indices] + list(self.control_nodes)
        args: List[str] = []
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

    def richer_sample_argvs(self, devices: Sequence[int]) -> List[List[str]]:
        """One-shot queries that read more than ``sample_argv`` (the SM clock, the throttle reasons), richest
        first; the monitor streams (``repeat_sample_argv``) the first that gives a sample of its device,
        else ``monitor_argv``. An SMI fails a whole query for one field it does not know, so each is tried
        before; none where the SMI reads nothing more."""
        return []

    def repeat_sample_argv(self, argv: Sequence[str], interval_s: float) -> List[str]:
        """argv that prints the one-shot query ``argv``'s reading every ``interval_s`` until killed."""
        return repeat_argv(argv, interval_s)

    def parse_monitor_line(self, line: str) -> List[MonitorSample]:
        """Samples in one line of ``monitor_argv()`` output (empty for headers, blanks and noise)."""
        return []

    def sample_argv(self, devices: Sequence[int]) -> Optional[List[str]]:
        """argv that prints one reading of ``monitor_argv``'s samples (``parse_monitor_line``) and exits;
        None without an SMI. The isolation check reads the device's utilisation at idle with it."""
        return None

    def processes_argv(self, devices: Sequence[int]) -> Optional[List[str]]:
        """argv that lists the compute processes on ``devices``; None when the SMI has no documented way."""
        return None

    def parse_processes(self, text: str) -> List[DeviceProcess]:
        """The processes in ``processes_argv()`` output."""
        return []

    def throttle_argvs(self, devices: Sequence[int]) -> List[List[str]]:
        """argvs that print each device's active clock-throttle reasons, to try in turn until one works (a
        field's name differs between driver versions); none where the SMI reports no such reasons."""
        return []

    def parse_throttle(self, text: str) -> Dict[int, List[str]]:
        """device -> its active throttle reasons (names) from the output of one of ``throttle_argvs()``."""
        return {}

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
            "stacks": [stack.describe({}) for stack in self.stacks()],
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
