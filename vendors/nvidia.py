"""NVIDIA GPUs: NGC PyTorch image, nvidia-smi, datasheet peaks.

Environment of the reference table (seed section 2.1): CUDA 11.8, TensorRT 8.5.1.7,
torch_tensorrt 1.3.0, PyTorch "1.13.0a0+937e930". No NGC image ships a commit
937e930; NGC PyTorch 22.11 ships 1.13.0a0+936e930 with CUDA 11.8.0 and TensorRT
8.5.1.7, and FlagPerf's own NVIDIA inference Dockerfile starts FROM
nvcr.io/nvidia/pytorch:22.11-py3, so "937e930" is a typo in the reference README and
the pins below are those of 22.11.

A second image stack, ``torch2``, builds on a base image the lab makes of its own torch 2.x environment
(``docker import`` of a machine's Python, say): nothing is fetched at build time, the onnxruntime-gpu and
LoadGen wheels come from the SDK folder when the lab puts them there, and TensorRT is not in it.
"""

from typing import List, Sequence

from runner_in_container.contract import LOADGEN_SCENARIOS

from .devices import DeviceRef, device_indices
from .image import ImageStack, SdkFile
from .peaks import TERA as T
from .peaks import Peak
from .querycsv import QueryCsvVendor

_A100 = (
    "NVIDIA A100 Tensor Core GPU datasheet: FP32 19.5, TF32 156, FP16/BF16 312 TFLOPS, INT8 624 TOPS (dense)"
)
_HOPPER = (
    "NVIDIA %s datasheet: FP32 %s TFLOPS; tensor figures there are with sparsity, dense = half "
    "(NVIDIA H100 architecture whitepaper: TF32 494.7, FP16/BF16 989.4, FP8/INT8 1978.9 for SXM5)"
)
_H200 = _HOPPER % ("H200 Tensor Core GPU", "67")
_H100_SXM = _HOPPER % ("H100 Tensor Core GPU (SXM)", "67")
_HOPPER_SXM_FLOPS = {
    "fp32": 67 * T, "tf32": 494.7 * T, "fp16": 989.4 * T, "bf16": 989.4 * T,
    "fp8": 1978.9 * T, "int8": 1978.9 * T,
}  # fmt: skip
_A100_FLOPS = {"fp32": 19.5 * T, "tf32": 156 * T, "fp16": 312 * T, "bf16": 312 * T, "int8": 624 * T}
_H100_PCIE = (
    "NVIDIA H100 Tensor Core GPU datasheet (PCIe): FP32 51 TFLOPS; TF32 756, FP16/BF16 1,513, FP8/INT8 3,026 "
    "with sparsity, dense = half"
)


#: the CPython 3.12 wheels the torch2 stack installs from the SDK folder when the lab puts them there
_CP312 = "cp312-cp312-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
TORCH2 = ImageStack(
    name="torch2",
    template="nvidia-torch2.Dockerfile.j2",
    # no base_image: the lab names its own (image.base_image); a version prefix each, or image.pins
    image_vars={"torch_version": "2.", "torchvision_version": "0."},
    sdk_files=(
        SdkFile(
            "onnxruntime_gpu-1.30.0-" + _CP312,
            "onnxruntime with the CUDA execution provider, built for the base image's CUDA; without it the "
            "image has no onnxruntime toolkit",
            optional=True,
            toolkits=("onnxruntime",),
        ),
        SdkFile(
            "mlcommons_loadgen-6.0.17-" + _CP312,
            "LoadGen (mlperf_loadgen) for the MLPerf scenarios; without it their jobs are skipped",
            optional=True,
            scenarios=LOADGEN_SCENARIOS,
        ),
    ),
    pins=("torch", "torchvision"),
    lacks={
        "tensorrt": "its base image is the lab's torch 2.x environment, without TensorRT (stack ngc-22.11 "
        "has it)",
        "torch_tensorrt": "its base image is the lab's torch 2.x environment, without torch_tensorrt (stack "
        "ngc-22.11 has it)",
    },
    fetches=False,
)


