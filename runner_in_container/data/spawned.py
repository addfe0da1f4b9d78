"""Decoding processes spawned ahead of their loader (decode_procs.ProcessBatchLoader). Torch-free: the
runner spawns them first thing (ahead.py), so that their imports (torch, torchvision: seconds) overlap its
own instead of following them.

Each process imports what it needs, then, given its device, waits until ``use_device()`` says the runner
has taken its device's memory baseline (their contexts are the job's memory, not other processes'), makes
its device context and warms its decoder and resize kernels on a probe image, and waits for its set-up.
"""

import multiprocessing
import time
from typing import Any, Optional

from .errors import require_positive


def _serve(*args: Any) -> None:
    """A process's target: decode_serve.serve, imported in the process (the parent needs no torch)."""
    from .decode_serve import serve

    serve(*args)


class Spawned:
    """``processes`` decoding processes with ``slots`` ring slots each, waiting for their set-up; given
    ``device`` ("cuda:0"), each warms it once ``use_device()`` is called."""

    def __init__(self, processes: int, slots: int = 3, device: Optional[str] = None) -> None:
        require_positive("Spawned", processes=processes, slots=slots)
        self.processes, self.slots, self.device = processes, slots, device
        self.began_unix = time.time()
        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.go = context.Event()
        self.channels = [(context.Queue(), context.Queue(), context.Queue()) for _ in range(processes)]
        for rank, (_, _, free) in enumerate(self.channels):
            for slot in range(rank * slots, (rank + 1) * slots):
                free.put(slot)
        self.members = [
            context.Process(
                target=_serve,
                args=(rank, processes, self.channels[rank], self.stop, self.go, device),
                name=f"rn50bench-decode-{rank}",
                daemon=True,
            )
            for rank in range(processes)
        ]
        for process in self.members:
            process.start()

    def use_device(self) -> None:
        """Let the processes make their device contexts (the runner's memory baseline is taken)."""
        self.go.set()

    def close(self, leave_s: float = 5.0) -> None:
        """Stop the processes: each leaves on its own within ``leave_s``, or is terminated."""
        self.stop.set()
        for process in self.members:
            process.join(leave_s)
        for process in self.members:
            if process.is_alive():
                process.terminate()
                process.join()
