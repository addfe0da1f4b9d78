"""Batches decoded on the device: nvJPEG through torchvision's ``decode_jpeg``, resized by resample.py.

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
``decode_jpeg`` decodes with libjpeg. ``resolve_decoder`` picks the PIL loader or this one (--decoder).
"""

import contextlib
import inspect
import io
import os
import queue
import threading
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterator, List, Mapping, NamedTuple, Optional, Tuple

import numpy as np
import PIL
import torch
import torchvision
from PIL import Image

from ..contract import (
    CPUS_PER_PROCESS,
    CPUS_PER_PROCESS_MPS,
    DECODERS,
    MAX_DEFAULT_PROCESSES,
    MPS_DEFAULT_PIPE_DIRECTORY,
)
from .decode import decode_rgb
from .jpeg_info import cpu_reason, read_header
from .layouts import Dataset
from .loader import Batch, Loader, batch_labels, started_pool
from .preprocess import Preprocessing, resize_crop_pil
from .resample import DESCRIPTION, Geometry, geometry, resize_crop_into

PIL_RESIZE = "torchvision.transforms.functional.resize bilinear antialias"
#: largest mean |difference| (levels) between the device decoder and PIL on the smooth probe image
PROBE_TOLERANCE = 8.0
#: the reason counted for an image the device decoder rejected although its header looked fine
DECODER_ERROR = "rejected by the device decoder"


class DecoderUnavailable(RuntimeError):
    """The device decoder cannot run here (the message says why)."""


class Decoder(NamedTuple):
    """The decoder a run uses, as the result records it."""

    name: str  # "pil" or "nvjpeg"
    description: str  # data.decoder
    resize: str  # data.resize
    batched: bool  # decode_jpeg takes a list of images (torchvision >= 0.19)
    fallback_reason: Optional[str]  # why "auto" chose PIL
    processes: int  # decoding processes (decode_procs.py); 1: in the runner's own
    warning: Optional[str] = None  # for the result's warnings: an MPS daemon asked for and not there


def pil_decoder(fallback_reason: Optional[str] = None) -> Decoder:
    return Decoder("pil", "PIL " + PIL.__version__, PIL_RESIZE, False, fallback_reason, 1)


def mps_control_pipe(environ: Mapping[str, str]) -> Optional[str]:
    """The control pipe of the MPS daemon that this process's CUDA driver joins, None without one.

    The driver looks in ``CUDA_MPS_PIPE_DIRECTORY`` (default /tmp/nvidia-mps) when CUDA starts.
    """
    directory = environ.get("CUDA_MPS_PIPE_DIRECTORY") or MPS_DEFAULT_PIPE_DIRECTORY
    pipe = os.path.join(directory, "control")
    return pipe if os.path.exists(pipe) else None


