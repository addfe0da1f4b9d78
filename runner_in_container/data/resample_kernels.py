"""PIL's resize and center crop of a batch of decoded images in PIL's own integer arithmetic, in two Triton
kernels (CUDA with Triton; resample.py's matrix products elsewhere).

PIL resamples 8-bit images in fixed point: each output pixel of a pass is ``clip8(((1 << 21) + sum(pixel *
coefficient)) >> 22)`` over its taps, the coefficients being resample.py's (``band_weights``) times 2**22, in
int32. Done the same way here, the result is PIL's bit for bit, with no float rounding to fall on the other
side of a boundary. A pass reads each output pixel's taps straight from the decoded image (no padded float
copy of each image's region, no dense coefficient matrices, no rounding passes): per batch, the images are
joined into one buffer, then each pass is one kernel launch per pass order over every image of that order.

Two kernels, by the direction that is contiguous in memory: ``_along`` computes a line of output pixels along
a row (its taps gathered along the row, the horizontal pass), ``_across`` one output line across many columns
at once (its taps one row apart, the vertical pass). Each image's place in memory comes in a table of int64
fields, so one launch serves images of every size.
"""

import contextlib
import itertools
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch

from . import resample as products
from .preprocess import Preprocessing
from .resample import Axis, Geometry, band_weights, geometry

try:  # CUDA builds of torch 2.x ship Triton; torch 1.13 images do not (resample.py's products then)
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the image
    triton = None

#: PIL's PRECISION_BITS for 8-bit images
PRECISION_BITS = 22
#: fields of a pass's table, one row an image: which image's coefficients (IMG); where its input lines start
#: (IN_BASE, IN_CH: channel stride, IN_LINE0: its first line, IN_ACROSS: line stride, IN_ALONG: pixel stride
#: along the pass); SHIFT: subtracted from each tap's position (the input's first pixel along the pass); LIM:
#: the last readable position; N_LINES: its lines; where its output goes (OUT_BASE, OUT_CH, OUT_ACROSS,
#: OUT_ALONG)
FIELDS = (
    "IMG IN_BASE IN_CH IN_LINE0 IN_ACROSS IN_ALONG SHIFT LIM N_LINES OUT_BASE OUT_CH OUT_ACROSS OUT_ALONG"
).split()
WIDTH = len(FIELDS)
#: lanes of an ``_across`` program (output pixels of one line computed together)
ACROSS_BLOCK = 128
#: (height, width) of the probe images ``usable`` checks the kernels on: landscape, portrait, small, large
PROBE_SHAPES = ((375, 500), (500, 333), (230, 240), (1200, 900))

DESCRIPTION = (
    "PIL's bilinear antialiased resample (torchvision Resize on PIL images) + center crop, reproduced on the "
    "device in PIL's own fixed-point integer arithmetic, bit for bit: two Triton kernels a batch, each "
    "output pixel read from its taps (data/resample_kernels.py)"
)


def available(device: torch.device) -> bool:
    """Whether the kernels can run on ``device`` (a CUDA device, Triton importable)."""
    return triton is not None and device.type == "cuda"


