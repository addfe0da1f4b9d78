"""Batches decoded on the device: nvJPEG through torchvision's ``decode_jpeg``, resized and cropped by
resample_kernels.py's integer kernels (``kernels``: where they run, decoder_choice.py says), else by
resample.py's matrix products.

Per pass (one iteration over the loader), these threads:

* One reader thread reads each batch's files into a byte arena reused batch after batch (no allocation,
  hence no page faults, per image; on the H200 host a thread pool of readers was slower than one reader)
  and routes every image by its JPEG header (jpeg_info.py): what nvJPEG takes stays encoded, its resize
  geometry taken from the header; anything else (CMYK, grayscale, PNG behind a .JPEG name, ...) goes to
  the CPU path: ``workers`` threads decode, resize and crop it with PIL, counted by reason.
* One decode thread hands a batch's encoded images to ``decode_jpeg`` on the device in one call (nvJPEG,
  on the GPU's hardware JPEG engine where it has one). torchvision decodes on a CUDA stream of its own and
  returns once the images are there; the decode thread allocates them under a side stream of ours, so the
  caching allocator never hands their memory to the compute stream while it is in use. Up to ``prefetch``
  decoded batches wait in a queue: batch k+1 decodes while batch k computes.
* One resize thread resizes and crops each decoded batch on a stream of its own, copies the CPU path's
  images in from pinned memory, and records an event. The consumer (the stage loop's thread) only makes
  its stream wait for that event: it gets a uint8 [bs, 3, crop, crop] batch already on the device, in
  dataset order, the last one padded (zero images, label -1), and never waits for the device itself.
  Decode, resize and the model of three successive batches overlap on the GPU.

Every pass reads and decodes the files again. On the CPU (tests run this same pipeline without a GPU)
``decode_jpeg`` decodes with libjpeg. ``decoder_choice.resolve_decoder`` picks the PIL loader or this one
(--decoder).
"""

import queue
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
import torch
import torchvision

from . import resample_kernels
from .decode import decode_rgb
from .jpeg_info import cpu_reason, read_header
from .layouts import Dataset
from .loader import Batch, Loader, batch_labels, started_pool
from .nvjpeg_probe import read_mode
from .pipeline_threads import done, drain, offer, on_stream, run_on, take
from .preprocess import Preprocessing, resize_crop_pil
from .resample import Geometry, geometry, resize_crop_into

#: the reason counted for an image the device decoder rejected although its header looked fine
DECODER_ERROR = "rejected by the device decoder"


class _Routed(NamedTuple):
    """One image after the reader: still encoded for the device, or on its way through the CPU path."""

    slot: int
    index: int
    encoded: Optional[torch.Tensor]  # uint8 bytes for decode_jpeg (a view of the batch's arena)
    geometry: Optional[Geometry]  # its resize and crop, from the JPEG header
    pixels: "Optional[Future[np.ndarray]]"  # uint8 [3, crop, crop] from PIL
    reason: Optional[str]  # why the CPU path


class _Decoded(NamedTuple):
    slots: List[int]  # where each device image goes
    images: List[torch.Tensor]  # uint8 [3, H, W] on the device
    geometries: List[Geometry]
    cpu: List[_Routed]  # the CPU path's images (pixels done)


class _Arena:
    """One growable byte buffer that a batch's files are read into, reused for later batches."""

    def __init__(self) -> None:
        self.buffer = np.empty(1 << 20, dtype=np.uint8)
        self.used = 0

    def reserve(self, size: int) -> memoryview:
        if self.used + size > self.buffer.size:  # views handed out keep the old buffer alive
            self.buffer = np.empty(max(2 * self.buffer.size, 2 * size), dtype=np.uint8)
            self.used = 0
        view = memoryview(self.buffer)[self.used : self.used + size]
        self.used += size
        return view


