"""Tencent Zixiao (C100): zxrt image, zx-smi, no published peak.

Environment of the reference table (seed section 2.5): driver and zxrt 2.4.12,
pytorch 1.13.0+cpu, onnx 1.14.0. PyTorch is the CPU build: the val stage runs on the
CPU and only the zxrt engine uses the accelerator.

zxrt is built on Enflame's TOPS stack (FlagPerf installs TopsInference-2.4.12,
topsruntime_2.4.12 and tops-sdk_2.4.12 for it) and zx-smi is Enflame's efsmi 1.20.0
renamed (FlagPerf puts /usr/local/zx-smi/zx-smi-1.20.0 on PATH and reads the same
dmon columns). So devices are taken to be Enflame's /dev/gcuN nodes, selected with
TOPS_VISIBLE_DEVICES (as Tencent's Zixiao vLLM platform does); neither was checked on
a C100. zx-smi documents no per-process listing: the isolation check reports the device's processes
as unknown (its utilisation comes from one ``-dmon`` reading). Tencent publishes no peak figures for the
C100, so its MFU stays null.
"""

import re
from typing import List, Optional, Sequence

from .image import PY38_BASE_IMAGE, RUNNER_PIP_PINS, TORCH_CPU_VERSIONS, SdkFile, torch_wheels
from .smi import DeviceInfo, MonitorSample, parse_int, parse_number, repeat_argv
from .vendor import Vendor

# zx-smi table, two lines per card: "* 0  C100 | 10.19.3 | 00:3d:0.0  Enable *"
# then "* 30C  Sleep  48.0W  300W | 16G  Disable|  0.0%  UUID *"
_CARD = re.compile(r"^\*?\s*(\d+)\s+(\S+)\s*\|\s*(\S+)\s*\|\s*(\S+)\s+(\S+)\s*\*?\s*$")
_STATE = re.compile(
    r"^\*?\s*\d+\s*C\s+\S+\s+[\d.]+\s*W\s+[\d.]+\s*W\s*\|\s*(\d+)\s*(G|GB|GiB|M|MB|MiB)\b", re.I
)
_DRIVER = re.compile(r"Driver\s+Ver(?:sion)?\s*:\s*(\S+)", re.I)
# zx-smi -dmon columns: GCU Logic Pwr DTemp DUsed Dpm M1Temp M2Temp MUsed Dclk Mclk
_DEV, _POWER, _UTIL, _MEM_USED_PCT = 0, 2, 4, 8


class Zixiao(Vendor):
    name = "zixiao"
    label = "Tencent Zixiao"
    template = "zixiao.Dockerfile.j2"
    image_vars = {
        "base_image": PY38_BASE_IMAGE,
        "zxrt_version": "2.4.12",
        **TORCH_CPU_VERSIONS,
        "onnx_version": "1.14.0",
        **RUNNER_PIP_PINS,
    }
    sdk_files = (
        SdkFile("topsruntime_2.4.12-1_amd64.deb", "TOPS runtime 2.4.12 (from Tencent)"),
        SdkFile("tops-sdk_2.4.12-1_amd64.deb", "TOPS SDK 2.4.12 (from Tencent)"),
        SdkFile("TopsInference-2.4.12-py3.8-none-any.whl", "zxrt 2.4.12 Python inference API (from Tencent)"),
        *torch_wheels(image_vars, "pytorch.org"),
    )
    toolkits = {"zxrt": ("fp16",)}
    runner_device = "cpu"
    visible_devices_env = "TOPS_VISIBLE_DEVICES"
    device_node = "/dev/gcu{}"
    smi = "zx-smi"

    def inventory_argv(self) -> Optional[List[str]]:
        return [self._tool()]

    def parse_inventory(self, text: str) -> List[DeviceInfo]:
        driver_found = _DRIVER.search(text)
        driver = driver_found.group(1) if driver_found else None
        out = []  # type: List[DeviceInfo]
        card = None
        for line in text.splitlines():
            line = line.strip()
            state = _STATE.match(line)
            if state and card is not None:
                amount, unit = float(state.group(1)), state.group(2).upper()
                memory = amount * 1024 if unit.startswith("G") else amount
                out.append(
                    DeviceInfo(
                        index=int(card.group(1)),
                        model=card.group(2),
                        memory_total_mib=memory,
                        driver=driver,
                        extra={"firmware": card.group(3), "pci.bus_id": card.group(4)},
                    )
                )
                card = None
                continue
            card = _CARD.match(line) or card
        return out

    def sample_argv(self, devices: Sequence[int]) -> Optional[List[str]]:
        return [self._tool(), "-dmon", "-s", "mp", "-c", "1"]

    def monitor_argv(self, devices: Sequence[int], interval_s: float) -> Optional[List[str]]:
        return repeat_argv(self.sample_argv(devices) or [], interval_s)

    def parse_monitor_line(self, line: str) -> List[MonitorSample]:
        tokens = line.split()
        if len(tokens) <= _MEM_USED_PCT or parse_int(tokens[_DEV]) is None or parse_int(tokens[1]) is None:
            return []
        return [
            MonitorSample(
                device=int(tokens[_DEV]),
                utilization_pct=parse_number(tokens[_UTIL]),
                power_w=parse_number(tokens[_POWER]),
                memory_used_pct=parse_number(tokens[_MEM_USED_PCT]),
            )
        ]


VENDOR = Zixiao()
