"""How many nvJPEG decoding processes a run gets: from the CPUs it may use and whether an MPS daemon is
there to join. Torch-free, so that the runner can spawn them before it imports torch (ahead.py)."""

import os
from typing import Mapping, Optional

from ..contract import (
    CPUS_PER_PROCESS,
    CPUS_PER_PROCESS_MPS,
    MAX_DEFAULT_PROCESSES,
    MPS_DEFAULT_PIPE_DIRECTORY,
)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


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
