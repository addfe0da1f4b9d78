"""The loader a run uses, for its decoder: PIL threads, the device loader, or several decoding processes."""

import torch

from .decode_procs import ProcessBatchLoader
from .gpu import Decoder, DeviceBatchLoader
from .layouts import Dataset
from .loader import BatchLoader, Loader
from .preprocess import Preprocessing


def open_loader(
    decoder: Decoder,
    dataset: Dataset,
    batch_size: int,
    pp: Preprocessing,
    device: torch.device,
    workers: int,
    pin_memory: bool,
) -> Loader:
    """The loader for ``decoder``, not started yet (close it when done)."""
    if decoder.name != "nvjpeg":
        return BatchLoader(dataset, batch_size, pp, workers=workers, pin_memory=pin_memory)
    if decoder.processes > 1:
        return ProcessBatchLoader(
            dataset, batch_size, pp, device, decoder.processes, workers=workers, batched=decoder.batched
        )
    return DeviceBatchLoader(dataset, batch_size, pp, device, workers=workers, batched=decoder.batched)
