"""ONNX export shared by the ONNX-based toolkits (onnxruntime, tensorrt, ixrt, xtcl, zxrt).

One graph input "input" and one output "logits", both with a fixed batch size (the
engine's), exported with the TorchScript-based exporter (``dynamo=False`` where
the argument exists: torch >= 2.9 defaults to the torch.export-based one).
"""

import inspect
import os
import warnings
from typing import Tuple

import torch

from ..hashing import sha256_file
from .base import Toolkit
from .precision import cast_copy

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 13


def export_onnx(
    model: torch.nn.Module, example: torch.Tensor, path: str, opset: int = DEFAULT_OPSET
) -> Tuple[str, str]:
    """Export eval-mode ``model`` traced on ``example`` to ``path``; returns (path, sha256 of the file).

    The batch dimension is fixed to ``example.shape[0]``. The file appears only when
    the export succeeded (written under a temporary name, then renamed).
    """
    if model.training:
        raise ValueError("export_onnx needs a model in eval mode (call model.eval() first)")
    kwargs = {
        "input_names": [INPUT_NAME],
        "output_names": [OUTPUT_NAME],
        "opset_version": opset,
        "do_constant_folding": True,
    }
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # newer torch warns that the TorchScript exporter is deprecated; it is chosen on purpose
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (example,), tmp, **kwargs)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path, sha256_file(path)


def export_for(toolkit: Toolkit, model: torch.nn.Module, example: torch.Tensor) -> Tuple[str, str]:
    """Export ``model`` for ``toolkit``: in the example's dtype, on the example's device; or, where the
    settings name a vendor's own graph (``onnx_path``), that file as given, nothing exported.

    The file is ``<work_dir>/<toolkit>-bs<batch>-<dtype>.onnx``; the time (model copy,
    export, hashing) is added to ``toolkit.durations["export_s"]``. The caller's model
    is not modified. Returns (path, sha256).
    """
    settings = toolkit.settings
    if settings.onnx_path is not None:
        digest = toolkit.timed("export_s", sha256_file, settings.onnx_path)
        toolkit.notes.append(
            f"onnx: {settings.onnx_path} sha256 {digest}, given (the vendor's own, not exported)"
        )
        return settings.onnx_path, digest
    dtype_name = str(example.dtype).replace("torch.", "")
    path = os.path.join(settings.work_dir, f"{toolkit.name}-bs{example.shape[0]}-{dtype_name}.onnx")

    def run() -> Tuple[str, str]:
        prepared = cast_copy(model, example.dtype, example.device)
        return export_onnx(prepared, example.contiguous(), path)

    path, digest = toolkit.timed("export_s", run)
    toolkit.notes.append(f"onnx: {os.path.basename(path)} sha256 {digest} opset {DEFAULT_OPSET}")
    return path, digest
