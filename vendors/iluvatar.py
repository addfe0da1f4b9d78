"""Iluvatar CoreX GPUs (MR-V100, BI-V100): CoreX SDK image, ixsmi, vendor-published peaks.

Environment of the reference table (seed section 2.3): CoreX 3.2.0 (driver 3.2.0),
torch-1.13.1+corex.3.2.0, ixrt-0.4.0+corex.3.2.0, CUDA 10.2. CoreX exposes the CUDA
API, so the runner's val stage uses torch's "cuda" device.

Devices are /dev/iluvatarN plus the control node /dev/itrctl, which the driver needs
to initialise (cudaGetDeviceCount fails without it); the nodes keep their host names
in the container and CUDA_VISIBLE_DEVICES takes host indices, as in Iluvatar's own
container instructions. ixsmi answers nvidia-smi's ``--query-gpu`` flags with
``--format=csv``; its loop and per-process flags are not documented, so the monitor
repeats the query and per-process memory is not read. The isolation check lists the device's compute
processes with nvidia-smi's ``--query-compute-apps``, which ixsmi mirrors (not checked on a card).
"""

from .image import PY38_BASE_IMAGE, RUNNER_PIP_PINS, SdkFile, cp38_wheel, torch_wheels
from .peaks import TERA as T
from .peaks import Peak
from .querycsv import QueryCsvVendor


class Iluvatar(QueryCsvVendor):
    name = "iluvatar"
    label = "Iluvatar CoreX"
    template = "iluvatar.Dockerfile.j2"
    image_vars = {
        "base_image": PY38_BASE_IMAGE,
        "corex_version": "3.2.0",
        "cuda_version": "10.2",
        "torch_version": "1.13.1+corex.3.2.0",
        "torchvision_version": "0.14.1+corex.3.2.0",
        "ixrt_version": "0.4.0+corex.3.2.0",
        **RUNNER_PIP_PINS,
    }
    sdk_files = (
        SdkFile("partial_install_cuda_header.tar.gz", "CUDA 10.2 headers for CoreX (from Iluvatar)"),
        SdkFile(
            "corex-installer-linux64-3.2.0_x86_64_10.2.run", "CoreX 3.2.0 toolkit installer (from Iluvatar)"
        ),
        *torch_wheels(image_vars, "Iluvatar"),
        cp38_wheel("ixrt", image_vars["ixrt_version"], "IxRT inference runtime (from Iluvatar)"),
    )
    toolkits = {
        "pytorch": ("fp32", "fp16"),
        "ixrt": ("fp16",),
    }
    runner_device = "cuda"
    visible_devices_env = "CUDA_VISIBLE_DEVICES"
    device_node = "/dev/iluvatar{}"
    control_nodes = ("/dev/itrctl",)
    smi = "ixsmi"
    lists_processes = True
    peaks = (
        Peak("Iluvatar MR-V100 (Zhikai 100)", r"\bMR-?V100\b",
             {"fp32": 24 * T, "fp16": 96 * T, "int8": 192 * T},
             "Iluvatar MR-V100 product specification (peak FP32 24 TFLOPS, FP16 96 TFLOPS, INT8 192 TOPS), "
             "as quoted by Gitee AI's MR-V100 documentation"),
        Peak("Iluvatar BI-V100 (Tiangai 100)", r"\bBI-?V100\b",
             {"fp32": 37 * T, "fp16": 147 * T, "bf16": 147 * T, "int8": 295 * T},
             "Iluvatar CoreX BI-V100 (Big Island) launch figures: FP32 37 TFLOPS, FP16/BF16 147 TFLOPS, "
             "INT8 295 TOPS (reported by TechPowerUp, April 2021)"),
    )  # fmt: skip


VENDOR = Iluvatar()
