"""CPU only: PyTorch, torch.compile (inductor) and onnxruntime on the host's processors; LoadGen for the
MLPerf scenarios.

No SMI and no monitor; the inventory is /proc/cpuinfo, one DeviceInfo per physical
package. No peak table: CPU peaks depend on the SKU's vector units and clocks, so
MFU stays null.
"""

from typing import Dict, List, Optional

from runner_in_container.contract import LOADGEN_SCENARIOS

from .image import SdkFile
from .smi import DeviceInfo
from .vendor import Vendor

#: PyPI's onnxruntime 1.17.3 wheel for bookworm's Python 3.11 (sha256 as published on PyPI).
ONNXRUNTIME_WHEEL = SdkFile(
    name="onnxruntime-1.17.3-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    purpose="onnxruntime for the infer pass; without it the image has no onnxruntime toolkit",
    sha256="2f823d5eb4807007f3da7b27ca972263df6a1836e6f327384eb266274c53d05d",
    optional=True,
    toolkits=("onnxruntime",),
)

#: PyPI's LoadGen 6.0.17 wheel for the same Python (sha256 of the file pip downloads): the MLPerf scenarios
LOADGEN_WHEEL = SdkFile(
    name="mlcommons_loadgen-6.0.17-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    purpose="LoadGen (mlperf_loadgen) for the MLPerf scenarios; without it their jobs are skipped",
    sha256="3a9fe6baf81a9c1b9b2ceebb84313773996ab3c4b4ebb0d467b45ff17730ad6b",
    optional=True,
    scenarios=LOADGEN_SCENARIOS,
)


class Cpu(Vendor):
    name = "cpu"
    label = "CPU"
    template = "cpu.Dockerfile.j2"
    image_vars = {"base_image": "local/debian:bookworm"}
    sdk_files = (ONNXRUNTIME_WHEEL, LOADGEN_WHEEL)
    toolkits = {
        "pytorch": ("fp32", "bf16"),
        "inductor": ("fp32",),
        "onnxruntime": ("fp32",),
    }
    runner_device = "cpu"

    def inventory_argv(self) -> Optional[List[str]]:
        return ["cat", "/proc/cpuinfo"]

    def parse_inventory(self, text: str) -> List[DeviceInfo]:
        models: Dict[int, str] = {}
        logical: Dict[int, int] = {}
        for block in text.split("\n\n"):
            info = {}
            for line in block.splitlines():
                key, sep, value = line.partition(":")
                if sep:
                    info[key.strip()] = value.strip()
            if "processor" not in info:
                continue
            package = int(info["physical id"]) if info.get("physical id", "").isdigit() else 0
            model = info.get("model name") or info.get("Model") or info.get("CPU part")
            models[package] = models.get(package) or model or "unknown CPU"
            logical[package] = logical.get(package, 0) + 1
        return [
            DeviceInfo(index=p, model=models[p], extra={"logical_cpus": str(logical[p])})
            for p in sorted(models)
        ]


VENDOR = Cpu()
