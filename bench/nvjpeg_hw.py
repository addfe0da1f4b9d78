"""nvJPEG's batched decoder on the GPU's hardware JPEG engine, through ctypes (bench/decode_contention.py).

torchvision's ``decode_jpeg`` uses nvJPEG's default backend (Huffman decoding on the CPU, the rest in CUDA
kernels) behind one lock per process. ``BatchDecoder`` here asks for the hardware backend (the A100's and
H100/H200's JPEG engines), with its own handle, batched state and CUDA stream, so several decode at once.
nvJPEG allocates with its defaults (cudaMalloc, cudaHostAlloc). The images of a batch land as planar RGB in
one device buffer that the caller gets [3, H, W] views of, ready once ``stream`` has run.

Structures and signatures follow nvjpeg.h of CUDA >= 11 (``nvjpegImage_t.pitch`` is ``size_t`` there);
``load`` refuses an older library. A bench tool: the runner does not use it (see the bench's docstring).
"""

import ctypes
import ctypes.util
import glob
import os
from typing import Any, List, Sequence, Tuple

import numpy as np
import torch

MAX_COMPONENT = 4
BACKEND_DEFAULT, BACKEND_HARDWARE = 0, 3
OUTPUT_RGB = 3
STATUS_ARCH_MISMATCH = 7
MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL = 0, 1, 2
#: the oldest nvJPEG whose nvjpegImage_t has size_t pitches
MIN_MAJOR = 11
STATUS_NAMES = {
    1: "NOT_INITIALIZED",
    2: "INVALID_PARAMETER",
    3: "BAD_JPEG",
    4: "JPEG_NOT_SUPPORTED",
    5: "ALLOCATOR_FAILURE",
    6: "EXECUTION_FAILED",
    7: "ARCH_MISMATCH",
    8: "INTERNAL_ERROR",
    9: "IMPLEMENTATION_NOT_SUPPORTED",
    10: "INCOMPLETE_BITSTREAM",
}


class NvjpegError(RuntimeError):
    """An nvJPEG call failed (the message names the call and the status)."""


class Image(ctypes.Structure):
    """nvjpegImage_t: a pointer and a pitch per channel."""

    _fields_ = [("channel", ctypes.c_void_p * MAX_COMPONENT), ("pitch", ctypes.c_size_t * MAX_COMPONENT)]


_P = ctypes.c_void_p
SIGNATURES = {
    "nvjpegGetProperty": [ctypes.c_int, ctypes.POINTER(ctypes.c_int)],
    "nvjpegCreateEx": [ctypes.c_int, _P, _P, ctypes.c_uint, ctypes.POINTER(_P)],
    "nvjpegDestroy": [_P],
    "nvjpegJpegStateCreate": [_P, ctypes.POINTER(_P)],
    "nvjpegJpegStateDestroy": [_P],
    "nvjpegDecodeBatchedInitialize": [_P, _P, ctypes.c_int, ctypes.c_int, ctypes.c_int],
    "nvjpegDecodeBatched": [
        _P,
        _P,
        ctypes.POINTER(_P),
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(Image),
        _P,
    ],
}


def candidate_paths() -> List[str]:
    """Where libnvjpeg may be, best first: the one torchvision's image extension loaded, the system's,
    pip's nvidia packages."""
    try:
        import torchvision.io.image  # noqa: F401 - loads its extension, and with it libnvjpeg, if linked
    except ImportError:
        pass
    paths: List[str] = []
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "libnvjpeg" in line and "/" in line})
    except OSError:
        pass
    found = ctypes.util.find_library("nvjpeg")
    if found:
        paths.append(found)
    site = os.path.dirname(os.path.dirname(torch.__file__))
    return paths + sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib", "libnvjpeg.so*")))