class Nvidia(QueryCsvVendor):
    name = "nvidia"
    label = "NVIDIA"
    template = "nvidia.Dockerfile.j2"
    stack = "ngc-22.11"
    pins = ("torch", "tensorrt", "torch_tensorrt", "onnxruntime", "loadgen")
    other_stacks = (TORCH2,)
    image_vars = {
        "base_image": "nvcr.io/nvidia/pytorch:22.11-py3",
        "cuda_version": "11.8",
        "torch_version": "1.13.0a0+936e930",
        "tensorrt_version": "8.5.1.7",
        "torch_tensorrt_version": "1.3.0",
        # not in the reference table; the onnxruntime toolkit needs it: a CUDA 11.x, Python 3.8 build
        "onnxruntime_version": "1.14.1",
        # LoadGen for the MLPerf scenarios: the last release with a Python 3.8 wheel
        "loadgen_version": "6.0.14",
    }
    toolkits = {
        "pytorch": ("fp32", "tf32", "fp16", "bf16"),
        "inductor": ("fp32", "tf32", "fp16", "bf16"),  # needs torch >= 2.0: a newer base_image
        "cudnn_fused": ("fp32", "tf32", "fp16", "bf16"),
        "onnxruntime": ("fp32", "fp16"),
        "tensorrt": ("fp32", "tf32", "fp16", "int8"),
        "torch_tensorrt": ("fp32", "fp16"),
    }
    runner_device = "cuda"
    visible_devices_env = "CUDA_VISIBLE_DEVICES"
    #: gpu_access nodes: the GPU's node and the two CUDA needs (nvidia-uvm-tools and nvidia-modeset serve
    #: profilers and displays, not CUDA). The NVIDIA Container Toolkit exposes GPUs by these same means
    #: (their nodes, the device cgroup), so CUDA numbers them from 0 in the container either way (not yet
    #: seen on a host of several GPUs: on one, both read 0).
    device_node = "/dev/nvidia{}"
    control_nodes = ("/dev/nvidiactl", "/dev/nvidia-uvm")
    container_renumbers = True
    #: NGC's convention: its images (and the torch2 stack's) have lib64/ and bin/ of it on their paths
    driver_mount = "/usr/local/nvidia"
    container_toolkit = ("NVIDIA Container Toolkit", "nvidia", "nvidia-container-cli")
    mps = True
    smi = "nvidia-smi"
    inventory_fields = (
        "index", "name", "memory.total", "driver_version", "pci.bus_id", "serial", "uuid", "compute_cap",
    )  # fmt: skip
    monitor_fields = ("index", "timestamp", "utilization.gpu", "memory.total", "memory.used", "power.draw")
    process_fields = ("pid", "used_memory")
    lists_processes = True
    #: the name of drivers from 535 on, then the older one (deprecated since)
    throttle_fields = ("clocks_event_reasons.active", "clocks_throttle_reasons.active")
    #: the SM clock and the throttle mask, by either name (a driver that knows neither: the basic monitor)
    monitor_optional = tuple(("clocks.sm", name) for name in throttle_fields)
    loop_ms_flag = True
    peaks = (
        Peak("NVIDIA H200 SXM", r"\bH200\b(?!.*\bNVL\b)", _HOPPER_SXM_FLOPS, _H200),
        Peak("NVIDIA H100 SXM5", r"\bH100\b.*\b(SXM|HBM3)\b", _HOPPER_SXM_FLOPS, _H100_SXM),
        Peak("NVIDIA H100 PCIe", r"\bH100\b.*\bPCIe\b",
             {"fp32": 51 * T, "tf32": 378 * T, "fp16": 756.5 * T, "bf16": 756.5 * T,
              "fp8": 1513 * T, "int8": 1513 * T}, _H100_PCIE),
        Peak("NVIDIA A100 SXM4 (40/80 GB)", r"\bA100\b.*\bSXM4?\b", _A100_FLOPS, _A100),
        Peak("NVIDIA A100 PCIe (40/80 GB)", r"\bA100\b.*\bPCIE\b", _A100_FLOPS, _A100),
    )  # fmt: skip

    def docker_device_args(self, devices: Sequence[DeviceRef]) -> List[str]:
        """``--gpus "device=0,1"``: docker reads the value as CSV, so the list goes inside double quotes."""
        indices = device_indices(devices)
        return ["--gpus", '"device={}"'.format(",".join(str(d) for d in indices))] if indices else []


VENDOR = Nvidia()
