"""Launcher ``ssh``: the orchestrator starts each job itself on a local or SSH host, one job at a time per
device, and follows it through the command's own output."""

import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List

from orchestrator.host.monitors import JobMonitors
from orchestrator.job import containers
from orchestrator.job.plan import Job
from orchestrator.job.runner_output import JobLog, RunnerOutcome
from orchestrator.job.stages import stage_errors
from orchestrator.launchers.base import Launcher
from orchestrator.launchers.queues import run_queues
from orchestrator.outcome import Stage, StageFailure
from orchestrator.safeio.text import one_line
from orchestrator.transport.base import Cancelled, CommandTimeout, Transport, TransportError


class DirectLauncher(Launcher):
    """Jobs started over the host's own transport: ``docker run ...`` or, bare, the runner itself."""

    name = "ssh"

    def run(self, jobs: List[Job]) -> Dict[str, str]:
        """Prepare the host and run its jobs, one queue per device."""
        queues: OrderedDict[int, List[Job]] = OrderedDict()
        for job in jobs:
            queues.setdefault(job.device, []).append(job)
        return run_queues(
            self.ctx, self.worker, jobs, list(queues.values()), len(queues), lambda job: job.device
        )

    def run_command(self, transport: Transport, job: Job, remote_dir: str, log_path: Path) -> RunnerOutcome:
        """Run the job's command to its end; StageFailure on timeouts, Cancelled when the run stops.

        The start timeout runs from launching the command to the runner's "start" event,
        the run timeout over the whole command; either way the container is removed.
        """
        worker, timeouts = self.worker, self.worker.timeouts
        outcome = RunnerOutcome(self.host.docker.memory if self.host.runtime == "docker" else None)
        with stage_errors(Stage.START):
            name = containers.container_name(self.ctx.run_id, job.job_id)
            argv = worker.job_command(job, remote_dir).argv(job.device)
        start_deadline = time.monotonic() + timeouts.start
        late: List[bool] = []

        def stop() -> bool:
            if not outcome.started and time.monotonic() > start_deadline:
                late.append(True)
                return True
            return self.ctx.cancel.is_set()

        monitors = JobMonitors.start(
            transport, worker.vendor, job.device, self.ctx.cluster.defaults.monitor_interval_s, job.scenario
        )
        outcome.monitors = monitors
        with JobLog(log_path) as log:
            on_out = outcome.stdout_handler(log, lambda ev: worker.on_event(job, ev, monitors))
            on_err = outcome.stderr_handler(log)
            try:
                if self.host.runtime == "docker":
                    outcome.returncode = containers.run_container(
                        transport, name, argv, on_out, on_err, timeouts.run, stop
                    )
                else:
                    outcome.returncode = transport.stream(
                        argv, on_out, on_err, timeout=timeouts.run, cancel=stop
                    )
            except CommandTimeout:
                raise StageFailure(
                    Stage.RUN,
                    "runner exceeded the run timeout of %g s (timeouts.run); stopped" % timeouts.run,
                ) from None
            except Cancelled:
                if late:
                    raise StageFailure(
                        Stage.START,
                        "runner did not start within %g s (timeouts.start); stopped" % timeouts.start,
                    ) from None
                raise
            except TransportError as exc:
                raise StageFailure(outcome.failed_stage(), one_line(str(exc))) from None
            finally:
                monitors.stop()
        return outcome


LAUNCHER = DirectLauncher