class Library:
    """libnvjpeg loaded and its functions typed; ``call`` raises NvjpegError for a status other than 0."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lib = ctypes.CDLL(path)
        for name, argtypes in SIGNATURES.items():
            function = getattr(self.lib, name)
            function.argtypes, function.restype = argtypes, ctypes.c_int
        self.version = ".".join(
            str(self._property(kind)) for kind in (MAJOR_VERSION, MINOR_VERSION, PATCH_LEVEL)
        )
        if int(self.version.split(".")[0]) < MIN_MAJOR:
            raise NvjpegError(f"{path} is nvJPEG {self.version}: this binding needs {MIN_MAJOR} or newer")

    def _property(self, kind: int) -> int:
        value = ctypes.c_int()
        self.call("nvjpegGetProperty", kind, ctypes.byref(value))
        return value.value

    def status(self, name: str, *args: Any) -> int:
        return getattr(self.lib, name)(*args)

    def call(self, name: str, *args: Any) -> None:
        status = self.status(name, *args)
        if status != 0:
            raise NvjpegError(f"{name} failed: NVJPEG_STATUS_{STATUS_NAMES.get(status, status)}")


def load() -> Library:
    """The first usable libnvjpeg; NvjpegError naming what was tried when none loads."""
    errors = []
    for path in candidate_paths():
        try:
            return Library(path)
        except (OSError, AttributeError, NvjpegError) as exc:
            errors.append(f"{path}: {exc}")
    raise NvjpegError("no usable libnvjpeg: " + ("; ".join(errors) or "none found"))


def planar_layout(shapes: Sequence[Tuple[int, int]]) -> Tuple[List[int], int]:
    """Byte offsets of planar RGB images of ``shapes`` (height, width) packed one after another, and the
    total size."""
    offsets, total = [], 0
    for height, width in shapes:
        offsets.append(total)
        total += 3 * height * width
    return offsets, total


def destinations(base: int, shapes: Sequence[Tuple[int, int]], offsets: Sequence[int]) -> Any:
    """nvjpegImage_t per image: its three planes at ``base + offset``, pitch its width."""
    images = (Image * len(shapes))()
    for image, (height, width), offset in zip(images, shapes, offsets):
        for channel in range(3):
            image.channel[channel] = base + offset + channel * height * width
            image.pitch[channel] = width
    return images


class BatchDecoder:
    """One nvJPEG handle (the hardware backend where the GPU has the engine), a batched state and a stream.

    ``decode`` queues a batch of encoded JPEGs with their (height, width) on ``stream`` and returns uint8
    [3, H, W] views of one device buffer. One thread at a time per decoder.
    """

    def __init__(self, lib: Library, device: torch.device, priority: int = 0) -> None:
        self.lib, self.device = lib, device
        self.stream = torch.cuda.Stream(device, priority=priority)
        self.handle, self.state = ctypes.c_void_p(), ctypes.c_void_p()
        self.backend = "hardware"
        status = lib.status("nvjpegCreateEx", BACKEND_HARDWARE, None, None, 0, ctypes.byref(self.handle))
        if status == STATUS_ARCH_MISMATCH:  # no JPEG engine on this GPU
            self.backend = "default"
            lib.call("nvjpegCreateEx", BACKEND_DEFAULT, None, None, 0, ctypes.byref(self.handle))
        elif status != 0:
            raise NvjpegError(f"nvjpegCreateEx failed: NVJPEG_STATUS_{STATUS_NAMES.get(status, status)}")
        lib.call("nvjpegJpegStateCreate", self.handle, ctypes.byref(self.state))
        self._initialized_for = 0

    def decode(self, encoded: Sequence[bytes], shapes: Sequence[Tuple[int, int]]) -> List[torch.Tensor]:
        """The images of ``encoded`` decoded to planar RGB, queued on ``self.stream``."""
        count = len(encoded)
        offsets, total = planar_layout(shapes)
        with torch.cuda.stream(self.stream):
            flat = torch.empty(total, dtype=torch.uint8, device=self.device)
        if self._initialized_for != count:
            self.lib.call("nvjpegDecodeBatchedInitialize", self.handle, self.state, count, 1, OUTPUT_RGB)
            self._initialized_for = count
        keep = [np.frombuffer(data, dtype=np.uint8) for data in encoded]  # alive until the call returns
        pointers = (ctypes.c_void_p * count)(*[array.ctypes.data for array in keep])
        lengths = (ctypes.c_size_t * count)(*[array.size for array in keep])
        outputs = destinations(flat.data_ptr(), shapes, offsets)
        stream = ctypes.c_void_p(self.stream.cuda_stream)
        self.lib.call("nvjpegDecodeBatched", self.handle, self.state, pointers, lengths, outputs, stream)
        return [flat[o : o + 3 * h * w].view(3, h, w) for o, (h, w) in zip(offsets, shapes)]

    def close(self) -> None:
        """Wait for the stream, then free the state and the handle (idempotent)."""
        if self.handle:
            self.stream.synchronize()
            self.lib.call("nvjpegJpegStateDestroy", self.state)
            self.lib.call("nvjpegDestroy", self.handle)
            self.handle = ctypes.c_void_p()
