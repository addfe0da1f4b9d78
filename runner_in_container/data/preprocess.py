"""The torchvision IMAGENET1K_V1 preprocessing contract, split at the uint8 boundary.

``resize_crop_pil`` runs in loader threads on the CPU (shorter side to ``resize``, bilinear antialiased,
center crop ``crop``, exactly ``transforms.Resize`` + ``CenterCrop`` on a PIL image); ``normalize`` runs
on whatever device the batch is on (``ToTensor`` scaling + ``Normalize``).
"""

import functools
from typing import NamedTuple, Tuple

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode


class Preprocessing(NamedTuple):
    """Resize, crop and normalisation constants."""

    resize: int = 256
    crop: int = 224
    mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: Tuple[float, float, float] = (0.229, 0.224, 0.225)


def resize_crop_pil(img: Image.Image, pp: Preprocessing) -> np.ndarray:
    """RGB PIL image -> uint8 HWC array (crop, crop, 3)."""
    img = F.resize(img, pp.resize, interpolation=InterpolationMode.BILINEAR)
    img = F.center_crop(img, pp.crop)
    return np.array(img, dtype=np.uint8)


def normalize(
    batch_u8: torch.Tensor, pp: Preprocessing, dtype: torch.dtype, channels_last: bool
) -> torch.Tensor:
    """NCHW uint8 (any device) -> ``(x.float() / 255 - mean) / std`` in ``dtype``, channels_last if asked."""
    if batch_u8.dim() != 4 or batch_u8.dtype != torch.uint8:
        raise ValueError(f"normalize needs a uint8 NCHW batch, got {batch_u8.dtype} {tuple(batch_u8.shape)}")
    x = batch_u8.float().div(255)
    mean, std = _constants(tuple(pp.mean), tuple(pp.std), x.device)
    x = x.sub_(mean).div_(std).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


@functools.lru_cache(maxsize=None)
def _constants(
    mean: Tuple[float, ...], std: Tuple[float, ...], device: torch.device
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as [1, C, 1, 1] float32 tensors on ``device``, made once: a copy from pageable host
    memory waits for the device, which in the batch loop would stall the host once per batch."""
    shape = (1, -1, 1, 1)
    return (
        torch.tensor(mean, dtype=torch.float32, device=device).view(shape),
        torch.tensor(std, dtype=torch.float32, device=device).view(shape),
    )
