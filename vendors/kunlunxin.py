"""Kunlunxin XPUs (R200): XTCL image, ``xpu_smi -m``, no verified peak.

Environment of the reference table (seed section 2.2): XTCL 2.1, driver (XRE) 4.0,
pytorch 1.13.0+cpu, onnx 1.14.0. PyTorch is the CPU build, so the val stage runs on
the CPU and only the XTCL engine uses the XPU.

Devices are /dev/xpuN plus /dev/xpuctrl; the nodes keep their host names and
XPU_VISIBLE_DEVICES takes host indices. Kunlunxin publishes no dense peak table for
the R200 that could be checked, so its MFU stays null (FlagPerf used 0).

``xpu_smi -m`` prints one whitespace-separated line per device (the model quoted):
0 PCI bus id, 2 device index, 3 serial, 4 temperature C, 8 power W, 17/18 memory
used/total MiB, 19 utilisation %, 20 firmware, 21 model. It has no loop mode, so the
monitor repeats it (and the isolation check reads it once). It lists no processes, as documented:
the isolation check reports the device's processes as unknown.
"""

import shlex
from typing import List, Optional, Sequence

from .image import PY38_BASE_IMAGE, RUNNER_PIP_PINS, TORCH_CPU_VERSIONS, SdkFile, torch_wheels
from .smi import DeviceInfo, MonitorSample, parse_int, parse_number, repeat_argv
from .vendor import Vendor

_BUS, _DEVICE, _SERIAL, _POWER, _MEM_USED, _MEM_TOTAL, _UTIL, _FIRMWARE, _MODEL = (
    0,
    2,
    3,
    8,
    17,
    18,
    19,
    20,
    21,
)


def _fields(line: str) -> Optional[List[str]]:
    """Tokens of one device line of ``xpu_smi -m``, or None for anything else."""
    try:
        tokens = shlex.split(line)
    except ValueError:
        return None
    if len(tokens) <= _MODEL or ":" not in tokens[_BUS] or parse_int(tokens[_DEVICE]) is None:
        return None
    return tokens


class Kunlunxin(Vendor):
    name = "kunlunxin"
    label = "Kunlunxin"
    template = "kunlunxin.Dockerfile.j2"
    image_vars = {
        "base_image": PY38_BASE_IMAGE,
        "xtcl_version": "2.1",
        "xre_version": "4.0",
        **TORCH_CPU_VERSIONS,
        "onnx_version": "1.14.0",
        **RUNNER_PIP_PINS,
    }
    sdk_files = (
        SdkFile("XTCL-ubuntu_x86_64.tar.gz", "XTCL 2.1 graph compiler (from Kunlunxin)"),
        SdkFile(
            "xre-ubuntu_2004_x86_64.tar.gz", "XRE 4.0 runtime user-space libraries and tools (from Kunlunxin)"
        ),
        *torch_wheels(image_vars, "pytorch.org"),
    )
    toolkits = {"xtcl": ("fp32", "fp16")}
    runner_device = "cpu"
    visible_devices_env = "XPU_VISIBLE_DEVICES"
    device_node = "/dev/xpu{}"
    control_nodes = ("/dev/xpuctrl",)
    smi = "xpu_smi"

    def inventory_argv(self) -> Optional[List[str]]:
        return [self._tool(), "-m"]

    def parse_inventory(self, text: str) -> List[DeviceInfo]:
        out = []
        for line in text.splitlines():
            tokens = _fields(line)
            if tokens is None:
                continue
            out.append(
                DeviceInfo(
                    index=int(tokens[_DEVICE]),
                    model=tokens[_MODEL],
                    memory_total_mib=parse_number(tokens[_MEM_TOTAL]),
                    extra={
                        "pci.bus_id": tokens[_BUS],
                        "serial": tokens[_SERIAL],
                        "firmware": tokens[_FIRMWARE],
                    },
                )
            )
        return out

    def sample_argv(self, devices: Sequence[int]) -> Optional[List[str]]:
        return [self._tool(), "-m"]

    def monitor_argv(self, devices: Sequence[int], interval_s: float) -> Optional[List[str]]:
        return repeat_argv(self.sample_argv(devices) or [], interval_s)

    def parse_monitor_line(self, line: str) -> List[MonitorSample]:
        tokens = _fields(line)
        if tokens is None:
            return []
        return [
            MonitorSample(
                device=int(tokens[_DEVICE]),
                memory_used_mib=parse_number(tokens[_MEM_USED]),
                utilization_pct=parse_number(tokens[_UTIL]),
                power_w=parse_number(tokens[_POWER]),
            )
        ]


VENDOR = Kunlunxin()
