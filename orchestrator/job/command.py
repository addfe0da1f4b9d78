"""The command that runs one job on its host, as a model whose device stays open until it is rendered.

``build`` gathers what the command needs (the runner's options, rendered from the contract, and
for docker the container's mounts and settings); ``JobCommand.argv(device)`` renders
``docker run ...`` or, bare, ``env PYTHONPATH=<installed runner> ... python -c ...`` (the runner's
``-m``, run in the job's folder, importing nothing from where it starts: host/python.py) for one device,
or for ``DEVICE``, a placeholder that a launcher fills in where the device is known (Slurm's node).
"""

import posixpath
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from orchestrator.host import prepare
from orchestrator.host import python as hostpython
from orchestrator.job import containers
from orchestrator.job.plan import Job
from orchestrator.model.cluster import Host
from runner_in_container.contract import render_argv, weights_is_file
from vendors.devices import DevicePlaceholder, DeviceRef
from vendors.vendor import Vendor

RUNNER_MODULE = "runner_in_container"
CONTAINER_RESULTS = "/results"
CONTAINER_CACHE = "/cache"
#: the device of a job command rendered before its device is known
DEVICE = DevicePlaceholder("{device}")


class CommandError(ValueError):
    """The job's command cannot be rendered (the message names the value)."""


@dataclass(frozen=True)
class DockerRun:
    """How the job's container is started: everything but its device."""

    name: str
    run_id: str
    image: str
    mounts: Tuple[containers.Mount, ...]
    user: Optional[str]
    shm_size: str
    privileged: bool
    memory: Optional[str]
    mps_pipe: Optional[str]
    driver_dir: Optional[str] = None  # gpu_access nodes: the host's driver folder (prepare.driver_dir)


@dataclass(frozen=True)
class JobCommand:
    """The argv of one job with its device open; ``docker`` is None on a bare host."""

    vendor: Vendor
    runner: Tuple[str, ...]
    env: Tuple[Tuple[str, str], ...] = ()  # bare: the runner's environment besides its device's
    docker: Optional[DockerRun] = None

    def argv(self, device: DeviceRef) -> List[str]:
        """The command for ``device`` (a host index, or DEVICE)."""
        if self.docker is None:
            env = dict(self.env)
            env.update(self.vendor.device_env([device]))
            return ["env"] + ["%s=%s" % kv for kv in sorted(env.items())] + list(self.runner)
        run = self.docker
        return containers.docker_run_argv(
            run.name,
            run.run_id,
            run.image,
            self.vendor,
            [device],
            run.mounts,
            dict(self.vendor.container_env([device]), HOME="/tmp"),
            self.runner,
            user=run.user,
            shm_size=run.shm_size,
            privileged=run.privileged,
            memory=run.memory,
            mps_pipe=run.mps_pipe,
            driver_dir=run.driver_dir,
        )

    def with_placeholder(self) -> Tuple[List[str], bool]:
        """The command with its device written as DEVICE, and whether it names the device at all.

        CommandError when a value of the job's own (a path, a name) contains DEVICE's text, which
        filling in the device would change.
        """
        fixed = list(self.runner) + [value for pair in self.env for value in pair]
        if self.docker is not None:
            run = self.docker
            fixed += [run.name, run.image] + [m.source for m in run.mounts] + [m.target for m in run.mounts]
            fixed += [run.driver_dir] if run.driver_dir else []
        token = str(DEVICE)
        clash = next((value for value in fixed if token in value), None)
        if clash is not None:
            raise CommandError("the job's command contains %s, the device placeholder: %r" % (token, clash))
        argv = self.argv(DEVICE)
        return argv, any(token in arg for arg in argv)