class DeviceBatchLoader(Loader):
    """Iterate over ``dataset`` in order, ``batch_size`` images at a time, decoded on ``device``.

    Starting makes the CPU path's threads and warms the pipeline on the set's first batch (read, decoded
    and resized on the device, then dropped): nvJPEG's handles, the resize kernels and pinned buffers exist
    before the first pass. Each pass starts its reader, decode and resize threads (microseconds).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        pp: Preprocessing,
        device: torch.device,
        workers: int = 4,
        prefetch: int = 2,
        batched: bool = True,
        kernels: bool = False,
    ) -> None:
        super().__init__(dataset, batch_size, pp, workers, prefetch=prefetch)
        self.device = device
        self.prefetch = prefetch
        self.batched = batched
        self._resize = resample_kernels.resize_crop_into if kernels else resize_crop_into
        cuda = device.type == "cuda"
        self._stream = torch.cuda.Stream(device) if cuda else None  # the decode thread's
        self._resize_stream = torch.cuda.Stream(device) if cuda else None
        self._pool: Optional[ThreadPoolExecutor] = None

    def _start(self) -> None:
        self._pool = started_pool(self.workers, "rn50bench-cpu")
        if len(self):
            decoded = run_on(self._stream, lambda: self._decode(self._read(0, _Arena(), self._pool)))
            run_on(self._resize_stream, lambda: self._resized(0, decoded))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    # -- the reader ---------------------------------------------------------------------
    def _cpu_path(self, data: bytes, index: int) -> np.ndarray:
        """PIL decode, resize and crop (the PIL loader's path), CHW."""
        return resize_crop_pil(decode_rgb(data, self.dataset.location(index)), self.pp).transpose(2, 0, 1)

    def _read(self, number: int, arena: _Arena, pool: ThreadPoolExecutor) -> List[_Routed]:
        """Batch ``number``'s images read into ``arena`` and routed; the CPU path's handed to ``pool``."""
        arena.used = 0
        start = number * self.batch_size
        routed = []
        for slot in range(min(self.batch_size, len(self.dataset.samples) - start)):
            index = start + slot
            data = self.dataset.read_into(index, arena.reserve)
            header = read_header(data)
            reason = cpu_reason(header)
            if reason is None:
                encoded = torch.frombuffer(data, dtype=torch.uint8)
                geo = geometry(header.height, header.width, self.pp)
                routed.append(_Routed(slot, index, encoded, geo, None, None))
            else:
                pixels = pool.submit(self._cpu_path, data.tobytes(), index)
                routed.append(_Routed(slot, index, None, None, pixels, reason))
        return routed

    def _read_all(self, pool: ThreadPoolExecutor, encoded: queue.Queue, stop: threading.Event) -> None:
        """The reader thread: routed batches in order into ``encoded``; an exception the same way."""
        arenas = [_Arena() for _ in range(self.prefetch + 3)]  # reader, queue, decode thread
        try:
            for number in range(len(self)):
                if not offer(encoded, self._read(number, arenas[number % len(arenas)], pool), stop):
                    return
        except BaseException as exc:
            offer(encoded, exc, stop)

    # -- the decode thread ------------------------------------------------------------
    def _device_decode(self, encoded: List[torch.Tensor]) -> List[Optional[torch.Tensor]]:
        """Decoded images in order; None for an image the decoder rejects."""
        if not encoded:
            return []
        decode = torchvision.io.decode_jpeg
        if self.batched:
            try:
                return list(decode(encoded, mode=read_mode(), device=self.device))
            except RuntimeError:
                pass  # one image the decoder rejects fails the whole call: find it below
        results: List[Optional[torch.Tensor]] = []
        for data in encoded:
            try:
                results.append(decode(data, mode=read_mode(), device=self.device))
            except RuntimeError:
                results.append(None)
        return results

    def _decode(self, routed: List[_Routed]) -> _Decoded:
        to_device = [item for item in routed if item.encoded is not None]
        decoded = _Decoded([], [], [], [item for item in routed if item.encoded is None])
        for item, result in zip(to_device, self._device_decode([item.encoded for item in to_device])):
            if result is not None:
                decoded.slots.append(item.slot)
                decoded.images.append(result)
                decoded.geometries.append(item.geometry)
            else:
                pixels = self._cpu_path(item.encoded.numpy().tobytes(), item.index)
                decoded.cpu.append(item._replace(encoded=None, pixels=done(pixels), reason=DECODER_ERROR))
        for item in decoded.cpu:
            item.pixels.result()  # raises the CPU path's error here, in batch order
        return decoded

    # -- the pipeline's device threads ---------------------------------------------------
    def _stage(
        self,
        stream: Optional[torch.cuda.Stream],
        work: Callable[[int, Any], Any],
        source: queue.Queue,
        sink: queue.Queue,
        stop: threading.Event,
    ) -> None:
        """One pipeline thread: ``work(number, item)`` on ``stream`` for each batch's item from ``source``, in
        order, into ``sink``; an exception (its own or one from upstream) goes to ``sink`` the same way."""
        try:
            with on_stream(stream):
                for number in range(len(self)):
                    item = take(source, stop)
                    if item is None:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    if not offer(sink, work(number, item), stop):
                        return
        except BaseException as exc:  # raised again in the consumer, in batch order
            offer(sink, exc, stop)

    # -- the consumer -----------------------------------------------------------------
    def _assemble(self, number: int, decoded: _Decoded) -> Batch:
        bs, crop = self.batch_size, self.pp.crop
        labels, valid = batch_labels(self.dataset, number, bs)
        if self._stream is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self._stream)
            for image in decoded.images:
                image.record_stream(current)  # freed memory is reused only after this stream's work on it
        images = torch.empty((bs, 3, crop, crop), dtype=torch.uint8, device=self.device)
        if valid < bs:
            images[valid:].zero_()
        self._resize(images, decoded.images, decoded.slots, self.pp, decoded.geometries)
        if decoded.cpu:
            host = torch.from_numpy(np.stack([item.pixels.result() for item in decoded.cpu]))
            if self._stream is not None:
                host = host.pin_memory()
            moved = host.to(self.device, non_blocking=True)
            for k, item in enumerate(decoded.cpu):
                images[item.slot].copy_(moved[k])
        return Batch(images, labels, valid)

    def _resized(self, number: int, decoded: _Decoded) -> Tuple[Batch, Any, List[Optional[str]]]:
        """The resize thread's work: (the batch, an event recorded after it, its CPU-path reasons)."""
        batch = self._assemble(number, decoded)
        event = None
        if self._resize_stream is not None:
            event = torch.cuda.Event()
            event.record(self._resize_stream)
        return batch, event, [routed.reason for routed in decoded.cpu]

    def _pass(self) -> Iterator[Batch]:
        pool = self._pool
        if pool is None:
            raise RuntimeError("DeviceBatchLoader: closed")
        pipes = [queue.Queue(maxsize=self.prefetch) for _ in range(3)]
        encoded, decoded, ready = pipes
        stop = threading.Event()
        threads = [
            threading.Thread(target=self._read_all, args=(pool, encoded, stop), name="rn50bench-read"),
            threading.Thread(
                target=self._stage,
                args=(self._stream, lambda _, routed: self._decode(routed), encoded, decoded, stop),
                name="rn50bench-decode",
            ),
            threading.Thread(
                target=self._stage,
                args=(self._resize_stream, self._resized, decoded, ready, stop),
                name="rn50bench-resize",
            ),
        ]
        for thread in threads:
            thread.daemon = True
            thread.start()
        counted: Counter = Counter()
        try:
            for _ in range(len(self)):
                item = ready.get()
                if isinstance(item, BaseException):
                    raise item
                batch, event, reasons = item
                if event is not None:
                    current = torch.cuda.current_stream(self.device)
                    current.wait_event(event)
                    batch.images.record_stream(current)
                counted.update(reasons)
                yield batch
            self.cpu_fallbacks = dict(counted)
        finally:
            stop.set()
            for pipe in pipes:
                drain(pipe)
            for thread in threads:
                thread.join()