def default_processes(cpus: int, mps: bool) -> int:
    """Decoding processes for ``cpus`` usable CPUs. Each runs a reader, a decode and a resize thread.

    Without MPS one per 4 CPUs, at most 4: more processes take the model more GPU time slices (H200,
    16 CPUs, runner whole: 2 processes 10,286 img/s, 4 11,262). With MPS their kernels run beside the
    model's and each process's CPU share bounds its decoding, so one per 2 CPUs, however many (H200,
    16 CPUs, MPS: 4 processes 11,735 img/s, 6 15,733; README "Measured" for more).
    """
    if mps:
        return max(1, cpus // CPUS_PER_PROCESS_MPS)
    return max(1, min(MAX_DEFAULT_PROCESSES, cpus // CPUS_PER_PROCESS))


def decoding_processes(requested: int, cpus: int) -> int:
    """The nvJPEG decoding processes for ``--decode-processes`` ``requested`` (0: ``default_processes``,
    more where an MPS daemon is there to join)."""
    return requested or default_processes(cpus, mps_control_pipe(os.environ) is not None)


def mps_missing(environ: Mapping[str, str], processes: int) -> Optional[str]:
    """A warning when ``CUDA_MPS_PIPE_DIRECTORY`` asks for an MPS daemon that is not there to join."""
    directory = environ.get("CUDA_MPS_PIPE_DIRECTORY")
    if processes == 1 or not directory or mps_control_pipe(environ) is not None:
        return None
    return (
        f"CUDA_MPS_PIPE_DIRECTORY is {directory} but no MPS daemon's control pipe is there: the {processes} "
        "decoding processes' GPU work is time-sliced with the model's (start nvidia-cuda-mps-control -d "
        "with that directory)"
    )


def gpu_sharing(mps_pipe: Optional[str]) -> str:
    """How the decoding processes share the GPU with the model, as the decoder's description says it."""
    if mps_pipe is None:
        return "no MPS daemon: their GPU work is time-sliced with the model's"
    return f"sharing the GPU through the MPS daemon of {mps_pipe}"


def _read_mode() -> Any:
    return torchvision.io.ImageReadMode.RGB


def _probe_jpeg() -> bytes:
    """A smooth 64x48 4:2:0 JPEG: every decoder renders it within a level or two of libjpeg."""
    ramp = np.linspace(0, 255, 64, dtype=np.float32)
    pixels = np.stack([np.tile(ramp, (48, 1)), np.tile(ramp[::-1], (48, 1)), np.full((48, 64), 128.0)], 2)
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def probe_device_decoder(device: torch.device) -> bool:
    """Decode a probe JPEG with ``decode_jpeg`` on ``device``; whether it takes a batch (list) in one call.

    Raises DecoderUnavailable when this torchvision cannot decode on the device or gets the image wrong.
    """
    version = "torchvision " + torchvision.__version__
    decode = getattr(torchvision.io, "decode_jpeg", None)
    if decode is None or "device" not in inspect.signature(decode).parameters:
        raise DecoderUnavailable(f"{version} has no decode_jpeg(device=...)")
    data = _probe_jpeg()
    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        images, batched = decode([encoded, encoded], mode=_read_mode(), device=device), True
    except (RuntimeError, TypeError, ValueError):  # torchvision < 0.19 decodes one image per call
        try:
            images, batched = [decode(encoded, mode=_read_mode(), device=device)], False
        except (RuntimeError, TypeError, ValueError) as exc:
            raise DecoderUnavailable(
                f"{version} decode_jpeg on {device} failed on a probe image: {exc}"
            ) from exc
    expected = torch.from_numpy(np.asarray(decode_rgb(data, "probe")).transpose(2, 0, 1).copy()).float()
    for image in images:
        if tuple(image.shape) != tuple(expected.shape):
            raise DecoderUnavailable(f"{version} decode_jpeg on {device} gave shape {tuple(image.shape)}")
        error = float((image.cpu().float() - expected).abs().mean())
        if error > PROBE_TOLERANCE:
            raise DecoderUnavailable(
                f"{version} decode_jpeg on {device} differs from PIL by {error:.1f} levels on a probe image"
            )
    return batched


def warm_device(device: torch.device) -> None:
    """This process's device context, nvJPEG decoder and resize kernels made before any batch: a probe image
    decoded (as a batch of one where this torchvision takes lists) and resized on ``device``. A decoding
    process does it while the runner still sets up; whether the decoder is right is ``probe_device_decoder``'s
    question, asked by the runner."""
    encoded = torch.frombuffer(bytearray(_probe_jpeg()), dtype=torch.uint8)
    try:
        image = torchvision.io.decode_jpeg([encoded], mode=_read_mode(), device=device)[0]
    except (RuntimeError, TypeError, ValueError):
        image = torchvision.io.decode_jpeg(encoded, mode=_read_mode(), device=device)
    pp = Preprocessing()
    out = torch.empty((1, 3, pp.crop, pp.crop), dtype=torch.uint8, device=device)
    resize_crop_into(out, [image], [0], pp)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def resolve_decoder(requested: str, device: torch.device, processes: int, cpus: int) -> Decoder:
    """The decoder for ``requested`` (auto, nvjpeg, pil) on ``device``.

    auto: nvJPEG on a CUDA device whose torchvision decodes there, else PIL with the reason recorded.
    nvjpeg where it cannot run: DecoderUnavailable. nvJPEG decodes in ``processes`` processes, or when 0
    in ``default_processes`` (more where an MPS daemon is there to join); PIL in the runner's own (its
    threads).
    """
    if requested not in DECODERS:
        raise ValueError("decoder must be one of {}, got {!r}".format(", ".join(DECODERS), requested))
    if requested == "pil":
        return pil_decoder()
    try:
        if device.type != "cuda":
            raise DecoderUnavailable(f"the device is {device}: nvJPEG decodes on CUDA devices only")
        batched = probe_device_decoder(device)
    except DecoderUnavailable as exc:
        if requested == "nvjpeg":
            raise
        return pil_decoder(str(exc))
    how = "a batch per call" if batched else "one image per call"
    mps_pipe = mps_control_pipe(os.environ)
    processes = decoding_processes(processes, cpus)
    where = (
        "in the runner's process" if processes == 1 else f"in {processes} processes, {gpu_sharing(mps_pipe)}"
    )
    description = f"nvJPEG: torchvision {torchvision.__version__} decode_jpeg on {device}, {how}, {where}"
    warning = mps_missing(os.environ, processes)
    return Decoder("nvjpeg", description, DESCRIPTION, batched, None, processes, warning)


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


def _done(value: Any) -> "Future[Any]":
    future: Future = Future()
    future.set_result(value)
    return future


def _offer(ready: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put ``item`` unless the consumer has stopped; whether it was put."""
    while not stop.is_set():
        try:
            ready.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _take(source: queue.Queue, stop: threading.Event) -> Any:
    """The next item of ``source``, or None once the consumer has stopped."""
    while not stop.is_set():
        try:
            return source.get(timeout=0.05)
        except queue.Empty:
            continue
    return None


def _side(stream: Optional[torch.cuda.Stream]) -> Any:
    """A context that runs device work on ``stream`` (nothing on the CPU)."""
    return torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()


def _on(stream: Optional[torch.cuda.Stream], work: Callable[[], Any]) -> Any:
    with _side(stream):
        return work()


def _drain(ready: queue.Queue) -> None:
    while True:
        try:
            ready.get_nowait()
        except queue.Empty:
            return


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
    ) -> None:
        super().__init__(dataset, batch_size, pp, workers, prefetch=prefetch)
        self.device = device
        self.prefetch = prefetch
        self.batched = batched
        cuda = device.type == "cuda"
        self._stream = torch.cuda.Stream(device) if cuda else None  # the decode thread's
        self._resize_stream = torch.cuda.Stream(device) if cuda else None
        self._pool: Optional[ThreadPoolExecutor] = None

    def _start(self) -> None:
        self._pool = started_pool(self.workers, "rn50bench-cpu")
        if len(self):
            decoded = _on(self._stream, lambda: self._decode(self._read(0, _Arena(), self._pool)))
            _on(self._resize_stream, lambda: self._resized(0, decoded))
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
                if not _offer(encoded, self._read(number, arenas[number % len(arenas)], pool), stop):
                    return
        except BaseException as exc:
            _offer(encoded, exc, stop)

    # -- the decode thread ------------------------------------------------------------
    def _device_decode(self, encoded: List[torch.Tensor]) -> List[Optional[torch.Tensor]]:
        """Decoded images in order; None for an image the decoder rejects."""
        if not encoded:
            return []
        decode = torchvision.io.decode_jpeg
        if self.batched:
            try:
                return list(decode(encoded, mode=_read_mode(), device=self.device))
            except RuntimeError:
                pass  # one image the decoder rejects fails the whole call: find it below
        results: List[Optional[torch.Tensor]] = []
        for data in encoded:
            try:
                results.append(decode(data, mode=_read_mode(), device=self.device))
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
                decoded.cpu.append(item._replace(encoded=None, pixels=_done(pixels), reason=DECODER_ERROR))
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
            with _side(stream):
                for number in range(len(self)):
                    item = _take(source, stop)
                    if item is None:
                        return
                    if isinstance(item, BaseException):
                        raise item
                    if not _offer(sink, work(number, item), stop):
                        return
        except BaseException as exc:  # raised again in the consumer, in batch order
            _offer(sink, exc, stop)

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
        resize_crop_into(images, decoded.images, decoded.slots, self.pp, decoded.geometries)
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
                _drain(pipe)
            for thread in threads:
                thread.join()
