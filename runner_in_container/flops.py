"""FLOPs per image, counted from the model itself with forward hooks.

A multiply-add is 2 FLOPs. Only convolutions and linear layers are counted (they are
>99% of a CNN's arithmetic); bias adds, batch norm, activations and pooling are not.
"""

import copy
from typing import List, Tuple

import torch

METHOD = (
    "forward hooks on every Conv2d and Linear call over one 1x3x{size}x{size} fp32 image on {where}, "
    "before compilation; 2 FLOPs per multiply-add; bias adds, normalization, activations and pooling "
    "not counted"
)
META = "the meta device (shapes only, nothing computed)"
CPU = "the CPU"


def _conv_flops(module: torch.nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    per_output = (module.in_channels // module.groups) * kh * kw
    return 2 * output.numel() * per_output


def _linear_flops(module: torch.nn.Linear, output: torch.Tensor) -> int:
    return 2 * output.numel() * module.in_features


def count_flops(model: torch.nn.Module, size: int = 224) -> Tuple[int, str]:
    """(FLOPs for one ``size`` x ``size`` image, description of the method).

    ``model`` must be an fp32 eval-mode model on the CPU; it is left unchanged. The forward runs on a
    copy on the meta device, where the hooks see every output's shape at no cost; on the CPU where this
    torch has no meta kernel for one of the model's operators.
    """
    try:
        return _count(copy.deepcopy(model).to("meta"), size), METHOD.format(size=size, where=META)
    except (NotImplementedError, RuntimeError):
        return _count(model, size), METHOD.format(size=size, where=CPU)


def _count(model: torch.nn.Module, size: int) -> int:
    device = next(model.parameters()).device
    total = [0]
    handles: List[torch.utils.hooks.RemovableHandle] = []

    def on_conv(module, _inputs, output):
        total[0] += _conv_flops(module, output)

    def on_linear(module, _inputs, output):
        total[0] += _linear_flops(module, output)

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_hook(on_linear))
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return total[0]
