"""nvJPEG through torchvision's ``decode_jpeg`` on a device, tried on a probe image: whether it decodes there
and gets the image right (``probe_device_decoder``, asked when the decoder is chosen), and a process's
decoder and resize kernels made before its first batch (``warm_device``)."""

import inspect
import io
from typing import Any

import numpy as np
import torch
import torchvision
from PIL import Image

from . import resample_kernels
from .decode import decode_rgb
from .errors import DecoderUnavailable
from .preprocess import Preprocessing
from .resample import geometry, resize_crop_into

#: largest mean |difference| (levels) between the device decoder and PIL on the smooth probe image
PROBE_TOLERANCE = 8.0


def read_mode() -> Any:
    """The mode every ``decode_jpeg`` call of the runner decodes in (RGB)."""
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
        images, batched = decode([encoded, encoded], mode=read_mode(), device=device), True
    except (RuntimeError, TypeError, ValueError):  # torchvision < 0.19 decodes one image per call
        try:
            images, batched = [decode(encoded, mode=read_mode(), device=device)], False
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
        image = torchvision.io.decode_jpeg([encoded], mode=read_mode(), device=device)[0]
    except (RuntimeError, TypeError, ValueError):
        image = torchvision.io.decode_jpeg(encoded, mode=read_mode(), device=device)
    pp = Preprocessing()
    out = torch.empty((1, 3, pp.crop, pp.crop), dtype=torch.uint8, device=device)
    resize_crop_into(out, [image], [0], pp)
    if resample_kernels.available(device):
        try:  # compiled now, beside the runner's set-up (resample_kernels.usable says whether they are used)
            shape = (int(image.shape[1]), int(image.shape[2]))
            resample_kernels.resize_crop_into(out, [image], [0], pp, [geometry(*shape, pp)])
        except Exception:  # noqa: BLE001,S110 - the runner's probe says why, and resizes with the products
            pass
    if device.type == "cuda":
        torch.cuda.synchronize(device)
