"""Which decoder a run uses (``--decoder``, ``--decode-processes``): PIL in CPU threads, or nvJPEG on the
CUDA device in one or several decoding processes, and how those share the GPU with the model (MPS).
``resolve_decoder`` decides; the result records the ``Decoder`` it returns."""

import os
from typing import Mapping, NamedTuple, Optional

import PIL
import torch
import torchvision

from ..contract import DECODERS
from . import resample, resample_kernels
from .errors import DecoderUnavailable
from .nvjpeg_probe import probe_device_decoder
from .process_count import decoding_processes, mps_control_pipe

PIL_RESIZE = "torchvision.transforms.functional.resize bilinear antialias"


class Decoder(NamedTuple):
    """The decoder a run uses, as the result records it."""

    name: str  # "pil" or "nvjpeg"
    description: str  # data.decoder
    resize: str  # data.resize
    batched: bool  # decode_jpeg takes a list of images (torchvision >= 0.19)
    fallback_reason: Optional[str]  # why "auto" chose PIL
    processes: int  # decoding processes (decode_procs.py); 1: in the runner's own
    warning: Optional[str] = None  # for the result's warnings: an MPS daemon asked for and not there
    kernels: bool = False  # the resize and crop by resample_kernels.py's Triton kernels, else resample.py's


def pil_decoder(fallback_reason: Optional[str] = None) -> Decoder:
    return Decoder("pil", "PIL " + PIL.__version__, PIL_RESIZE, False, fallback_reason, 1)


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
    why_not = resample_kernels.usable(device)
    resize = resample_kernels.DESCRIPTION
    if why_not is not None:
        resize = f"{resample.DESCRIPTION} (the exact integer kernels not used: {why_not})"
    return Decoder("nvjpeg", description, resize, batched, None, processes, warning, why_not is None)
