"""Device batches decoded by several processes at once, handed over in device memory.

torchvision runs one nvJPEG decoder per process, behind a lock, and the CPU share of its work (parsing,
Huffman decoding, launches) bounds it. On the H200, decode_jpeg alone on batches of 256 ImageNet-like
JPEGs: one process 13,258 img/s (cpu/wall 1.00), two 18,948, three 22,626, four 23,304, six 26,744.
One process cannot feed a model that computes 31,000 img/s; several can.

``ProcessBatchLoader`` starts ``processes`` spawned processes; process r runs device_loader.py's loader
over batches r, r + P, r + 2P, ... (a ``Subset`` of the set), so each keeps its reader, decode and resize
threads. The parent allocates a ring of ``slots`` uint8 batch buffers per process on the device and hands
it over once, at start (CUDA IPC through torch.multiprocessing). A process copies each finished batch
into a free slot of its own, waits for its stream and sends the slot's number; the parent yields a view of
that slot, in dataset order, and gives the slot back once the consumer's work queued on it has run (an
event that a releaser thread waits for: the consumer itself never waits for the device).

``start()`` spawns the processes and returns: their start-up (torch's import, the device context, the ring,
their own loader started and warmed on their first batch) overlaps the model's load and compile; each
says when it is ready, and ``start_s`` runs to the last of them. Processes spawned ahead (spawned.py's
``Spawned``, first thing in the runner: ahead.py) import while the runner imports, and, given their device,
make its context and warm their decoder and resize kernels on a probe image while the runner still sets
up, before their set-up comes. They serve every pass of both stages;
every pass reads and decodes the files again. On the CPU the ring is shared memory and the
same code runs (the tests run it so). A pass left half-way, or a process that dies, closes the loader.
"""

import queue
import threading
import time
from collections import Counter
from typing import Any, Iterator, List, Optional

import torch
import torch.multiprocessing  # noqa: F401 - torch's reductions: the ring reaches the processes by CUDA IPC

from .decode_serve import PASS, POLL_S, START_PHASES, Setup
from .layouts import Dataset
from .loader import Batch, Loader, batch_labels
from .preprocess import Preprocessing
from .spawned import Spawned


class ProcessBatchLoader(Loader):
    """Iterate over ``dataset`` in order, ``batch_size`` images at a time, decoded on ``device`` by
    ``processes`` processes (device_loader.py's loader each, in ``spawned`` when given); ``cpu_fallbacks`` as
    device_loader.py's, for the last pass."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        pp: Preprocessing,
        device: torch.device,
        processes: int,
        workers: int = 4,
        batched: bool = True,
        kernels: bool = False,
        slots: int = 3,
        spawned: Optional[Spawned] = None,
    ) -> None:
        super().__init__(dataset, batch_size, pp, workers, processes=processes, slots=slots)
        if spawned is not None and (spawned.processes, spawned.slots) != (processes, slots):
            raise ValueError("ProcessBatchLoader: spawned processes and slots differ from the loader's")
        self.device = device
        self.processes = processes
        self.batched = batched
        self.kernels = kernels
        self.slots = slots
        self._spawned = spawned
        self._closed = False
        self._processes: List[Any] = []

    def _start(self) -> None:
        """Spawn the processes (unless spawned ahead, whose start then counts from their spawning) and
        send each its set-up; they start and warm up on their own."""
        spawned = self._spawned = self._spawned or Spawned(self.processes, self.slots)
        spawned.use_device()
        self._began -= max(0.0, time.time() - spawned.began_unix)
        self._channels, self._processes = spawned.channels, spawned.members
        crop = self.pp.crop
        self._ring = torch.empty(
            (self.processes * self.slots, self.batch_size, 3, crop, crop),
            dtype=torch.uint8,
            device=self.device,
        )
        if self.device.type != "cuda":
            self._ring.share_memory_()
        setup = Setup(
            self.dataset,
            self.batch_size,
            self.pp,
            self.device,
            self.workers,
            self.batched,
            self.kernels,
            self._ring,
        )
        for orders, _, _ in self._channels:
            orders.put(setup)

    def _wait(self) -> Optional[float]:
        """Every process's "ready"; when the last one was ready, on this process's clock. ``start_phases``:
        when the processes were spawned and when the slowest ended each of its START_PHASES (Unix time)."""
        try:
            phases = [self._receive(rank, "ready") for rank in range(self.processes)]
        except BaseException:
            self.close()
            raise
        assert self._spawned is not None
        self.start_phases = {"spawned": self._spawned.began_unix}
        for phase in START_PHASES:
            ended = [times[phase] for times in phases if phase in times]
            if ended:
                self.start_phases[phase] = max(ended)
        return self._began + (self.start_phases["ready"] - self._spawned.began_unix)

    def _receive(self, rank: int, kind: str) -> Any:
        """Process ``rank``'s next message, which must be ``kind``; its error raised here."""
        results, process = self._channels[rank][1], self._processes[rank]
        while True:
            try:
                tag, value = results.get(timeout=POLL_S)
                break
            except queue.Empty:
                if not process.is_alive():
                    raise RuntimeError(
                        f"decoding process {rank} of {self.processes} died (exit code {process.exitcode})"
                    ) from None
        if tag == "error":
            raise value
        if tag != kind:
            raise RuntimeError(f"decoding process {rank} sent {tag!r} where {kind!r} was due")
        return value

    def _release(self, releases: queue.Queue) -> None:
        """The releaser thread: each slot back to its process once the consumer's work on it has run."""
        while True:
            item = releases.get()
            if item is None:
                return
            event, rank, slot = item
            if event is not None:
                event.synchronize()
            self._channels[rank][2].put(slot)

    def _consumed(self) -> Any:
        """An event after the work the consumer has queued so far (None on the CPU: it ran already)."""
        if self.device.type != "cuda":
            return None
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event

    def _pass(self) -> Iterator[Batch]:
        if self._closed:
            raise RuntimeError("ProcessBatchLoader: closed (a pass was left half-way or a process failed)")
        for orders, _, _ in self._channels:
            orders.put(PASS)
        releases: queue.Queue = queue.Queue()  # (event, rank, slot), then None
        releaser = threading.Thread(target=self._release, args=(releases,), name="rn50bench-release")
        releaser.daemon = True
        releaser.start()
        finished = False
        try:
            for number in range(len(self)):
                rank = number % self.processes
                slot = self._receive(rank, "batch")
                labels, valid = batch_labels(self.dataset, number, self.batch_size)
                yield Batch(self._ring[slot], labels, valid)
                releases.put((self._consumed(), rank, slot))
            counted: Counter = Counter()
            for rank in range(self.processes):
                counted.update(self._receive(rank, "end"))
            self.cpu_fallbacks = dict(counted)
            finished = True
        finally:
            releases.put(None)
            releaser.join()
            if not finished:
                self.close()

    def close(self) -> None:
        """Stop the processes (idempotent); the loader cannot iterate afterwards."""
        if self._closed:
            return
        self._closed = True
        if self._spawned is not None:
            self._spawned.close()
