"""onnxruntime on the shared ONNX export.

On CUDA with the CUDAExecutionProvider: the session runs on torch's CUDA stream
current at ``compile()`` (``user_compute_stream``), input and output bound to
device tensors with IO binding; fp32 (TF32 off through ``use_tf32=0``, which needs
onnxruntime >= 1.18), tf32, and fp16 (the model is halved and exported on CUDA).
Otherwise the CPUExecutionProvider runs fp32 on host numpy arrays; when the
runner's device is CUDA the batch is copied to the host inside the call (noted).
The provider actually used is recorded in ``notes``.
"""

from typing import Dict, List, Tuple

import numpy
import torch

from .base import Forward, Toolkit, ToolkitUnavailable
from .hostio import to_numpy, to_torch
from .onnx_export import INPUT_NAME, OUTPUT_NAME, export_for
from .sdk import import_sdk, sdk_version

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
USE_TF32_SINCE = (1, 18)  # onnxruntime PR #19357 / #19426: the CUDA provider's use_tf32 option
ORT_TYPES = {
    "tensor(float)": (numpy.float32, torch.float32),
    "tensor(float16)": (numpy.float16, torch.float16),
}


def version_tuple(version: str) -> Tuple[int, int]:
    """(major, minor) of "1.18.0" -> (1, 18); non-numeric parts count as 0."""
    parts = (version.split("+")[0].split(".") + ["0", "0"])[:2]
    return tuple(int(p) if p.isdigit() else 0 for p in parts)  # type: ignore[return-value]


class OnnxRuntime(Toolkit):
    name = "onnxruntime"

    def check_settings(self) -> None:
        if self.settings.precision in ("tf32", "fp16") and self.settings.device.type != "cuda":
            precision, device = self.settings.precision, self.settings.device.type
            raise ValueError(f"onnxruntime runs {precision} only on CUDA; on {device} it runs fp32")

    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        ort = import_sdk("onnxruntime")
        path, _ = export_for(self, model, example)
        providers = self._providers(ort)
        session = self.timed("compile_s", ort.InferenceSession, path, providers=providers)
        used = session.get_providers()[0]
        self.notes.append(
            "onnxruntime provider: {} (available: {})".format(used, ", ".join(ort.get_available_providers()))
        )
        if used == CUDA_EP:
            return self._bound(session, example)
        if self.settings.precision != "fp32":
            raise ToolkitUnavailable(
                f"onnxruntime fell back to {used}; {self.settings.precision} needs {CUDA_EP}"
            )
        if self.settings.device.type != "cpu":
            self.notes.append(f"batch copied {self.settings.device} -> host and logits back inside each call")
        device = self.settings.device

        def forward(batch: torch.Tensor) -> torch.Tensor:
            return to_torch(session.run([OUTPUT_NAME], {INPUT_NAME: to_numpy(batch)})[0], device)

        return forward

    def _providers(self, ort) -> List:
        if self.settings.device.type != "cuda":
            return [CPU_EP]
        if CUDA_EP not in ort.get_available_providers():
            if self.settings.precision != "fp32":
                raise ToolkitUnavailable(
                    f"onnxruntime {ort.__version__} has no {CUDA_EP}; {self.settings.precision} needs it"
                )
            return [CPU_EP]
        device = self.settings.device
        index = device.index if device.index is not None else torch.cuda.current_device()
        options = {
            "device_id": str(index),
            "user_compute_stream": str(torch.cuda.current_stream(index).cuda_stream),
        }
        if version_tuple(ort.__version__) >= USE_TF32_SINCE:
            options["use_tf32"] = "1" if self.settings.precision == "tf32" else "0"
        elif self.settings.precision == "fp32":
            raise ToolkitUnavailable(
                f"onnxruntime {ort.__version__} cannot turn TF32 off (use_tf32 needs"
                f" >= {USE_TF32_SINCE[0]}.{USE_TF32_SINCE[1]}): fp32 would be mislabelled"
            )
        return [(CUDA_EP, options), CPU_EP]

    def _bound(self, session, example: torch.Tensor) -> Forward:
        device = example.device
        index = device.index if device.index is not None else torch.cuda.current_device()
        in_meta, out_meta = session.get_inputs()[0], session.get_outputs()[0]
        in_np = ORT_TYPES[in_meta.type][0]
        out_np, out_torch = ORT_TYPES[out_meta.type]
        output = torch.empty(tuple(out_meta.shape), dtype=out_torch, device=device)
        binding = session.io_binding()
        binding.bind_output(OUTPUT_NAME, "cuda", index, out_np, tuple(output.shape), output.data_ptr())

        def forward(batch: torch.Tensor) -> torch.Tensor:
            batch = batch.contiguous()
            binding.bind_input(INPUT_NAME, "cuda", index, in_np, tuple(batch.shape), batch.data_ptr())
            session.run_with_iobinding(binding)
            return output

        return forward

    def versions(self) -> Dict[str, str]:
        ort = import_sdk("onnxruntime")
        return {"onnxruntime": sdk_version(ort)}


TOOLKIT = OnnxRuntime
