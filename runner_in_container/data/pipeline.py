"""The loader a run uses, for its decoder: PIL threads, the device loader, or several decoding processes."""

from typing import Optional

import torch

from .decode_procs import ProcessBatchLoader
from .decoder_choice import Decoder
from .device_loader import DeviceBatchLoader
from .layouts import Dataset
from .loader import BatchLoader, Loader
from .preprocess import Preprocessing
from .spawned import Spawned


def open_loader(
    decoder: Decoder,
    dataset: Dataset,
    batch_size: int,
    pp: Preprocessing,
    device: torch.device,
    workers: int,
    pin_memory: bool,
    spawned: Optional[Spawned] = None,
) -> Loader:
    """The loader for ``decoder``, not started yet (close it when done); decoding processes ``spawned``
    ahead are its own when they are as many as the decoder's, else they are stopped."""
    if spawned is not None and (decoder.name != "nvjpeg" or spawned.processes != decoder.processes):
        spawned.close()
        spawned = None
    if decoder.name != "nvjpeg":
        return BatchLoader(dataset, batch_size, pp, workers=workers, pin_memory=pin_memory)
    if decoder.processes > 1:
        return ProcessBatchLoader(
            dataset,
            batch_size,
            pp,
            device,
            decoder.processes,
            workers=workers,
            batched=decoder.batched,
            kernels=decoder.kernels,
            spawned=spawned,
        )
    return DeviceBatchLoader(
        dataset, batch_size, pp, device, workers=workers, batched=decoder.batched, kernels=decoder.kernels
    )
