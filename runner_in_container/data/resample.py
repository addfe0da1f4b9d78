"""The PIL path's resize and center crop, reproduced on tensors of any device as matrix products.

``preprocess.resize_crop_pil`` is torchvision's Resize (shorter side, bilinear, antialiased) + CenterCrop on
a PIL image, i.e. PIL's ``ImagingResample``: two separable passes; per output pixel the bilinear (triangle)
filter widened by the reduction factor, its taps normalised to sum 1 and stored as 22-bit fixed point; each
pass rounded to 8 bits. Here the same coefficients, computed in float64 with the same operations in the
same order, fill per image a horizontal matrix (crop x source columns) and a vertical one (crop x source
rows) for the output pixels the center crop keeps, so a batch is two batched matrix products, each followed
by PIL's rounding. Only the source region those pixels read is copied in (about 0.875 x the shorter side
squared, plus the filter's reach); images are grouped by region size and zero-padded within a group.

Pass order: PIL resizes horizontally first; Pillow >= 13 resizes vertically first when the height loses
more than twice as many pixels as the width (Pillow PR 9549). ``pil_reorders()`` finds out which the
installed Pillow does, by resizing a probe image, and the same order is used here.

With ``dtype=torch.float64`` every product and sum is exact and the result equals PIL's bit for bit (given
the same decoded pixels); with float32 (the default, fast on every GPU) a sum can fall on the other side of
a rounding boundary, so rare pixels differ by 1 (tests/test_data_gpu.py measures how rare).
"""

import contextlib
import functools
import math
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

from .preprocess import Preprocessing

#: PIL's fixed-point coefficient scale (Resample.c PRECISION_BITS = 32 - 8 - 2)
FIXED_POINT = float(1 << 22)
#: region sizes are grouped in steps of this many pixels (padding waste < one step per side)
GROUP_STEP = 32

DESCRIPTION = (
    "PIL's bilinear antialiased resample (torchvision Resize on PIL images) + center crop, reproduced on "
    "the device: PIL's fixed-point coefficients and pass order, two batched float32 matmuls over the "
    "source region the crop reads, each pass rounded to 8 bits like PIL (data/resample.py)"
)


def resized_size(height: int, width: int, size: int) -> Tuple[int, int]:
    """(height, width) after torchvision's Resize(size) (shorter side to ``size``) of such an image."""
    short, long = (width, height) if width <= height else (height, width)
    new_long = int(size * long / short)
    return (new_long, size) if width <= height else (size, new_long)


class Axis(NamedTuple):
    """One axis of an image: its resize, the output pixels kept, and the source pixels they read."""

    size: int  # source pixels
    resized: int  # pixels after the resize
    offset: int  # first resized pixel kept
    start: int  # first source pixel the kept pixels read
    stop: int  # one past the last
    taps: int  # PIL's maximum number of filter taps per output pixel

    @property
    def span(self) -> int:
        return self.stop - self.start


def axis(size: int, resized: int, offset: int, count: int) -> Axis:
    """PIL's coefficient bounds (precompute_coeffs) for output pixels offset .. offset + count - 1."""
    scale = size / resized
    support = max(scale, 1.0)  # bilinear support 1.0, widened when reducing
    first = (offset + 0.5) * scale
    last = (offset + count - 1 + 0.5) * scale
    start = max(int(first - support + 0.5), 0)
    stop = min(int(last + support + 0.5), size)
    return Axis(size, resized, offset, start, stop, 2 * int(math.ceil(support)) + 1)


class Geometry(NamedTuple):
    rows: Axis
    cols: Axis
    vertical_first: bool  # PIL's pass order for this image


