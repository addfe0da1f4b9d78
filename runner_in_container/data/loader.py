"""The loader interface, and batches of preprocessed uint8 images decoded by a thread pool in dataset order.

Every loader (this PIL one, device_loader.py's, decode_procs.py's decoding processes) is a ``Loader``:
``start()`` gets its pipeline running (threads, processes, device contexts, decoder handles) and warmed,
``wait_started()`` blocks until it is, each iteration is one pass over the set, ``close()`` stops it.
Starting is timed (``start_s``) and lies outside every throughput window (metrics.md version 2).

PIL decoding and resizing release the GIL, so threads scale across cores without worker processes.
Each worker writes its image straight into the batch tensor; ``prefetch`` batches are decoded ahead of
the one being consumed. Nothing is cached: every pass reads and decodes the files again.
"""

import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Deque, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import torch

from .decode import decode_rgb
from .errors import DataError, require_positive
from .layouts import Dataset
from .preprocess import Preprocessing, resize_crop_pil


class Batch(NamedTuple):
    """One batch; slots from ``valid`` on are padding (zero images, label -1)."""

    images: torch.Tensor  # uint8 [bs, 3, crop, crop], pinned when pin_memory
    labels: torch.Tensor  # int64 [bs]
    valid: int


_InFlight = Tuple[Batch, List["Future[None]"]]


def batch_count(images: int, batch_size: int) -> int:
    """Batches of ``batch_size`` that hold ``images`` images (the last one padded)."""
    return (images + batch_size - 1) // batch_size


def batch_labels(dataset: Dataset, number: int, batch_size: int) -> Tuple[torch.Tensor, int]:
    """(int64 [batch_size] labels of batch ``number``, padding slots -1; how many slots are real)."""
    samples = dataset.samples[number * batch_size : (number + 1) * batch_size]
    labels = torch.full((batch_size,), -1, dtype=torch.int64)
    labels[: len(samples)] = torch.tensor([s.label for s in samples], dtype=torch.int64)
    return labels, len(samples)


def started_pool(workers: int, prefix: str) -> ThreadPoolExecutor:
    """A thread pool whose ``workers`` threads are all running (a pool starts its threads lazily)."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=prefix)
    barrier = threading.Barrier(workers)
    wait_futures([pool.submit(barrier.wait) for _ in range(workers)])
    return pool


class Loader:
    """What the stage loop sees of a loader: start, passes (one per iteration), close.

    ``start()`` begins starting the pipeline (a subclass's ``_start``; where it can, it returns before the
    pipeline is warm, so that start-up overlaps the model's load and compile), ``wait_started()`` waits
    for it (``_wait``), ``start_s`` is how long starting took. Iterating starts it when nobody did.
    ``cpu_fallbacks``: after a complete pass, {reason: images} of the images a device decoder left to the
    CPU; None where there is no device decoder. ``start_phases``: once started, {phase: Unix time} of a
    pipeline whose start has phases worth telling apart (decoding processes), else None.
    """

    def __init__(self, dataset: Dataset, batch_size: int, pp: Preprocessing, workers: int, **positive: int):
        require_positive(type(self).__name__, batch_size=batch_size, workers=workers, **positive)
        self.dataset = dataset
        self.batch_size = batch_size
        self.pp = pp
        self.workers = workers
        self.cpu_fallbacks: Optional[Dict[str, int]] = None
        self.start_s: Optional[float] = None
        self.start_phases: Optional[Dict[str, float]] = None
        self._began: Optional[float] = None
        self._start_returned = 0.0

    def __len__(self) -> int:
        return batch_count(len(self.dataset.samples), self.batch_size)

    def start(self) -> None:
        """Begin starting the pipeline (idempotent)."""
        if self._began is None:
            self._began = time.perf_counter()
            self._start()
            self._start_returned = time.perf_counter()

    def wait_started(self) -> float:
        """Wait until the pipeline runs and is warm; ``start_s``."""
        self.start()
        if self.start_s is None:
            finished = self._wait()
            self.start_s = (finished if finished is not None else time.perf_counter()) - self._began
        return self.start_s

    def __iter__(self) -> Iterator[Batch]:
        self.wait_started()
        return self._pass()

    def close(self) -> None:
        """Stop the pipeline (idempotent)."""

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _start(self) -> None:
        """Begin starting the pipeline."""

    def _wait(self) -> Optional[float]:
        """Block until started; when it finished (``time.perf_counter()``), None for now. Here: when
        ``_start`` returned (it started everything)."""
        return self._start_returned

    def _pass(self) -> Iterator[Batch]:
        raise NotImplementedError


class BatchLoader(Loader):
    """Iterate over ``dataset`` in order, ``batch_size`` images at a time (last batch padded).

    Starting starts the pool's ``workers`` threads; every pass uses them.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        pp: Preprocessing,
        workers: int = 4,
        pin_memory: bool = False,
        prefetch: int = 2,
    ) -> None:
        super().__init__(dataset, batch_size, pp, workers, prefetch=prefetch)
        self.pin_memory = bool(pin_memory) and torch.cuda.is_available()
        self.prefetch = prefetch
        self._pool: Optional[ThreadPoolExecutor] = None

    def _start(self) -> None:
        self._pool = started_pool(self.workers, "rn50bench-data")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _load(self, out: np.ndarray, slot: int, index: int) -> None:
        """Read, decode and resize/crop sample ``index`` into ``out[slot]`` (CHW)."""
        name = self.dataset.location(index)
        img = decode_rgb(self.dataset.read(index), name)
        try:
            out[slot] = resize_crop_pil(img, self.pp).transpose(2, 0, 1)
        except Exception as e:
            raise DataError(f"{name}: cannot resize/crop: {e}") from e

    def _submit(self, pool: ThreadPoolExecutor, number: int) -> _InFlight:
        bs, crop = self.batch_size, self.pp.crop
        start = number * bs
        labels, valid = batch_labels(self.dataset, number, bs)
        images = torch.empty((bs, 3, crop, crop), dtype=torch.uint8, pin_memory=self.pin_memory)
        images[valid:].zero_()
        out = images.numpy()
        futures = [pool.submit(self._load, out, slot, start + slot) for slot in range(valid)]
        return Batch(images, labels, valid), futures

    def _pass(self) -> Iterator[Batch]:
        total = len(self)
        pool = self._pool
        if pool is None:
            raise RuntimeError("BatchLoader: closed")
        in_flight: Deque[_InFlight] = deque()
        started = 0
        try:
            while started < total and len(in_flight) < self.prefetch:
                in_flight.append(self._submit(pool, started))
                started += 1
            while in_flight:
                batch, futures = in_flight[0]
                for future in futures:
                    future.result()  # re-raises a worker's DataError here, in the consumer
                in_flight.popleft()
                if started < total:
                    in_flight.append(self._submit(pool, started))
                    started += 1
                yield batch
        finally:  # a pass left half-way: no worker writes into a batch after this
            left = [future for _, futures in in_flight for future in futures]
            for future in left:
                future.cancel()
            wait_futures(left)
