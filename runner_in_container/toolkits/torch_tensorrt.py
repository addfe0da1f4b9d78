"""Torch-TensorRT: ``torch_tensorrt.compile`` of the PyTorch model.

NOT EXECUTED in this project's CI or on the team's H200: no TensorRT there. Written
against the documented API; tested here: the import guard and the settings it derives.

``torch_tensorrt.compile(model, ir=..., inputs=[torch_tensorrt.Input(shape, dtype=...)],
enabled_precisions=..., disable_tf32=...)``. The IR is the ``torch_tensorrt_ir`` option,
default "ts" (TorchScript) for torch_tensorrt 1.x (the reference image has 1.3.0) and
"dynamo" for 2.x. References: https://docs.pytorch.org/TensorRT/v1.4.0/py_api/torch_tensorrt.html
(compile), https://docs.pytorch.org/TensorRT/v1.2.0/py_api/ts.html (ts.compile: disable_tf32),
https://docs.pytorch.org/TensorRT/py_api/dynamo.html (dynamo.compile: disable_tf32).
fp32 (TF32 disabled), tf32, fp16 (model and input in half).
"""

from typing import Any, Dict

import torch

from ..contract import TORCH_TENSORRT_IRS
from .base import Forward, Toolkit, ToolkitUnavailable
from .precision import prepare_model
from .sdk import import_sdk, major_version, sdk_version


def default_ir(torch_tensorrt_version: str) -> str:
    """The IR to use by default: "ts" for torch_tensorrt 1.x, "dynamo" (its default) from 2.0 on."""
    return "ts" if major_version(torch_tensorrt_version) < 2 else "dynamo"


def compile_settings(precision: str, shape: tuple, ir: str) -> Dict[str, Any]:
    """Keyword arguments for torch_tensorrt.compile, without the Input objects (pure, tested)."""
    if ir not in TORCH_TENSORRT_IRS:
        raise ValueError(
            "torch_tensorrt_ir must be one of {}, got {!r}".format(", ".join(TORCH_TENSORRT_IRS), ir)
        )
    dtype = torch.float16 if precision == "fp16" else torch.float32
    return {
        "ir": ir,
        "input_shape": tuple(shape),
        "input_dtype": dtype,
        "enabled_precisions": {dtype},
        "disable_tf32": precision == "fp32",
    }


class TorchTensorRT(Toolkit):
    name = "torch_tensorrt"

    def check_settings(self) -> None:
        if self.settings.device.type != "cuda":
            raise ValueError(f"torch_tensorrt needs a CUDA device, got {self.settings.device}")

    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        torch_trt = import_sdk("torch_tensorrt")
        ir = self.option("torch_tensorrt_ir", default_ir(sdk_version(torch_trt)))
        spec = compile_settings(self.settings.precision, tuple(example.shape), ir)

        def build() -> torch.nn.Module:
            prepared = prepare_model(model, self.settings.precision, self.settings.device, False)
            return torch_trt.compile(
                prepared,
                ir=spec["ir"],
                inputs=[torch_trt.Input(spec["input_shape"], dtype=spec["input_dtype"])],
                enabled_precisions=spec["enabled_precisions"],
                disable_tf32=spec["disable_tf32"],
            )

        compiled = self.timed("compile_s", build)

        def forward(batch: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return compiled(batch)

        return forward

    def versions(self) -> Dict[str, str]:
        versions = {"torch_tensorrt": sdk_version(import_sdk("torch_tensorrt"))}
        try:
            versions["tensorrt"] = sdk_version(import_sdk("tensorrt"))
        except ToolkitUnavailable:  # torch_tensorrt can run without TensorRT's Python module
            pass
        return versions


TOOLKIT = TorchTensorRT
