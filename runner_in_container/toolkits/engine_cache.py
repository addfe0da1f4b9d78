"""Engine cache shared by the engine-building toolkits (tensorrt, ixrt, zxrt).

An engine is valid only for the exact ONNX graph, SDK version, device model,
precision and batch size it was built for; its file name is the sha256 of those
fields, so a change of any of them builds a new engine instead of loading a stale one.
A vendor's own engine (``--engine-path``) is run as given: nothing exported, nothing built (``engine_file``).
"""

import hashlib
import json
import os
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Tuple

if TYPE_CHECKING:
    from .base import Toolkit


def engine_key(
    onnx_sha256: str,
    sdk: str,
    sdk_version: str,
    device: str,
    precision: str,
    batch_size: int,
    extra: Optional[Mapping[str, str]] = None,
) -> str:
    """Hex sha256 over the fields an engine depends on (``extra``: toolkit-specific build settings)."""
    fields = {
        "onnx_sha256": onnx_sha256,
        "sdk": sdk,
        "sdk_version": sdk_version,
        "device": device,
        "precision": precision,
        "batch_size": int(batch_size),
        "extra": dict(extra or {}),
    }
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def cuda_device_label(index: int) -> str:
    """Device model and compute capability as torch.cuda reports them, e.g. "NVIDIA H200 sm_90"."""
    import torch

    major, minor = torch.cuda.get_device_capability(index)
    return f"{torch.cuda.get_device_name(index)} sm_{major}{minor}"


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees a partial file."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def cached_build(cache_dir: str, key: str, suffix: str, build: Callable[[str], None]) -> Tuple[str, bool]:
    """Path of the cached artifact ``<cache_dir>/<key><suffix>``, building it first if absent.

    ``build(tmp_path)`` must write the artifact to ``tmp_path``; it is renamed into
    place only when ``build`` returns and the file is not empty. Returns (path, hit).
    """
    path = os.path.join(cache_dir, key + suffix)
    if os.path.isfile(path) and os.path.getsize(path) > 0:
        return path, True
    os.makedirs(cache_dir, exist_ok=True)
    tmp = os.path.join(cache_dir, f".tmp-{os.getpid()}-{key[:16]}{suffix}")
    try:
        build(tmp)
        if not os.path.isfile(tmp) or os.path.getsize(tmp) == 0:
            raise RuntimeError(f"engine build wrote nothing to {tmp}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path, False


def engine_file(
    toolkit: "Toolkit",
    suffix: str,
    prepare: Callable[[], Tuple[str, Callable[[str], None]]],
    what: str = "engine",
) -> str:
    """The engine file ``toolkit`` runs: the vendor's own (``settings.engine_path``) as given, else the one of
    ``prepare()``'s (cache key, build), called only then (it exports the graph), from ``cache_dir`` or built
    there (the build's time in ``compile_s``); noted either way."""
    given = toolkit.settings.engine_path
    if given is not None:
        toolkit.notes.append(f"{what} {given} given (the vendor's own: not exported, not built)")
        return given
    key, build = prepare()
    path, hit = cached_build(
        toolkit.settings.cache_dir, key, suffix, lambda tmp: toolkit.timed("compile_s", build, tmp)
    )
    toolkit.notes.append("{} {} {}".format(what, path, "loaded from cache" if hit else "built"))
    return path
