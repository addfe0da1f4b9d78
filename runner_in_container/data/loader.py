"""Batches of preprocessed uint8 images, decoded by a thread pool in dataset order.

PIL decoding and resizing release the GIL, so threads scale across cores without worker processes.
Each worker writes its image straight into the batch tensor; ``prefetch`` batches are decoded ahead of
the one being consumed. Nothing is cached: every pass reads and decodes the files again.
"""

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Deque, Iterator, List, NamedTuple, Tuple

import numpy as np
import torch

from .decode import decode_rgb
from .errors import DataError
from .layouts import Dataset
from .preprocess import Preprocessing, resize_crop_pil


class Batch(NamedTuple):
    """One batch; slots from ``valid`` on are padding (zero images, label -1)."""

    images: torch.Tensor  # uint8 [bs, 3, crop, crop], pinned when pin_memory
    labels: torch.Tensor  # int64 [bs]
    valid: int


_InFlight = Tuple[Batch, List["Future[None]"]]


def require_positive(owner: str, **settings: int) -> None:
    """ValueError naming ``owner`` and the setting when one of ``settings`` is below 1."""
    for field, value in settings.items():
        if value < 1:
            raise ValueError(f"{owner}: {field} must be at least 1, got {value}")


def batch_count(images: int, batch_size: int) -> int:
    """Batches of ``batch_size`` that hold ``images`` images (the last one padded)."""
    return (images + batch_size - 1) // batch_size


def batch_labels(dataset: Dataset, number: int, batch_size: int) -> Tuple[torch.Tensor, int]:
    """(int64 [batch_size] labels of batch ``number``, padding slots -1; how many slots are real)."""
    samples = dataset.samples[number * batch_size : (number + 1) * batch_size]
    labels = torch.full((batch_size,), -1, dtype=torch.int64)
    labels[: len(samples)] = torch.tensor([s.label for s in samples], dtype=torch.int64)
    return labels, len(samples)


class BatchLoader:
    """Iterate over ``dataset`` in order, ``batch_size`` images at a time (last batch padded)."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        pp: Preprocessing,
        workers: int = 4,
        pin_memory: bool = False,
        prefetch: int = 2,
    ) -> None:
        require_positive("BatchLoader", batch_size=batch_size, workers=workers, prefetch=prefetch)
        self.dataset = dataset
        self.batch_size = batch_size
        self.pp = pp
        self.workers = workers
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.prefetch = prefetch

    def __len__(self) -> int:
        return batch_count(len(self.dataset.samples), self.batch_size)

    def _load(self, out: np.ndarray, slot: int, index: int) -> None:
        """Read, decode and resize/crop sample ``index`` into ``out[slot]`` (CHW)."""
        name = self.dataset.location(index)
        img = decode_rgb(self.dataset.read(index), name)
        try:
            out[slot] = resize_crop_pil(img, self.pp).transpose(2, 0, 1)
        except Exception as e:
            raise DataError(f"{name}: cannot resize/crop: {e}") from e

    def _start(self, pool: ThreadPoolExecutor, number: int) -> _InFlight:
        bs, crop = self.batch_size, self.pp.crop
        start = number * bs
        labels, valid = batch_labels(self.dataset, number, bs)
        images = torch.empty((bs, 3, crop, crop), dtype=torch.uint8, pin_memory=self.pin_memory)
        images[valid:].zero_()
        out = images.numpy()
        futures = [pool.submit(self._load, out, slot, start + slot) for slot in range(valid)]
        return Batch(images, labels, valid), futures

    def __iter__(self) -> Iterator[Batch]:
        total = len(self)
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rn50bench-data")
        in_flight: Deque[_InFlight] = deque()
        started = 0
        try:
            while started < total and len(in_flight) < self.prefetch:
                in_flight.append(self._start(pool, started))
                started += 1
            while in_flight:
                batch, futures = in_flight[0]
                for future in futures:
                    future.result()  # re-raises a worker's DataError here, in the consumer
                in_flight.popleft()
                if started < total:
                    in_flight.append(self._start(pool, started))
                    started += 1
                yield batch
        finally:
            for _, futures in in_flight:
                for future in futures:
                    future.cancel()
            pool.shutdown(wait=True)
