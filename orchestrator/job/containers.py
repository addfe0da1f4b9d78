"""Job containers: the ``docker run`` argv, and running it to the end, stopped or not.

The container is locked down for a benchmark that only reads its inputs and writes
its results: no network, private IPC (the host's only to join a CUDA MPS daemon), no
capabilities, no privilege gain, an init process that reaps children, and bind mounts
given explicitly (read-only unless asked). The vendor adds only what exposes its
devices; ``--privileged`` is used only where the lab or the vendor asks for it. Every
value is a separate argv element; values that docker's own ``--mount`` syntax would
misread are refused. Every job container is labelled with its run and the orchestrator
that started it, so that one left behind by a killed orchestrator is found (host/orphans.py).
"""

import contextlib
import hashlib
import re
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from orchestrator.host import orphans
from orchestrator.transport.base import LineHandler, Transport, TransportError
from vendors.devices import DeviceRef
from vendors.vendor import Vendor

DOCKER_TIMEOUT = 60.0
RUN_PREFIX = ["docker", "run", "--rm"]  # the job container removes itself where docker runs it (Slurm)
REFUSED = 125  # docker's own exit status when it cannot create or start the container
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:@-]{0,254}$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]*)?$")
_SHM_RE = re.compile(r"^[0-9]+[bkmgBKMG]?$")
# characters docker's --mount parser (CSV, key=value) would split or choke on
_MOUNT_BAD = (",", '"', "\n", "\r", "\x00")


class ContainerError(ValueError):
    """A container setting is unusable; the message names the setting and value."""


@dataclass(frozen=True)
class Mount:
    """A host path bind-mounted into the container (read-only unless said otherwise)."""

    source: str
    target: str
    read_only: bool = True

    def argv(self) -> List[str]:
        for what, path in (("source", self.source), ("target", self.target)):
            if not path.startswith("/"):
                raise ContainerError(f"mount {what} {path!r} must be an absolute path")
            bad = [ch for ch in _MOUNT_BAD if ch in path]
            if bad:
                raise ContainerError(
                    f"mount {what} {path!r} contains {bad[0]!r}, which docker --mount cannot take"
                )
        spec = f"type=bind,source={self.source},target={self.target}"
        return ["--mount", spec + (",readonly" if self.read_only else "")]