def runner_options(job: Job, host: Host, vendor: Vendor, paths: Dict[str, Optional[str]]) -> List[str]:
    """The runner's options for ``job``; ``paths``: out, data, labels, weights, engine_cache, onnx_path and
    engine_path as the runner sees them."""
    values = dict(
        paths,
        case=job.case,
        layout=host.data.layout,
        toolkit=job.toolkit,
        precision=job.precision,
        batch_size=job.batch_size,
        repeat=job.repeat,
        warmup=job.warmup,
        device=vendor.runner_device,
        workers=host.workers,
        decoder=job.decoder,
        decode_processes=host.decode_processes,
        toolkit_option=["%s=%s" % pair for pair in job.toolkit_options],
        data_md5=host.data.md5,
        weights_sha256=job.weights_sha256,
        stages=job.stages,
        max_images=host.data.max_images,
        scenario=job.scenario,
        mlperf=job.mlperf,
        mlperf_duration_s=job.mlperf_duration_s,
        server_target_qps=job.server_target_qps,
        server_latency_ms=job.server_latency_ms,
    )
    try:
        return render_argv(values)
    except ValueError as exc:
        raise CommandError("job %s: %s" % (job.job_id, exc)) from None


def build(
    job: Job,
    host: Host,
    vendor: Vendor,
    remote_dir: str,
    cache_dir: str,
    run_id: str,
    image: Optional[str],
    user: Optional[str],
    runner_path: Optional[str],
    mps_pipe: Optional[str],
) -> JobCommand:
    """The command of ``job`` on ``host``: results in ``remote_dir``, engines in ``cache_dir``; docker runs
    ``image`` as the job's container of run ``run_id``, a bare host the runner installed at
    ``runner_path``. With ``mps_pipe`` the job joins that CUDA MPS daemon (mps.py) through its pipe
    directory."""
    spec = host.data
    if host.runtime != "docker":
        assert runner_path is not None
        paths = dict(
            out=remote_dir,
            data=spec.path,
            labels=spec.labels,
            weights=host.weights,
            engine_cache=cache_dir,
            onnx_path=job.onnx_path,
            engine_path=job.engine_path,
        )
        env = {"PYTHONPATH": runner_path}
        if mps_pipe is not None:
            env["CUDA_MPS_PIPE_DIRECTORY"] = mps_pipe
        options = runner_options(job, host, vendor, paths)
        runner = hostpython.module_argv(host.python, RUNNER_MODULE, remote_dir, options)
        return JobCommand(vendor, tuple(runner), tuple(env.items()))
    assert image is not None
    mounts = [
        containers.Mount(spec.path, "/data/" + posixpath.basename(spec.path.rstrip("/"))),
        containers.Mount(remote_dir, CONTAINER_RESULTS, read_only=False),
        containers.Mount(cache_dir, CONTAINER_CACHE, read_only=False),
    ]
    data, labels, weights = mounts[0].target, None, host.weights
    if spec.labels:
        mounts.append(containers.Mount(spec.labels, "/labels/" + posixpath.basename(spec.labels)))
        labels = mounts[-1].target
    if weights_is_file(weights):
        mounts.append(containers.Mount(weights, "/weights/" + posixpath.basename(weights)))
        weights = mounts[-1].target
    artefacts: Dict[str, Optional[str]] = {}
    for name, path in (("onnx_path", job.onnx_path), ("engine_path", job.engine_path)):
        if path is not None:
            mounts.append(containers.Mount(path, "/artefacts/%s/%s" % (name, posixpath.basename(path))))
            path = mounts[-1].target
        artefacts[name] = path
    paths = dict(
        artefacts,
        out=CONTAINER_RESULTS,
        data=data,
        labels=labels,
        weights=weights,
        engine_cache=CONTAINER_CACHE,
    )
    docker = host.docker
    run = DockerRun(
        containers.container_name(run_id, job.job_id),
        run_id,
        image,
        tuple(mounts),
        user,
        docker.shm_size,
        docker.privileged,
        docker.memory,
        mps_pipe,
        prepare.driver_dir(host, vendor),
    )
    runner = ["python3", "-m", RUNNER_MODULE] + runner_options(job, host, vendor, paths)
    return JobCommand(vendor, tuple(runner), docker=run)
