"""A decoding process's life (decode_procs.py's loader is the parent's side): spawned (spawned.py), it
imports, warms its device once the runner lets it, takes its set-up, then decodes its share of every pass
into its ring slots in device memory until the loader closes or the parent goes."""

import multiprocessing
import os
import pickle
import queue
import time
from typing import Any, List, NamedTuple, Optional, Tuple

import torch

from .device_loader import DeviceBatchLoader
from .layouts import Dataset, Subset
from .loader import batch_count
from .nvjpeg_probe import warm_device
from .preprocess import Preprocessing

#: seconds between checks, while waiting, that the other side is still there
POLL_S = 0.2
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


def _still_wanted(stop: Any) -> None:
    """_Stopped once ``stop`` is set or the parent has gone."""
    parent = multiprocessing.parent_process()
    if stop.is_set() or (parent is not None and not parent.is_alive()):
        raise _Stopped()


def _wait(source: Any, stop: Any) -> Any:
    """The next item of the multiprocessing queue ``source``; _Stopped once ``stop`` is set or the parent
    has gone."""
    while True:
        _still_wanted(stop)
        try:
            return source.get(timeout=POLL_S)
        except queue.Empty:
            continue


def _wait_set(event: Any, stop: Any) -> None:
    """Return once ``event`` is set; _Stopped once ``stop`` is set or the parent has gone."""
    while not event.wait(POLL_S):
        _still_wanted(stop)


class Setup(NamedTuple):
    """What a decoding process gets through its order queue, once started (a spawned process's arguments
    are read while it starts; sent this way, every process imports torch and opens the ring at once)."""

    dataset: Dataset
    batch_size: int
    pp: Preprocessing
    device: torch.device
    workers: int
    batched: bool
    kernels: bool
    ring: torch.Tensor


def serve(
    rank: int, processes: int, channels: Tuple[Any, Any, Any], stop: Any, go: Any, ahead: Optional[str]
) -> None:
    """A decoding process (spawned.py's): its device ``ahead`` warmed once ``go`` is set, then each pass
    ordered, its batches into its ring slots, then its CPU-path counts. "ready" carries when each of
    START_PHASES ended."""
    phases = {"imported": time.time()}
    os.dup2(2, 1)  # the parent's stdout carries progress events: nothing of this process goes there
    torch.set_num_threads(1)  # its CPU tensors are small; intra-op pools in every process would oversubscribe
    orders, results, free = channels
    try:
        if ahead is not None:
            _wait_set(go, stop)
            device = torch.device(ahead)
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
            shard,
            setup.batch_size,
            setup.pp,
            device,
            workers=setup.workers,
            batched=setup.batched,
            kernels=setup.kernels,
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
