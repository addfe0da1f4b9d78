"""How a job's processes share its NVIDIA GPU: a job-private CUDA MPS daemon, the host's own, or none.

``hosts[].mps``: ``true``, the lab runs its own daemon (``mps_pipe_directory``) and jobs join it;
``false``, no MPS; ``auto`` (the default), for each job on an NVIDIA host, the host's own daemon when one
is there, else a daemon of the job's own where the GPU allows it (compute mode Default, no other process
on it): started before the runner (``nvidia-cuda-mps-control -d``, its pipe and log folders in a short
folder of /tmp named by the run and the device, as its sockets' paths must be short; that one GPU
visible to it) and always quit after it, its folder removed, also when the job fails or
the run is interrupted. With MPS the runner's decoding processes' kernels run beside the model's
instead of taking turns with them (time slices). No setting of the card changes.
"""

import contextlib
import posixpath
from typing import Iterator, List, NamedTuple, Optional, Union

from orchestrator.transport.base import Transport, TransportError

CONTROL = "nvidia-cuda-mps-control"
NVIDIA_SMI = "nvidia-smi"
COMMAND_TIMEOUT_S = 30.0
FOLDER_ROOT = "/tmp"
Mode = Union[bool, str]  # True, False or "auto"


class Sharing(NamedTuple):
    """The MPS daemon a job joins (its pipe directory, None: none) and how that came about."""

    pipe: Optional[str]
    note: str


def _output(transport: Transport, argv: List[str]) -> Optional[str]:
    """The command's stdout, stripped; None when it cannot run or fails."""
    try:
        done = transport.run(argv, timeout=COMMAND_TIMEOUT_S)
    except TransportError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def refusal(transport: Transport, device: int) -> Optional[str]:
    """Why no daemon of the job's own may start on GPU ``device``; None when it may."""
    query = [NVIDIA_SMI, "-i", str(device), "--format=csv,noheader"]
    mode = _output(transport, query + ["--query-gpu=compute_mode"])
    if mode is None:
        return "%s cannot query GPU %d" % (NVIDIA_SMI, device)
    if mode != "Default":
        return "GPU %d is in compute mode %s (MPS needs Default here)" % (device, mode)
    apps = _output(transport, query + ["--query-compute-apps=pid"])
    if apps is None:
        return "%s cannot list the processes on GPU %d" % (NVIDIA_SMI, device)
    if apps:
        return "other processes run on GPU %d (pids %s)" % (device, ", ".join(apps.split()))
    return None


def _control(pipe: str, log: str, device: int) -> List[str]:
    """argv of the control program of a daemon with folders ``pipe`` and ``log``, over GPU ``device``."""
    return [
        "env",
        "CUDA_VISIBLE_DEVICES=%d" % device,
        "CUDA_MPS_PIPE_DIRECTORY=" + pipe,
        "CUDA_MPS_LOG_DIRECTORY=" + log,
        CONTROL,
    ]


def daemon_folder(run_id: str, device: int) -> str:
    """The folder of a job's own daemon on its host."""
    return "%s/rn50bench-mps-%s-d%d" % (FOLDER_ROOT, run_id, device)


@contextlib.contextmanager
def job_sharing(
    transport: Transport, mode: Mode, host_pipe: str, nvidia: bool, device: int, run_id: str
) -> Iterator[Sharing]:
    """The daemon the job on ``device`` joins, for the length of the ``with`` block (see the module)."""
    if mode is False or not nvidia:
        yield Sharing(None, "off")
        return
    own_pipe = posixpath.join(host_pipe, "control")
    if mode is True or _output(transport, ["test", "-e", own_pipe]) is not None:
        yield Sharing(host_pipe, "the host's MPS daemon (%s)" % host_pipe)
        return
    reason = refusal(transport, device)
    if reason is not None:
        yield Sharing(None, "auto: no MPS daemon, " + reason)
        return
    folder = daemon_folder(run_id, device)
    pipe, log = posixpath.join(folder, "pipe"), posixpath.join(folder, "log")
    control = _control(pipe, log, device)
    try:
        transport.run(["mkdir", "-p", "--", pipe, log], timeout=COMMAND_TIMEOUT_S).check()
        transport.run(control + ["-d"], timeout=COMMAND_TIMEOUT_S).check()
    except TransportError as exc:
        yield Sharing(None, "auto: no MPS daemon, %s -d failed: %s" % (CONTROL, str(exc).splitlines()[0]))
        return
    try:
        yield Sharing(pipe, "auto: an MPS daemon of the job's own (%s)" % pipe)
    finally:
        try:
            transport.run(control, stdin=b"quit\n", timeout=COMMAND_TIMEOUT_S)
            transport.run(["rm", "-rf", "--", folder], timeout=COMMAND_TIMEOUT_S)
        except TransportError:
            pass  # the host is gone: so is its daemon's reason to run; the next job's check says so
