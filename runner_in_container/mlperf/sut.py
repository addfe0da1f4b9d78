"""LoadGen's query sample library over the case's data set, and a system under test over any toolkit's
compiled forward call (``Toolkit.compile``'s callable at its batch size).

The library decodes and preprocesses the samples LoadGen asks it to load in its load callback (outside
LoadGen's timing, as MLPerf does) and holds them on the device as model inputs. The system under test takes
LoadGen's queries through the fast interface (``ConstructFastSUT``: ids and indices, no sample objects) on
LoadGen's issue thread and only queues them there; a batching thread gathers up to a batch (waiting at most
``wait_s`` after a batch's first sample for more), pads it to the compiled batch size, runs the model and the
top-1 on the device and hands the top-1 copy to a completing thread, which waits for it and reports the
samples to LoadGen (``QuerySamplesComplete``): the next batch starts while one completes.
"""

import collections
import contextlib
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple

import numpy
import torch

from ..data import Dataset
from ..data.preprocess import Preprocessing, normalize
from ..host_batches import decoded
from .logs import RESPONSE

Forward = Callable[[torch.Tensor], torch.Tensor]


class SampleLibrary:
    """The samples LoadGen has loaded, decoded, normalised and held on the device in one tensor."""

    def __init__(
        self,
        dataset: Dataset,
        pp: Preprocessing,
        device: torch.device,
        dtype: torch.dtype,
        channels_last: bool,
        workers: int,
        chunk: int,
    ) -> None:
        self.dataset, self.pp, self.device = dataset, pp, device
        self.dtype, self.channels_last, self.workers, self.chunk = dtype, channels_last, workers, chunk
        self.table: Optional[torch.Tensor] = None
        self.rows: Dict[int, int] = {}  # sample index -> row of ``table``

    def load(self, indices: Sequence[int]) -> None:
        """LoadGen's load callback: decode and hold ``indices`` (replacing what was held)."""
        self.unload(indices)
        unique = sorted(set(indices))
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            arrays = list(pool.map(lambda i: decoded(self.dataset, self.pp, i), unique))
        parts = []
        for start in range(0, len(arrays), self.chunk):
            u8 = torch.from_numpy(numpy.stack(arrays[start : start + self.chunk])).permute(0, 3, 1, 2)
            parts.append(normalize(u8.to(self.device), self.pp, self.dtype, False))
        table = torch.cat(parts)
        self.table = table.contiguous(memory_format=torch.channels_last) if self.channels_last else table
        self.rows = {index: row for row, index in enumerate(unique)}

    def unload(self, indices: Sequence[int]) -> None:
        """LoadGen's unload callback: drop what is held."""
        self.table, self.rows = None, {}

    def batch(self, indices: Sequence[int], size: int) -> torch.Tensor:
        """The model input of samples ``indices``, padded to ``size`` by repeating the first."""
        assert self.table is not None, "LoadGen issued samples before loading them"
        rows = [self.rows[index] for index in indices]
        rows += [rows[0]] * (size - len(rows))
        x = self.table.index_select(0, torch.tensor(rows, device=self.device))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class BatchingSut:
    """The system under test: LoadGen's samples batched (``wait_s`` at most after a batch's first sample),
    run through ``fn`` at ``batch_size`` on a batching thread, completed on another."""

    def __init__(
        self,
        lg: Any,
        fn: Forward,
        library: SampleLibrary,
        batch_size: int,
        wait_s: float,
        device: torch.device,
    ) -> None:
        self.lg, self.fn, self.library = lg, fn, library
        self.batch_size, self.wait_s, self.device = batch_size, wait_s, device
        self.pending: Deque[Tuple[int, int, float]] = collections.deque()  # (id, index, arrival)
        self.ready = threading.Condition()
        self.done = queue.Queue()  # type: queue.Queue[Optional[Tuple[List[int], torch.Tensor, Any]]]
        self.error: Optional[BaseException] = None
        self.stopping = False
        self.handle = lg.ConstructFastSUT(self.issue, self.flush)
        self.threads = [
            threading.Thread(target=self._batching, name="sut-batching", daemon=True),
            threading.Thread(target=self._completing, name="sut-completing", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    # -- LoadGen's callbacks, on its issue thread: queue and return ---------------------------------------
    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        now = time.perf_counter()
        with self.ready:
            self.pending.extend((i, index, now) for i, index in zip(ids, indices))
            self.ready.notify()

    def flush(self) -> None:
        """Nothing waits to be flushed: a batch goes when full or at its deadline."""

    # -- the batching thread ------------------------------------------------------------------------------
    def _take(self) -> Optional[List[Tuple[int, int, float]]]:
        """The next batch's samples, once full or once its first has waited ``wait_s``; None once stopped."""
        with self.ready:
            while not self.pending and not self.stopping:
                self.ready.wait()
            if not self.pending:
                return None
            deadline = self.pending[0][2] + self.wait_s
            while len(self.pending) < self.batch_size and not self.stopping:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self.ready.wait(left)
            count = min(self.batch_size, len(self.pending))
            return [self.pending.popleft() for _ in range(count)]

    def _batching(self) -> None:
        on_device = torch.cuda.device(self.device) if self.device.type == "cuda" else contextlib.nullcontext()
        with on_device, torch.no_grad():  # grad mode is per thread
            while True:
                taken = self._take()
                if taken is None:
                    break
                ids = [item[0] for item in taken]
                try:
                    if self.error is not None:
                        raise self.error
                    x = self.library.batch([item[1] for item in taken], self.batch_size)
                    top1 = self.fn(x)[: len(ids)].argmax(dim=1).to(torch.int32)
                    host = top1.to("cpu", non_blocking=self.device.type == "cuda")
                    event = torch.cuda.Event() if self.device.type == "cuda" else None
                    if event is not None:
                        event.record()
                    self.done.put((ids, host, event))
                except BaseException as exc:  # LoadGen waits for every sample: complete them, raise after
                    self.error = self.error or exc
                    self.done.put((ids, torch.zeros(len(ids), dtype=torch.int32), None))
        self.done.put(None)

    # -- the completing thread ----------------------------------------------------------------------------
    def _completing(self) -> None:
        while True:
            item = self.done.get()
            if item is None:
                return
            ids, host, event = item
            if event is not None:
                event.synchronize()
            classes = numpy.ascontiguousarray(host.numpy(), dtype=numpy.int32)
            address = classes.ctypes.data
            self.lg.QuerySamplesComplete(
                [
                    self.lg.QuerySampleResponse(i, address + k * RESPONSE.size, RESPONSE.size)
                    for k, i in enumerate(ids)
                ]
            )

    def close(self) -> None:
        """Stop both threads (after LoadGen's test returned: nothing is pending) and LoadGen's SUT; the
        first error a batch raised, if any, is raised here."""
        with self.ready:
            self.stopping = True
            self.ready.notify()
        for thread in self.threads:
            thread.join()
        self.lg.DestroyFastSUT(self.handle)
        if self.error is not None:
            raise self.error
