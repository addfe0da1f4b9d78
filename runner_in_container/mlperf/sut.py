"""LoadGen's query sample library over the case's data set, and the systems under test over any toolkit's
compiled forward call (``Toolkit.compile``'s callable at its batch size).

The library decodes and preprocesses the samples LoadGen asks it to load in its load callback (outside
LoadGen's timing, as MLPerf does) and holds them on the device as model inputs. Both systems under test take
LoadGen's queries through the fast interface (``ConstructFastSUT``: ids and indices, no sample objects).

* ``BatchingSut`` (Offline, Server) only queues a query's samples on LoadGen's issue thread; a batching thread
  gathers up to a batch (waiting at most ``wait_s`` after a batch's first sample for more), pads it to the
  compiled batch size, queues the model and the top-1 on the device and hands the top-1 copy to a
  completing thread, which waits for it and reports the samples to LoadGen (``QuerySamplesComplete``):
  the next batch is queued on the device while one computes, and no more (``IN_FLIGHT``).
* ``InlineSut`` (SingleStream, MultiStream: one query at a time) runs a query on the issue thread and
  completes it there: no thread hand-off adds to its latency.
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

#: Batches on the device at once: one computing, the next queued behind it. A deeper queue only holds samples:
#: a batch taken while the device is busy waits there with the few samples it has, where samples waiting on
#: the host join the next batch (with no bound, the H100's Server queries took 161 ms at p50 at every target
#: from 1,800 to 29,000 QPS: the time a full device queue of small padded batches takes to drain).
IN_FLIGHT = 2


class SampleLibrary:
    """The samples LoadGen has loaded, decoded, normalised and held on the device in one tensor.

    A channels_last model's samples are held as NHWC rows: a batch gathered from them is channels_last as it
    is (a view, no reordering copy); another model's as NCHW rows (the decoded pixels are NHWC: reordered
    once, here, not by each batch's copy into the model's input)."""

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
            x = normalize(u8.to(self.device), self.pp, self.dtype, False)
            parts.append(x.permute(0, 2, 3, 1).contiguous() if self.channels_last else x.contiguous())
        self.table = torch.cat(parts)
        self.rows = {index: row for row, index in enumerate(unique)}

    def unload(self, indices: Sequence[int]) -> None:
        """LoadGen's unload callback: drop what is held."""
        self.table, self.rows = None, {}

    def batch(self, indices: Sequence[int], size: int) -> torch.Tensor:
        """The model input of samples ``indices``, padded to ``size`` by repeating the first.

        Rows that follow one another and fill the batch (always so for one sample: SingleStream's query) are
        a view of the table: no copy and no kernel before the model's. Other rows are gathered on the device,
        their numbers sent from pinned memory without waiting for it (a copy from pageable memory would wait
        for the work queued before it: no batch could be queued while another computes)."""
        assert self.table is not None, "LoadGen issued samples before loading them"
        rows = [self.rows[index] for index in indices]
        rows += [rows[0]] * (size - len(rows))
        if rows == list(range(rows[0], rows[0] + size)):
            x = self.table.narrow(0, rows[0], size)
        else:
            numbers = torch.tensor(rows, dtype=torch.int64)
            if self.device.type == "cuda":
                numbers = numbers.pin_memory()
            x = self.table.index_select(0, numbers.to(self.device, non_blocking=True))
        return x.permute(0, 3, 1, 2) if self.channels_last else x


