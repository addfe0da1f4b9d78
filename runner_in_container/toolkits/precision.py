"""What a precision name means for a torch model, shared by every torch-based toolkit.

* fp32: float32 weights and activations, TF32 off for matmul and cuDNN.
* tf32: float32 weights and activations, TF32 on (Ampere and later use it).
* fp16 / bf16: the model is cast to that dtype (TF32 off, so any float32 op left is true fp32).
"""

import copy
from typing import Dict

import torch

TORCH_DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def torch_dtype(precision: str) -> torch.dtype:
    """dtype of weights and activations for ``precision`` (ValueError for int8 and unknown names)."""
    if precision not in TORCH_DTYPES:
        raise ValueError(
            "precision {} has no torch dtype (known: {})".format(precision, ", ".join(TORCH_DTYPES))
        )
    return TORCH_DTYPES[precision]


def set_tf32(enabled: bool) -> None:
    """Allow or forbid TF32 in CUDA matmuls and cuDNN convolutions (process-wide)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def tf32_flags() -> Dict[str, bool]:
    """The current TF32 switches, for the result's record."""
    return {
        "cuda.matmul.allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn.allow_tf32": bool(torch.backends.cudnn.allow_tf32),
    }


def cast_copy(
    model: torch.nn.Module, dtype: torch.dtype, device: torch.device, channels_last: bool = False
) -> torch.nn.Module:
    """An eval-mode copy of ``model`` on ``device`` in ``dtype``; the caller's model is untouched."""
    copied = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    if channels_last:
        copied = copied.to(memory_format=torch.channels_last)
    return copied


def prepare_model(
    model: torch.nn.Module, precision: str, device: torch.device, channels_last: bool
) -> torch.nn.Module:
    """``cast_copy`` for ``precision``, after setting the process-wide TF32 switches for it."""
    dtype = torch_dtype(precision)
    set_tf32(precision == "tf32")
    return cast_copy(model, dtype, device, channels_last)
