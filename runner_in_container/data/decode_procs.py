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
says when it is ready, and ``start_s`` runs to the last of them. Processes spawned ahead (``Spawned``, with
their device) make their device context and warm their decoder and resize kernels on a probe image while
the runner still sets up, before their set-up comes. They serve every pass of both stages;
every pass reads and decodes the files again. On the CPU the ring is shared memory and the
same code runs (the tests run it so). A pass left half-way, or a process that dies, closes the loader.
"""

import multiprocessing
import os
import pickle
import queue
import threading
import time
from collections import Counter
from typing import Any, Iterator, List, NamedTuple, Optional, Tuple

import torch
import torch.multiprocessing as torch_mp

from .device_loader import DeviceBatchLoader
from .layouts import Dataset, Subset
from .loader import Batch, Loader, batch_count, batch_labels, require_positive
from .nvjpeg_probe import warm_device
from .preprocess import Preprocessing

#: seconds between checks, while waiting, that the other side is still there
POLL_S = 0.2
#: seconds a process gets to leave on its own when the loader closes, before it is terminated
LEAVE_S = 5.0
PASS = "pass"
#: a decoding process's start, in order: its function entered (interpreter, imports, unpickling), its device
#: context and decoder warmed (where its device was known ahead), its set-up received, its loader warm
START_PHASES = ("imported", "device", "set_up", "ready")


class _Stopped(Exception):
    """The loader is closing, or the parent has gone: the process leaves."""


def shard_indices(images: int, batch_size: int, rank: int, processes: int) -> List[int]:
    """The sample indices of batches ``rank``, ``rank + processes``, ... of a set of ``images``."""
    batches = range(rank, batch_count(images, batch_size), processes)
    return [i for b in batches for i in range(b * batch_size, min((b + 1) * batch_size, images))]


def _portable(exc: BaseException) -> BaseException:
    """``exc``, or a RuntimeError saying the same when it cannot be pickled to the parent."""
    try:
        pickle.dumps(exc)
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _wait(source: Any, stop: Any) -> Any:
    """The next item of the multiprocessing queue ``source``; _Stopped once ``stop`` is set or the parent
    has gone."""
    parent = multiprocessing.parent_process()
    while not stop.is_set() and (parent is None or parent.is_alive()):
        try:
            return source.get(timeout=POLL_S)
        except queue.Empty:
            continue
    raise _Stopped()


class _Setup(NamedTuple):
    """What a decoding process gets through its order queue, once started (a spawned process's arguments
    are read while it starts; sent this way, every process imports torch and opens the ring at once)."""

    dataset: Dataset
    batch_size: int
    pp: Preprocessing
    device: torch.device
    workers: int
    batched: bool
    ring: torch.Tensor


def _serve(
    rank: int, processes: int, channels: Tuple[Any, Any, Any], stop: Any, device: Optional[torch.device]
) -> None:
    """A decoding process: its device warmed (when ``device`` is known ahead), then each pass ordered, its
    batches into its ring slots, then its CPU-path counts. "ready" carries when each START_PHASES ended."""
    phases = {"imported": time.time()}
    os.dup2(2, 1)  # the parent's stdout carries progress events: nothing of this process goes there
    torch.set_num_threads(1)  # its CPU tensors are small; intra-op pools in every process would oversubscribe
    orders, results, free = channels
    try:
        if device is not None:
            if device.type == "cuda" and device.index is not None:
                torch.cuda.set_device(device)
            warm_device(device)
            phases["device"] = time.time()
        setup = _wait(orders, stop)
        phases["set_up"] = time.time()
        device, ring = setup.device, setup.ring
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
        images = len(setup.dataset.samples)
        shard = Subset(setup.dataset, shard_indices(images, setup.batch_size, rank, processes))
        loader = DeviceBatchLoader(
            shard, setup.batch_size, setup.pp, device, workers=setup.workers, batched=setup.batched
        )
        loader.wait_started()
        phases["ready"] = time.time()
        results.put(("ready", phases))
        while _wait(orders, stop) == PASS:
            for batch in loader:
                slot = _wait(free, stop)
                ring[slot].copy_(batch.images)
                if device.type == "cuda":
                    torch.cuda.current_stream(device).synchronize()
                results.put(("batch", slot))
            results.put(("end", loader.cpu_fallbacks or {}))
    except _Stopped:
        return
    except BaseException as exc:  # noqa: B036 - the parent raises it, in batch order
        results.put(("error", _portable(exc)))


class Spawned:
    """Decoding processes spawned ahead of their loader, each waiting for its set-up: they import torch
    and, given ``device``, warm it while the run sets up (``ProcessBatchLoader`` spawns its own when it
    gets none)."""

    def __init__(self, processes: int, slots: int = 3, device: Optional[torch.device] = None) -> None:
        require_positive("Spawned", processes=processes, slots=slots)
        self.processes, self.slots = processes, slots
        self.began_unix = time.time()
        context = torch_mp.get_context("spawn")
        self.stop = context.Event()
        self.channels = [(context.Queue(), context.Queue(), context.Queue()) for _ in range(processes)]
        for rank, (_, _, free) in enumerate(self.channels):
            for slot in range(rank * slots, (rank + 1) * slots):
                free.put(slot)
        self.members = [
            context.Process(
                target=_serve,
                args=(rank, processes, self.channels[rank], self.stop, device),
                name=f"rn50bench-decode-{rank}",
                daemon=True,
            )
            for rank in range(processes)
        ]
        for process in self.members:
            process.start()

    def close(self) -> None:
        """Stop the processes: each leaves on its own within LEAVE_S, or is terminated."""
        self.stop.set()
        for process in self.members:
            process.join(LEAVE_S)
        for process in self.members:
            if process.is_alive():
                process.terminate()
                process.join()


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
        slots: int = 3,
        spawned: Optional[Spawned] = None,
    ) -> None:
        super().__init__(dataset, batch_size, pp, workers, processes=processes, slots=slots)
        if spawned is not None and (spawned.processes, spawned.slots) != (processes, slots):
            raise ValueError("ProcessBatchLoader: spawned processes and slots differ from the loader's")
        self.device = device
        self.processes = processes
        self.batched = batched
        self.slots = slots
        self._spawned = spawned
        self._closed = False
        self._processes: List[Any] = []

    def _start(self) -> None:
        """Spawn the processes (unless spawned ahead, whose start then counts from their spawning) and
        send each its set-up; they start and warm up on their own."""
        spawned = self._spawned = self._spawned or Spawned(self.processes, self.slots)
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
        setup = _Setup(
            self.dataset, self.batch_size, self.pp, self.device, self.workers, self.batched, self._ring
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