def container_name(run_id: str, job_id: str) -> str:
    """A docker container name unique to one run and job, readable, in docker's charset."""
    digest = hashlib.sha256(f"{run_id}\0{job_id}".encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{run_id}-{job_id}").strip("-.")[:80]
    return f"rn50bench-{readable}-{digest}" if readable else f"rn50bench-{digest}"


def docker_run_argv(
    name: str,
    run_id: str,
    image: str,
    vendor: Vendor,
    devices: Sequence[DeviceRef],
    mounts: Sequence[Mount],
    env: Mapping[str, str],
    command: Sequence[str],
    user: Optional[str],
    shm_size: str = "8g",
    privileged: bool = False,
    memory: Optional[str] = None,
    mps_pipe: Optional[str] = None,
    driver_dir: Optional[str] = None,
) -> List[str]:
    """``docker run`` argv for one job of run ``run_id``; raises ContainerError naming any unusable value.

    HOME is /tmp (writable for any ``user``); the vendor's device environment wins
    over ``env``. ``command`` runs as given (no shell inside either). ``privileged``
    (the lab's explicit choice, or the vendor's ``privileged``) replaces the dropped
    capabilities with docker's --privileged; it is off unless one of them asks. ``memory``
    caps the container's memory (``--memory``, with ``--memory-swap`` equal so that it cannot swap).
    ``mps_pipe``, the pipe directory of the host's CUDA MPS control daemon, lets the job join that daemon:
    the host's IPC namespace instead of a private one, the directory mounted read-write at the same path,
    and CUDA_MPS_PIPE_DIRECTORY set to it (over ``env``).
    ``driver_dir`` (hosts[].docker.gpu_access: nodes), the host's driver folder: the devices are given by
    their nodes (``vendor.device_node_args``) instead of the vendor's own way, and the folder is mounted
    read-only where the vendor's images look for it (``vendor.driver_mount``).
    """
    _check(_NAME_RE, name, "container name")
    _check(_IMAGE_RE, image, "image")
    _check(_SHM_RE, shm_size, "shm_size")
    if not command:
        raise ContainerError("container command is empty")
    ipc = "private" if mps_pipe is None else "host"
    argv = RUN_PREFIX + ["--name", name, "--init", "--network", "none", "--ipc", ipc]
    argv += ["--label", "%s=%s" % (orphans.RUN_LABEL, _check(_NAME_RE, run_id, "run id"))]
    argv += ["--label", "%s=%s" % (orphans.OWNER_LABEL, orphans.identity())]
    argv += ["--shm-size", shm_size, "--security-opt", "no-new-privileges"]
    if memory is not None:
        argv += ["--memory", _check(_SHM_RE, memory, "memory"), "--memory-swap", memory]
    argv += ["--privileged"] if privileged or vendor.privileged else ["--cap-drop", "ALL"]
    if user is not None:
        argv += ["--user", _check(_USER_RE, user, "user")]
    merged: Dict[str, str] = {"HOME": "/tmp"}
    merged.update(env)
    if mps_pipe is not None:
        merged["CUDA_MPS_PIPE_DIRECTORY"] = mps_pipe
    merged.update(vendor.container_env(devices))
    for key, value in merged.items():
        _check(_ENV_KEY_RE, key, "environment variable name")
        if "\x00" in value:
            raise ContainerError(f"environment variable {key} contains a NUL byte")
        argv += ["--env", f"{key}={value}"]
    if driver_dir is None:
        argv += vendor.docker_device_args(devices)
    elif vendor.driver_mount is None:
        raise ContainerError(f"vendor {vendor.name} has no driver folder to mount (gpu_access: nodes)")
    else:
        argv += vendor.device_node_args(devices) + Mount(driver_dir, vendor.driver_mount).argv()
    for mount in mounts:
        argv += mount.argv()
    if mps_pipe is not None:
        argv += Mount(mps_pipe, mps_pipe, read_only=False).argv()
    for arg in command:
        if "\x00" in arg:
            raise ContainerError(f"container command argument {arg!r} contains a NUL byte")
    return argv + [image] + list(command)


def _check(pattern: "re.Pattern[str]", value: str, what: str) -> str:
    if not pattern.match(value):
        raise ContainerError(f"{what} {value!r} is not allowed (must match {pattern.pattern})")
    return value


def run_container(
    transport: Transport,
    name: str,
    argv: Sequence[str],
    on_stdout: LineHandler,
    on_stderr: LineHandler,
    timeout: Optional[float],
    cancel: Optional[Callable[[], bool]] = None,
) -> int:
    """Run the argv of ``docker_run_argv``, streaming its lines; return the container's exit status.

    It runs as ``docker create`` and then ``docker start --attach``: a stop at any moment finds the
    container, where a ``docker run`` client killed early can leave the engine creating one after the
    removal. A leftover container of the same name (an earlier attempt of this job) is removed
    first. On timeout (CommandTimeout), cancel (Cancelled) or any other error the
    container is killed and removed and the error re-raised; in every case no container
    of that name is left behind. Exit 125 means docker itself refused to start it (the
    reason is on stderr).
    """
    if list(argv[:3]) != RUN_PREFIX:
        raise ContainerError(f"not a job container's argv (from docker_run_argv): {list(argv[:3])!r}")
    remove_container(transport, name)
    # without --rm: its state can be read after a failed start; it is removed here in every case
    created = transport.run(["docker", "create", *argv[len(RUN_PREFIX) :]], timeout=DOCKER_TIMEOUT)
    if created.returncode != 0:
        for line in created.stderr.splitlines():
            on_stderr(line)
        return REFUSED
    try:
        start = ["docker", "start", "--attach", name]
        code = transport.stream(start, on_stdout, on_stderr, timeout=timeout, cancel=cancel)
        if code != 0 and _never_started(transport, name):
            code = REFUSED
    except BaseException:
        # the killed docker client leaves its container running: the engine must stop it (rm --force
        # kills); a failure here (the host unreachable) must not hide the error on its way out
        with contextlib.suppress(TransportError):
            remove_container(transport, name)
        raise
    remove_container(transport, name)
    return code


def _never_started(transport: Transport, name: str) -> bool:
    """True when the engine created container ``name`` but could not start it."""
    argv = ["docker", "container", "inspect", "--format", "{{.State.StartedAt}}", name]
    done = transport.run(argv, timeout=DOCKER_TIMEOUT)
    return done.returncode == 0 and done.stdout.strip().startswith("0001-01-01")


def remove_container(transport: Transport, name: str) -> None:
    """Remove container ``name`` if it exists and wait (briefly) until the engine has let it go."""
    transport.run(["docker", "rm", "--force", name], timeout=DOCKER_TIMEOUT)
    deadline = time.monotonic() + DOCKER_TIMEOUT
    while container_exists(transport, name):
        if time.monotonic() > deadline:
            raise TransportError(f"container {name} on {transport.host} is still there after docker rm")
        time.sleep(0.5)


def container_exists(transport: Transport, name: str) -> bool:
    """True while the engine knows a container called ``name`` (running, stopped or being removed)."""
    argv = ["docker", "container", "inspect", "--format", "{{.State.Status}}", name]
    return transport.run(argv, timeout=DOCKER_TIMEOUT).returncode == 0