class Sut:
    """What both systems under test share: LoadGen's fast SUT handle, the model's top-1 of a batch, the
    completion of samples with their top-1 (the accuracy log's response), and the first error."""

    def __init__(self, lg: Any, fn: Forward, library: SampleLibrary, batch_size: int, device: torch.device):
        self.lg, self.fn, self.library = lg, fn, library
        self.batch_size, self.device = batch_size, device
        self.error: Optional[BaseException] = None
        self.handle = lg.ConstructFastSUT(self.issue, self.flush)

    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Nothing waits to be flushed: a batch goes when full or at its deadline."""

    def top1(self, indices: Sequence[int]) -> torch.Tensor:
        """The model's top-1 classes of samples ``indices`` (at most a batch), on the device (int64: made
        int32 on the host by ``complete``, one kernel fewer in each query's path)."""
        if self.error is not None:
            raise self.error
        x = self.library.batch(indices, self.batch_size)
        return self.fn(x)[: len(indices)].argmax(dim=1)

    def complete(self, ids: Sequence[int], classes: torch.Tensor) -> None:
        """Report samples ``ids`` done, each with its class (on the host; sent as int32) as its response."""
        array = numpy.ascontiguousarray(classes.numpy(), dtype=numpy.int32)
        address = array.ctypes.data
        size = RESPONSE.size
        self.lg.QuerySamplesComplete(
            [self.lg.QuerySampleResponse(i, address + k * size, size) for k, i in enumerate(ids)]
        )

    def failed(self, ids: Sequence[int], exc: BaseException) -> None:
        """LoadGen waits for every sample: complete them, keep the first error to raise at close."""
        self.error = self.error or exc
        self.complete(ids, torch.zeros(len(ids), dtype=torch.int32))

    def close(self) -> None:
        """Destroy LoadGen's SUT (after its test returned); the first error a batch raised is raised here."""
        self.lg.DestroyFastSUT(self.handle)
        if self.error is not None:
            raise self.error


class InlineSut(Sut):
    """The stream scenarios' system under test (SingleStream, MultiStream: LoadGen issues a query once the
    one before is complete): each query runs on LoadGen's issue thread, in batches of ``batch_size``, and is
    completed there, with no hand-off to another thread on the way."""

    def __init__(self, lg: Any, fn: Forward, library: SampleLibrary, batch_size: int, device: torch.device):
        super().__init__(lg, fn, library, batch_size, device)
        self.on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()

    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        with self.on_device, torch.no_grad():
            for start in range(0, len(ids), self.batch_size):
                part = ids[start : start + self.batch_size]
                try:
                    classes = self.top1(indices[start : start + self.batch_size]).cpu()
                except BaseException as exc:  # noqa: B036 - raised at close, after LoadGen has every sample
                    self.failed(part, exc)
                    continue
                self.complete(part, classes)


class BatchingSut(Sut):
    """The Offline and Server system under test: LoadGen's samples batched (``wait_s`` at most after a
    batch's first sample), run through ``fn`` at ``batch_size`` on a batching thread, completed on another."""

    def __init__(
        self,
        lg: Any,
        fn: Forward,
        library: SampleLibrary,
        batch_size: int,
        wait_s: float,
        device: torch.device,
    ) -> None:
        super().__init__(lg, fn, library, batch_size, device)
        self.wait_s = wait_s
        self.pending: Deque[Tuple[int, int, float]] = collections.deque()  # (id, index, arrival)
        self.ready = threading.Condition()
        self.done = queue.Queue()  # type: queue.Queue[Optional[Tuple[List[int], torch.Tensor, Any]]]
        self.stopping = False
        self.slots = threading.Semaphore(IN_FLIGHT)  # taken by a batch when queued, given back once completed
        self.threads = [
            threading.Thread(target=self._batching, name="sut-batching", daemon=True),
            threading.Thread(target=self._completing, name="sut-completing", daemon=True),
        ]
        for thread in self.threads:
            thread.start()

    # -- LoadGen's callback, on its issue thread: queue and return ----------------------------------------
    def issue(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        now = time.perf_counter()
        with self.ready:
            self.pending.extend((i, index, now) for i, index in zip(ids, indices))
            self.ready.notify()

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
                self.slots.acquire()
                taken = self._take()
                if taken is None:
                    break
                ids = [item[0] for item in taken]
                try:
                    host = self.top1([item[1] for item in taken]).to("cpu", non_blocking=True)
                    event = torch.cuda.Event() if self.device.type == "cuda" else None
                    if event is not None:
                        event.record()
                    self.done.put((ids, host, event))
                except BaseException as exc:  # noqa: B036 - completed as failed, raised at close
                    self.done.put((ids, exc, None))
        self.done.put(None)

    # -- the completing thread ----------------------------------------------------------------------------
    def _completing(self) -> None:
        while True:
            item = self.done.get()
            if item is None:
                return
            ids, host, event = item
            if isinstance(host, BaseException):
                self.failed(ids, host)
            else:
                if event is not None:
                    event.synchronize()
                self.complete(ids, host)
            self.slots.release()

    def close(self) -> None:
        """Stop both threads (after LoadGen's test returned: nothing is pending), then as ``Sut.close``."""
        with self.ready:
            self.stopping = True
            self.ready.notify()
        for thread in self.threads:
            thread.join()
        super().close()
