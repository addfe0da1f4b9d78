"""Eager PyTorch: the framework model as it is (also the runner's val stage).

fp32 (TF32 off), tf32, fp16 and bf16 (model cast); channels_last on CUDA.
"""

from typing import Dict

import torch

from .base import Forward, Toolkit
from .precision import prepare_model, tf32_flags


def torch_versions() -> Dict[str, str]:
    """torch, its CUDA and cuDNN versions (the ones this torch build uses)."""
    versions = {"torch": torch.__version__}
    if torch.version.cuda:
        versions["cuda"] = str(torch.version.cuda)
    if torch.backends.cudnn.is_available():
        versions["cudnn"] = str(torch.backends.cudnn.version())
    return versions


class PyTorch(Toolkit):
    name = "pytorch"

    def channels_last(self) -> bool:
        return self.settings.device.type == "cuda"

    def compile(self, model: torch.nn.Module, example: torch.Tensor) -> Forward:
        prepared = self.timed(
            "compile_s",
            prepare_model,
            model,
            self.settings.precision,
            self.settings.device,
            self.channels_last(),
        )
        self.notes.append(f"tf32 flags: {tf32_flags()}")

        def forward(batch: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return prepared(batch)

        return forward

    def versions(self) -> Dict[str, str]:
        return torch_versions()


TOOLKIT = PyTorch