if triton is not None:
    _WIDTH = tl.constexpr(WIDTH)
    _BITS = tl.constexpr(PRECISION_BITS)
    _HALF = tl.constexpr(1 << (PRECISION_BITS - 1))

    @triton.jit
    def _field(table, row, name: tl.constexpr):
        return tl.load(table + row * _WIDTH + name)

    @triton.jit
    def _along(src, dst, table, first, coef, taps, count, BLOCK: tl.constexpr):
        """Program (image k of the table x 3 + channel, line): ``count`` output pixels along the line."""
        k = tl.program_id(0) // 3
        c = tl.program_id(0) % 3
        line = tl.program_id(1)
        img = _field(table, k, 0)
        lanes = tl.arange(0, BLOCK)
        mask = (lanes < count) & (line < _field(table, k, 8))
        source = (
            src
            + _field(table, k, 1)
            + c * _field(table, k, 2)
            + (_field(table, k, 3) + line) * _field(table, k, 4)
        )
        start = tl.load(first + img * count + lanes, mask=mask, other=0) - _field(table, k, 6)
        acc = tl.full([BLOCK], _HALF, tl.int32)
        for t in range(0, taps):
            pos = tl.minimum(start + t, _field(table, k, 7))
            pixel = tl.load(source + pos * _field(table, k, 5), mask=mask, other=0).to(tl.int32)
            weight = tl.load(coef + (img * taps + t) * count + lanes, mask=mask, other=0)
            acc += pixel * weight
        out = tl.minimum(tl.maximum(acc >> _BITS, 0), 255).to(tl.uint8)
        target = dst + _field(table, k, 9) + c * _field(table, k, 10) + line * _field(table, k, 11)
        tl.store(target + lanes * _field(table, k, 12), out, mask=mask)

    @triton.jit
    def _across(src, dst, table, first, coef, taps, count, BLOCK: tl.constexpr):
        """Program (image k of the table x 3 + channel, output pixel along the pass, block of lines): that
        pixel of BLOCK lines, whose taps are one input line apart."""
        k = tl.program_id(0) // 3
        c = tl.program_id(0) % 3
        o = tl.program_id(1)
        lines = tl.program_id(2) * BLOCK + tl.arange(0, BLOCK)
        img = _field(table, k, 0)
        mask = lines < _field(table, k, 8)
        source = (
            src
            + _field(table, k, 1)
            + c * _field(table, k, 2)
            + (_field(table, k, 3) + lines) * _field(table, k, 4)
        )
        start = tl.load(first + img * count + o) - _field(table, k, 6)
        acc = tl.full([BLOCK], _HALF, tl.int32)
        for t in range(0, taps):
            pos = tl.minimum(start + t, _field(table, k, 7))
            weight = tl.load(coef + (img * taps + t) * count + o)
            pixel = tl.load(source + pos * _field(table, k, 5), mask=mask, other=0).to(tl.int32)
            acc += pixel * weight
        out = tl.minimum(tl.maximum(acc >> _BITS, 0), 255).to(tl.uint8)
        target = dst + _field(table, k, 9) + c * _field(table, k, 10) + o * _field(table, k, 12)
        tl.store(target + lines * _field(table, k, 11), out, mask=mask)


#: an image of a pass order: its index in the batch, its first byte in the joined buffer, its output slot's
#: first byte, its geometry
Place = Tuple[int, int, int, Geometry]


class _Taps(NamedTuple):
    """One axis's taps for each image: the first tap's position in the image [n, count] int32, the
    coefficients [n, taps, count] int32 (PIL's fixed point), and the most taps an output pixel has."""

    first: torch.Tensor
    coef: torch.Tensor
    taps: int


def _taps(axes: Sequence[Axis], count: int, device: torch.device) -> _Taps:
    """The taps of ``count`` output pixels along each of ``axes`` (resample.py's coefficients)."""
    taps = max(axis.taps for axis in axes)
    params = _on(torch.tensor([list(axis[:4]) for axis in axes], dtype=torch.float64), device)
    index, weight = band_weights(*params.unbind(1), count, taps)
    first = (index[:, :, 0] + params[:, 3:4].long()).int().contiguous()
    coef = torch.round(weight * float(1 << PRECISION_BITS)).int().transpose(1, 2).contiguous()
    return _Taps(first, coef, taps)