def geometry(height: int, width: int, pp: Preprocessing) -> Geometry:
    """Resize and center crop (torchvision's rounding) of an image of ``height`` x ``width``."""
    if pp.resize < pp.crop:
        raise ValueError(f"the device resize needs resize >= crop, got {pp.resize} < {pp.crop}")
    new_h, new_w = resized_size(height, width, pp.resize)
    top = int(round((new_h - pp.crop) / 2.0))
    left = int(round((new_w - pp.crop) / 2.0))
    return Geometry(
        axis(height, new_h, top, pp.crop),
        axis(width, new_w, left, pp.crop),
        pil_reorders() and _shrinks_height_more(height, width, new_h, new_w),
    )


def _shrinks_height_more(height: int, width: int, new_h: int, new_w: int) -> bool:
    """Pillow >= 13's test for resizing vertically first."""
    return new_h < height and height - new_h > 2 * (width - new_w)


def band_weights(
    size: torch.Tensor,
    resized: torch.Tensor,
    offset: torch.Tensor,
    start: torch.Tensor,
    count: int,
    taps: int,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """PIL's coefficients of ``count`` output pixels of n images along one axis.

    Inputs are float64 [n] on one device (values of ``Axis`` fields). Returns (index, weight), both
    [n, count, taps]: source pixel relative to ``start`` and fixed-point weight as float64 (zero for taps
    past PIL's bound; their index may run past the region and is clamped by the caller).
    """
    device = size.device
    scale = (size / resized).unsqueeze(1)
    support = scale.clamp(min=1.0)
    inverse = 1.0 / support
    pixel = offset.unsqueeze(1) + torch.arange(count, dtype=torch.float64, device=device)
    center = (pixel + 0.5) * scale
    low = torch.trunc(center - support + 0.5).clamp(min=0.0)
    high = torch.minimum(torch.trunc(center + support + 0.5), size.unsqueeze(1))
    source = low.unsqueeze(2) + torch.arange(taps, dtype=torch.float64, device=device)
    x = ((source - center.unsqueeze(2)) + 0.5) * inverse.unsqueeze(2)
    weight = (1.0 - x.abs()).clamp(min=0.0) * (source < high.unsqueeze(2))
    total = weight[..., 0].clone()
    for tap in range(1, taps):  # PIL's summation order
        total += weight[..., tap]
    fixed = torch.floor(weight / total.unsqueeze(2) * FIXED_POINT + 0.5)
    return (source - start.view(-1, 1, 1)).long(), fixed / FIXED_POINT


def _dense(band: Tuple[torch.Tensor, torch.Tensor], length: int, dtype: torch.dtype) -> torch.Tensor:
    """[m, count, length] matrix from band coefficients."""
    index, weight = band
    dense = torch.zeros(index.shape[0], index.shape[1], length, dtype=dtype, device=index.device)
    return dense.scatter_add_(2, index.clamp(max=length - 1), weight.to(dtype))


def _round_8bit(x: torch.Tensor) -> torch.Tensor:
    """PIL's rounding of a pass's result: floor(x + 0.5), clipped to 0..255 (in place)."""
    return x.add_(0.5).floor_().clamp_(0.0, 255.0)


def two_pass(source: torch.Tensor, vertical: torch.Tensor, horizontal: torch.Tensor, vertical_first: bool):
    """PIL's two rounded passes over [m, 3, rows, cols] with [m, out_rows, rows] and [m, out_cols, cols]."""
    v, h = vertical.unsqueeze(1), horizontal.transpose(1, 2).unsqueeze(1)
    if vertical_first:
        return _round_8bit(torch.matmul(_round_8bit(torch.matmul(v, source)), h))
    return _round_8bit(torch.matmul(v, _round_8bit(torch.matmul(source, h))))


@functools.lru_cache(maxsize=None)
def pil_reorders() -> bool:
    """Whether this Pillow resizes vertically first when the height shrinks far more (Pillow >= 13)."""
    height, width, new_h, new_w = 101, 100, 60, 80  # height loses 41 pixels, width 20
    pixels = np.random.RandomState(0).randint(0, 256, (height, width, 3)).astype(np.uint8)
    expected = np.asarray(Image.fromarray(pixels, "RGB").resize((new_w, new_h), Image.BILINEAR))
    source = torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).double()
    bands = []
    for size, new in ((height, new_h), (width, new_w)):
        params = torch.tensor([[size, new, 0, 0]], dtype=torch.float64).unbind(1)
        bands.append(_dense(band_weights(*params, new, axis(size, new, 0, new).taps), size, torch.float64))
    vertical_first = two_pass(source, bands[0], bands[1], True)[0].permute(1, 2, 0).numpy()
    return bool((vertical_first == expected).all())


