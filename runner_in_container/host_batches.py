"""Batches decoded on the runner's own thread(s), outside every measured window: the compile and warm-up
example, and the images int8 calibration reads."""

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterator, List, Tuple

import numpy
import torch

from .data import Dataset
from .data.decode import decode_rgb
from .data.preprocess import Preprocessing, normalize, resize_crop_pil

CALIBRATION_IMAGES = 500
#: distinct images in the compile and warm-up example batch
EXAMPLE_IMAGES = 16


def decoded(dataset: Dataset, pp: Preprocessing, index: int) -> numpy.ndarray:
    return resize_crop_pil(decode_rgb(dataset.read(index), dataset.location(index)), pp)


def _batch_indices(start: int, count: int, batch_size: int) -> List[int]:
    """Indices ``start`` .. up to ``count`` filled to ``batch_size`` by repeating them."""
    indices = list(range(start, min(start + batch_size, count)))
    return indices + [indices[i % len(indices)] for i in range(batch_size - len(indices))]


def decoded_batches(
    dataset: Dataset, pp: Preprocessing, batch_size: int, count: int
) -> Iterator[torch.Tensor]:
    """uint8 NCHW batches of the first ``count`` images, decoded in order on this thread.

    A short last batch is filled by repeating its images (for int8 calibration, never for measurement).
    """
    count = min(count, len(dataset.samples))
    for start in range(0, count, batch_size):
        arrays = [decoded(dataset, pp, i) for i in _batch_indices(start, count, batch_size)]
        yield torch.from_numpy(numpy.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def example_batch(dataset: Dataset, pp: Preprocessing, batch_size: int, workers: int) -> torch.Tensor:
    """The compile and warm-up example: a uint8 NCHW batch of the set's first EXAMPLE_IMAGES images,
    decoded by ``workers`` threads, repeated to fill it (compile and warm-up need its shape, not more)."""
    count = min(EXAMPLE_IMAGES, batch_size, len(dataset.samples))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(pool.map(lambda i: decoded(dataset, pp, i), range(count)))
    indices = _batch_indices(0, count, batch_size)
    return torch.from_numpy(numpy.stack([arrays[i] for i in indices])).permute(0, 3, 1, 2).contiguous()


def calibration_source(
    dataset: Dataset, pp: Preprocessing, batch_size: int
) -> Tuple[Callable[[], Iterator[torch.Tensor]], Dict[str, Any]]:
    """For int8: (callable yielding normalised fp32 CPU batches of the set's first images, description)."""

    def batches() -> Iterator[torch.Tensor]:
        for u8 in decoded_batches(dataset, pp, batch_size, CALIBRATION_IMAGES):
            yield normalize(u8, pp, torch.float32, False)

    n = min(CALIBRATION_IMAGES, len(dataset.samples))
    return batches, {"images": n, "source": f"the first {n} images of the evaluation set (no separate set)"}
