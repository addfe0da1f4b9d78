"""The one interface every launcher implements, with what most of them share.

A launcher decides how the jobs of one host entry get run. One instance serves one host
entry; its ``HostWorker`` (``self.worker``) owns the job lifecycle and asks the launcher,
through ``job.launch.Launch``, for what differs: checking the host's docker, capturing its
environment, preparing the image, the connection and display line of a job, and running the
job's command to its end; each answer is returned, the worker keeps it. The defaults here are
those of a host the orchestrator reaches itself.

A launcher also owns its part of the cluster file: the section named after it (``slurm:``) and a
host entry's section of that name (``hosts[].slurm``), as pydantic models, and the rules that join
them with the rest of the file (``check``). The cluster models keep those sections as opaque data;
``config/load.py`` validates them with the chosen launcher's classes.
"""

import abc
import posixpath
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Type

from orchestrator.host import envinfo, images, origin
from orchestrator.host import prepare as hostprep
from orchestrator.job.launch import Built
from orchestrator.job.lifecycle import HostWorker
from orchestrator.job.plan import Job
from orchestrator.job.runner_output import RunnerOutcome
from orchestrator.job.stages import RunContext
from orchestrator.model.cluster import Cluster, Host
from orchestrator.model.fields import Model
from orchestrator.outcome import Stage
from orchestrator.safeio.logs import LogFile
from orchestrator.safeio.text import one_line
from orchestrator.transport.base import Transport

#: how much of the build log's last line the display shows
LOG_LINE_CHARS = 100


class Launcher(abc.ABC):
    """How one host entry's jobs run. A module of this package exposes its subclass as ``LAUNCHER``."""

    #: the cluster file's ``launcher:`` value
    name = ""
    #: this launcher starts a job's own MPS daemon on its host (mps: auto); a batch system's does not
    private_mps = True
    #: a job runs on the host this launcher reaches, where its conditions are checked
    reaches_job_host = True
    #: the model of the cluster file's section named after this launcher (``slurm:``); None: it takes none
    settings_class: ClassVar[Optional[Type[Model]]] = None
    #: the model of a host entry's section named after it (``hosts[].slurm``); None: it takes none
    host_settings_class: ClassVar[Optional[Type[Model]]] = None

    @classmethod  # noqa: B027 (not abstract: a launcher without rules of its own keeps this one)
    def check(cls, cluster: Cluster) -> None:
        """Rules joining this launcher and its (valid) sections with the rest of ``cluster``: model.fields'
        Problems, each naming its field (``("hosts", 0, "devices")``)."""

    def __init__(self, ctx: RunContext, host: Host) -> None:
        self.ctx = ctx
        self.host = host
        self.worker = HostWorker(ctx, host, self)
        self._transports: Dict[int, Transport] = {}

    # -- running a host entry's jobs ----------------------------------------------------
    @abc.abstractmethod
    def run(self, jobs: List[Job]) -> Dict[str, str]:
        """Prepare the host and run ``jobs`` (``queues.run_queues``); job id -> final state."""

    @abc.abstractmethod
    def run_command(self, transport: Transport, job: Job, remote_dir: str, log_path: Path) -> RunnerOutcome:
        """Run ``job``'s command to its end, its output into ``log_path``; StageFailure on timeouts,
        Cancelled when the run stops."""

    # -- host preparation (HostWorker.prepare) ------------------------------------------
    def check_docker(self, transport: Transport) -> None:
        """The host's docker client must reach its engine; job containers left there by orchestrators that
        are gone are removed (host/orphans.py)."""
        timeout = self.worker.timeouts.connect
        hostprep.check_docker(transport, self.host, timeout)
        hostprep.remove_orphans(transport, self.host, timeout)

    def capture_environment(self, transport: Transport) -> Optional[Dict[str, Any]]:
        """The host's facts."""
        worker = self.worker
        return envinfo.capture_host(transport, worker.vendor, self.host.runtime, worker.timeouts.connect)

    def build(self, transport: Transport, log: Path) -> Built:
        """Build (or find) the image, or install the runner on a bare host."""
        worker = self.worker
        if self.host.runtime != "docker":
            runner = images.install_runner(transport, posixpath.join(worker.workdir, "runner"))
            return Built(runner_path=runner)
        spec = hostprep.host_image_spec(self.host, worker.vendor)
        with LogFile(log, append=True) as handle:

            def logged(line: str) -> None:  # into the build log, and onto the host's line as it goes
                handle.write(line + "\n")
                if line.strip():
                    worker.say(None, note=one_line(line)[:LOG_LINE_CHARS])

            how = images.ensure_image(
                transport,
                spec,
                worker.timeouts.build,
                logged,
                offline=self.ctx.cluster.defaults.offline,
                registry=self.host.image.registry,
                lock_dir=posixpath.join(worker.workdir, "locks"),
                on_status=lambda note: worker.say(None, stage=Stage.IMAGE, note=note),
            )
        worker.say(None, stage=Stage.IMAGE, note=f"{how} {spec.tag}")
        facts = origin.image_origin(transport, spec.tag, worker.timeouts.connect)
        return Built(image=spec.tag, environment=dict(facts, image_stack=spec.stack))

    # -- connections and display lines ---------------------------------------------------
    def transport_for(self, device: int) -> Transport:
        """One connection per device: an SSH server caps the sessions of one connection (MaxSessions)."""
        if device not in self._transports:
            self._transports[device] = self.worker.connect()
        return self._transports[device]

    def row(self, device: Optional[int]) -> int:
        """The display line of a job on ``device`` (-1: the host's own line)."""
        return -1 if device is None else device

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