@contextlib.contextmanager
def _exact_fp32_matmul(device: torch.device) -> Iterator[None]:
    """TF32 off for these matmuls (the switch is process-wide; a tf32 run's model turns it on)."""
    flags = torch.backends.cuda.matmul
    saved = flags.allow_tf32
    if device.type == "cuda" and saved:
        flags.allow_tf32 = False
    try:
        yield
    finally:
        flags.allow_tf32 = saved


def _groups(geometries: Sequence[Geometry]) -> List[List[int]]:
    """Image indices grouped by pass order and source region size (in steps of GROUP_STEP pixels)."""
    groups: Dict[Tuple[bool, int, int], List[int]] = {}
    for i, geo in enumerate(geometries):
        key = (geo.vertical_first, -(-geo.rows.span // GROUP_STEP), -(-geo.cols.span // GROUP_STEP))
        groups.setdefault(key, []).append(i)
    return [groups[key] for key in sorted(groups)]


def resize_crop_into(
    out: torch.Tensor,
    images: Sequence[torch.Tensor],
    slots: Sequence[int],
    pp: Preprocessing,
    geometries: Optional[Sequence[Geometry]] = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Resize and crop each uint8 [3, H, W] ``images[i]`` into ``out[slots[i]]`` (uint8 [bs, 3, crop, crop]).

    ``geometries[i]``: ``geometry()`` of ``images[i]``, when known already (from its JPEG header).
    All work is queued on the current stream of ``out``'s device; the images must be on that device.
    The per-image parameters reach the device in one copy (from pinned memory on CUDA).
    """
    if not images:
        return
    device, crop = out.device, pp.crop
    if geometries is None:
        geometries = [geometry(int(img.shape[1]), int(img.shape[2]), pp) for img in images]
    for img, geo in zip(images, geometries):
        if (int(img.shape[1]), int(img.shape[2])) != (geo.rows.size, geo.cols.size):
            raise ValueError(f"an image of {tuple(img.shape)} came with the geometry of {geo}")
    groups = _groups(geometries)
    order = [i for group in groups for i in group]
    table = torch.tensor(
        [[slots[i]] + list(geometries[i].rows[:4]) + list(geometries[i].cols[:4]) for i in order],
        dtype=torch.int64,
    )
    if device.type == "cuda":
        table = table.pin_memory()
    table = table.to(device, non_blocking=True)
    params, slot_index = table.double(), table[:, 0].contiguous()
    vertical = band_weights(*params[:, 1:5].unbind(1), crop, max(g.rows.taps for g in geometries))
    horizontal = band_weights(*params[:, 5:9].unbind(1), crop, max(g.cols.taps for g in geometries))
    first = 0
    with _exact_fp32_matmul(device):
        for group in groups:
            last = first + len(group)
            rows = max(geometries[i].rows.span for i in group)
            cols = max(geometries[i].cols.span for i in group)
            source = torch.zeros((len(group), 3, rows, cols), dtype=dtype, device=device)
            for k, i in enumerate(group):
                r, c, _ = geometries[i]
                source[k, :, : r.span, : c.span].copy_(images[i][:, r.start : r.stop, c.start : c.stop])
            v = _dense((vertical[0][first:last], vertical[1][first:last]), rows, dtype)
            h = _dense((horizontal[0][first:last], horizontal[1][first:last]), cols, dtype)
            result = two_pass(source, v, h, geometries[group[0]].vertical_first)
            out.index_copy_(0, slot_index[first:last], result.to(torch.uint8))
            first = last