def _on(table: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``table`` on ``device``, sent from pinned memory on CUDA (no wait for the work queued before)."""
    if device.type == "cuda":
        table = table.pin_memory()
    return table.to(device, non_blocking=True)


def resize_crop_into(
    out: torch.Tensor,
    images: Sequence[torch.Tensor],
    slots: Sequence[int],
    pp: Preprocessing,
    geometries: Sequence[Geometry],
) -> None:
    """Resize and crop each uint8 [3, H, W] ``images[i]`` (``geometries[i]`` its ``resample.geometry``) into
    ``out[slots[i]]`` (uint8 [bs, 3, crop, crop], contiguous), PIL's result bit for bit; queued on the current
    stream of ``out``'s device."""
    if not images:
        return
    assert triton is not None and out.is_contiguous()
    device, crop = out.device, pp.crop
    flat = torch.cat([image.reshape(-1) for image in images])
    bases = [0] + list(itertools.accumulate(int(image.numel()) for image in images))[:-1]
    rows = _taps([g.rows for g in geometries], crop, device)
    cols = _taps([g.cols for g in geometries], crop, device)
    on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with on_device:  # Triton launches on the current device: ``out``'s, whatever the caller's is
        for vertical_first in (False, True):
            chosen = [i for i, g in enumerate(geometries) if g.vertical_first == vertical_first]
            if not chosen:
                continue
            places = [(i, bases[i], slots[i] * 3 * crop * crop, geometries[i]) for i in chosen]
            if vertical_first:
                _vertical_first(flat, out, places, crop, rows, cols)
            else:
                _horizontal_first(flat, out, places, crop, rows, cols)


def _horizontal_first(
    flat: torch.Tensor, out: torch.Tensor, places: List[Place], crop: int, rows: _Taps, cols: _Taps
) -> None:
    """Along each kept row of each image (crop outputs a row), then across those rows into ``out``."""
    lines = max(g.rows.span for _, _, _, g in places)
    between = torch.empty((len(places), 3, lines, crop), dtype=torch.uint8, device=out.device)
    first: List[List[int]] = []
    second: List[List[int]] = []
    for k, (i, base, slot, g) in enumerate(places):
        r, size = g.rows, g.rows.size * g.cols.size
        mid = k * 3 * lines * crop
        first.append(
            [i, base, size, r.start, g.cols.size, 1, 0, g.cols.size - 1, r.span, mid, lines * crop, crop, 1]
        )
        second.append(
            [i, mid, lines * crop, 0, 1, crop, r.start, r.span - 1, crop, slot, crop * crop, 1, crop]
        )
    _pass_along(flat, between, first, cols, lines, crop)
    _pass_across(between, out, second, rows, crop, crop)


def _vertical_first(
    flat: torch.Tensor, out: torch.Tensor, places: List[Place], crop: int, rows: _Taps, cols: _Taps
) -> None:
    """Across each kept column of each image (crop outputs a column), then along those rows into ``out``."""
    lines = max(g.cols.span for _, _, _, g in places)
    between = torch.empty((len(places), 3, crop, lines), dtype=torch.uint8, device=out.device)
    first: List[List[int]] = []
    second: List[List[int]] = []
    for k, (i, base, slot, g) in enumerate(places):
        c, size, width = g.cols, g.rows.size * g.cols.size, g.cols.size
        mid = k * 3 * crop * lines
        first.append(
            [i, base, size, c.start, 1, width, 0, g.rows.size - 1, c.span, mid, crop * lines, 1, lines]
        )
        second.append(
            [i, mid, crop * lines, 0, lines, 1, c.start, c.span - 1, crop, slot, crop * crop, crop, 1]
        )
    _pass_across(flat, between, first, rows, lines, crop)
    _pass_along(between, out, second, cols, crop, crop)


def _pass_along(
    src: torch.Tensor, dst: torch.Tensor, table: List[List[int]], taps: _Taps, lines: int, count: int
) -> None:
    """``_along`` over the images of ``table`` (rows of FIELDS), at most ``lines`` lines each."""
    rows = _on(torch.tensor(table), dst.device)
    lanes = 1 << max(0, (count - 1).bit_length())  # the power of two at least ``count``
    _along[(3 * len(table), lines)](src, dst, rows, *taps, count, BLOCK=lanes)


def _pass_across(
    src: torch.Tensor, dst: torch.Tensor, table: List[List[int]], taps: _Taps, lines: int, count: int
) -> None:
    """``_across`` over the images of ``table`` (rows of FIELDS), at most ``lines`` lines each."""
    grid = (3 * len(table), count, triton.cdiv(lines, ACROSS_BLOCK))
    _across[grid](src, dst, _on(torch.tensor(table), dst.device), *taps, count, BLOCK=ACROSS_BLOCK)


def usable(device: torch.device) -> Optional[str]:
    """None when the kernels run on ``device`` and give resample.py's exact (float64) result on probe images
    of both pass orders; else why not, in a few words (the run then resizes with resample.py's products)."""
    if device.type != "cuda":
        return f"the device is {device}: the kernels run on CUDA devices"
    if triton is None:
        return "Triton is not importable"
    pp = Preprocessing()
    generator = torch.Generator().manual_seed(0)
    images = [
        torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator).to(device)
        for height, width in PROBE_SHAPES
    ]
    geometries = [geometry(int(image.shape[1]), int(image.shape[2]), pp) for image in images]
    geometries += [g._replace(vertical_first=not g.vertical_first) for g in geometries]
    images += images
    slots = list(range(len(images)))
    got = torch.zeros((len(images), 3, pp.crop, pp.crop), dtype=torch.uint8, device=device)
    expected = torch.zeros_like(got)
    try:
        resize_crop_into(got, images, slots, pp, geometries)
    except Exception as exc:  # noqa: BLE001 - a compiler or driver that cannot build them: said, not raised
        return f"the kernels failed: {type(exc).__name__}: {str(exc)[:200]}"
    products.resize_crop_into(expected, images, slots, pp, geometries, dtype=torch.float64)
    differ = int((got != expected).sum())
    return f"the kernels differ from the exact products in {differ} pixels of a probe" if differ else None
