"""numpy <-> torch marshalling for toolkits whose runtime takes host arrays.

XTCL, zxrt and onnxruntime's CPU provider take numpy arrays and run their device
through their own runtime, while the runner's torch device may be the CPU (the
Kunlunxin and Zixiao images ship CPU builds of torch). Their callables take a
torch tensor and give back a torch tensor on the runner's device.
"""

import numpy
import torch


def to_numpy(batch: torch.Tensor) -> numpy.ndarray:
    """A C-contiguous host array with the batch's values and dtype."""
    return numpy.ascontiguousarray(batch.detach().cpu().numpy())


def to_torch(array: numpy.ndarray, device: torch.device) -> torch.Tensor:
    """A tensor on ``device`` with the array's values and dtype."""
    return torch.from_numpy(numpy.ascontiguousarray(array)).to(device)
