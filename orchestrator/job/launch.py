"""What a job's life asks of its launcher: the narrow interface between ``lifecycle.HostWorker`` and a module
of ``orchestrator/launchers/``. Each method returns what it found or made; the worker keeps it (the
launcher writes none of the worker's fields). ``launchers.base.Launcher`` implements it."""

import dataclasses
from pathlib import Path
from typing import Any, Dict, Optional, Protocol

from orchestrator.job.plan import Job
from orchestrator.job.runner_output import RunnerOutcome
from orchestrator.transport.base import Transport


@dataclasses.dataclass(frozen=True)
class Built:
    """What preparing a host's image made: the image's tag (docker) or the runner's path (bare), and facts
    about it for the host's environment (where the image came from)."""

    image: Optional[str] = None
    runner_path: Optional[str] = None
    environment: Dict[str, Any] = dataclasses.field(default_factory=dict)


class Launch(Protocol):
    """How one host entry is prepared and its jobs run, as ``HostWorker`` asks for it."""

    #: this launcher starts a job's own MPS daemon on its host (mps: auto); a batch system's does not
    private_mps: bool
    #: a job runs on the host the worker reaches (its conditions are checked there); a batch system's node
    #: is not reached: its jobs' conditions are not checked
    reaches_job_host: bool

    def check_docker(self, transport: Transport) -> None:
        """The host's docker must answer; StageFailure or TransportError otherwise."""

    def capture_environment(self, transport: Transport) -> Optional[Dict[str, Any]]:
        """The host's facts; None: captured later where the jobs run, handed to
        ``HostWorker.record_environment``."""

    def build(self, transport: Transport, log: Path) -> Built:
        """Build (or find) the image, or install the runner on a bare host; its output into ``log``."""

    def transport_for(self, device: int) -> Transport:
        """The connection a job on ``device`` uses."""

    def row(self, device: Optional[int]) -> int:
        """The display line of a job on ``device`` (-1: the host's own line)."""

    def run_command(self, transport: Transport, job: Job, remote_dir: str, log_path: Path) -> RunnerOutcome:
        """Run ``job``'s command to its end, its output into ``log_path``."""

    def close(self) -> None:
        """Close the connections the launcher opened."""
