"""The one interface every launcher implements, with what most of them share.

A launcher decides how the jobs of one host entry get run. One instance serves one host
entry; its ``HostWorker`` (``self.worker``) owns the job lifecycle and asks the launcher
for what differs: checking the host's docker, capturing its environment, preparing the
image, the connection and display line of a job, and running the job's command to its
end. The defaults here are those of a host the orchestrator reaches itself.
"""

import abc
import posixpath
from pathlib import Path
from typing import Dict, List, Optional

from orchestrator.host import envinfo, images, origin
from orchestrator.host import prepare as hostprep
from orchestrator.job.lifecycle import HostWorker
from orchestrator.job.plan import Job
from orchestrator.job.runner_output import RunnerOutcome
from orchestrator.job.stages import RunContext
from orchestrator.model.cluster import Host
from orchestrator.outcome import Stage
from orchestrator.safeio.logs import LogFile
from orchestrator.transport.base import Transport


class Launcher(abc.ABC):
    """How one host entry's jobs run. A module of this package exposes its subclass as ``LAUNCHER``."""

    #: the cluster file's ``launcher:`` value
    name = ""
    #: this launcher starts a job's own MPS daemon on its host (mps: auto); a batch system's does not
    private_mps = True

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
    def check_docker(self) -> None:
        """The host's docker client must reach its engine; job containers left there by orchestrators that
        are gone are removed (host/orphans.py)."""
        worker = self.worker
        assert worker.transport is not None
        hostprep.check_docker(worker.transport, self.host, worker.timeouts.connect)
        hostprep.remove_orphans(worker.transport, self.host, worker.timeouts.connect)

    def capture_environment(self) -> None:
        """Capture and store the host's facts."""
        worker = self.worker
        assert worker.transport is not None
        worker.env = envinfo.capture_host(
            worker.transport, worker.vendor, self.host.runtime, worker.timeouts.connect
        )
        self.ctx.store.put_environment(self.ctx.run_id, self.host.name, worker.env)

    def build(self) -> None:
        """Build (or find) the image, or install the runner on a bare host."""
        worker = self.worker
        assert worker.transport is not None and worker.build_log is not None
        if self.host.runtime != "docker":
            worker.runner_path = images.install_runner(
                worker.transport, posixpath.join(worker.workdir, "runner")
            )
            return
        spec = hostprep.host_image_spec(self.host, worker.vendor)
        with LogFile(worker.build_log, append=True) as handle:
            how = images.ensure_image(
                worker.transport,
                spec,
                worker.timeouts.build,
                lambda line: handle.write(line + "\n"),
                offline=self.ctx.cluster.defaults.offline,
                registry=self.host.image.registry,
                lock_dir=posixpath.join(worker.workdir, "locks"),
                on_status=lambda note: worker.say(None, stage=Stage.IMAGE, note=note),
            )
        worker.image = spec.tag
        worker.env.update(origin.image_origin(worker.transport, spec.tag, worker.timeouts.connect))
        self.ctx.store.put_environment(self.ctx.run_id, self.host.name, worker.env)
        worker.say(None, stage=Stage.IMAGE, note=f"{how} {spec.tag}")

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
