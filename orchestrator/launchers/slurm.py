"""Launcher ``slurm``: one sbatch job per benchmark job, followed until Slurm says it ended.

The job's command is ``HostWorker.job_command`` (``docker run ...`` or, bare,
``env ... python -m runner_in_container ...``), handed to sbatch as the arguments of a
constant batch script (``slurm_job.sh``), never as shell text. The submit host (the host
entry's ``address``: local or SSH) runs sbatch, squeue, sacct, scancel and srun; the
job's folder, data, weights and workdir are on a filesystem it shares with the nodes,
so the job's output file and result.json are read there. Environment capture and the
vendor's monitor run on the allocated node as ``srun --jobid J --overlap`` steps.
"""

import dataclasses
import itertools
import posixpath
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from runner_in_container.protocol import parse_event

from .. import containers, envinfo, images
from ..config import SlurmSettings
from ..hostrun import INTERRUPTED, HostWorker, RunContext, RunnerOutcome, StageFailure, one_line, stage_errors
from ..monitor import Monitor
from ..plan import Job
from ..transport.base import Cancelled, Transport, TransportError
from .queues import run_queues
from .slurmctl import JobStatus, SlurmClient, SrunTransport

BATCH_SCRIPT = Path(__file__).with_name("slurm_job.sh")
#: how the job's command names its device until the batch script puts in the one Slurm allocated
DEVICE_TOKEN = 987654321
OUTPUT_NAME = "slurm.out"
#: how long a cancelled job may take to end (Slurm's KillWait is 30 s by default)
CANCEL_WAIT_S = 60.0
#: the batch script's first line: where the job runs and which device it got
PREAMBLE = re.compile(r"^rn50bench-slurm: job=(\S+) node=(\S+) device=(\S+) visible=(\S+)$")
#: squeue states in which the batch script has started
_STARTED = ("RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT")


class OutputFollower:
    """The lines a job appends to its output file, read by byte offset through the submit host."""

    def __init__(self, transport: Transport, path: str, timeout: float) -> None:
        self.transport = transport
        self.path = path
        self.timeout = timeout
        self.offset = 0
        self._partial = ""

    def read(self, final: bool = False) -> List[str]:
        """Complete new lines (all of the rest when ``final``); none while the file does not exist."""
        done = self.transport.run(["tail", "-c", "+%d" % (self.offset + 1), "--", self.path], self.timeout)
        if done.returncode == 0:
            self.offset += len(done.stdout.encode("utf-8"))
            self._partial += done.stdout
        lines = self._partial.split("\n")
        self._partial = lines.pop()
        if final and self._partial:
            lines.append(self._partial)
            self._partial = ""
        return lines


@dataclasses.dataclass
class _Watch:
    """What one Slurm job has shown so far."""

    slurm_id: str
    node: Optional[str] = None
    ran: bool = False
    running_since: float = 0.0
    stage: str = ""  # the runner's last stage event
    monitor: Optional[Monitor] = None


class SlurmWorker(HostWorker):
    private_mps = False  # a node's MPS is the site's: only mps: true joins a daemon there
    """A host entry whose jobs Slurm runs: its ``address`` is the submit host."""

    def __init__(self, ctx: RunContext, host: Any) -> None:
        super().__init__(ctx, host)
        self.settings = ctx.cluster.slurm or SlurmSettings()
        self.spec = ctx.cluster.slurm_job_spec(host)
        self.slurm: Optional[SlurmClient] = None
        self.script: Optional[str] = None  # the batch script on the submit host
        self.context: Optional[str] = None  # the image's build context (a tar) on the shared filesystem
        self.labels: Tuple[Tuple[str, str], ...] = ()
        self._env_lock = threading.Lock()
        self._env_node: Optional[str] = None
        self._slots = threading.local()
        self._next_slot = itertools.count()

    # -- preparation: on the submit host; the nodes do the rest -------------------
    def prepare(self) -> None:
        super().prepare()
        assert self.transport is not None
        self.slurm = SlurmClient(self.transport, self.settings.poll_interval_s, self.timeouts.connect)

    def _check_docker(self) -> None:
        """Nothing to check here: docker runs on the nodes (the batch script fails there without it)."""

    def _capture_environment(self) -> None:
        """Deferred: the facts are the allocated node's, captured when the first job runs (_on_node)."""

    def _build(self) -> None:
        """Install the batch script; stage the image's build context (docker) or install the runner (bare)."""
        assert self.transport is not None
        self.script = posixpath.join(self.workdir, "slurm", BATCH_SCRIPT.name)
        self.transport.put(BATCH_SCRIPT, self.script, mode=0o755)
        if self.host.runtime != "docker":
            super()._build()
            return
        spec = self._image_spec()
        self.context = posixpath.join(self.workdir, "images", spec.content_hash + ".tar")
        if self.transport.run(["test", "-f", self.context], timeout=self.timeouts.connect).returncode != 0:
            with tempfile.TemporaryDirectory(prefix="rn50bench-context.") as tmp:
                tar = Path(tmp) / "context.tar"
                with tar.open("wb") as handle:
                    images.write_tar(spec.files, handle)
                self.transport.put(tar, self.context, mode=0o644)
        self.image, self.labels = spec.tag, spec.labels
        self._say(None, stage="image", note="%s: built on each node that lacks it" % spec.tag)

    # -- one connection and one progress row per job thread ------------------------
    def _slot(self) -> int:
        if not hasattr(self._slots, "index"):
            self._slots.index = next(self._next_slot)
        return self._slots.index

    def transport_for(self, device: int) -> Transport:
        """One connection per job thread: each follows its own job (SSH caps sessions per connection)."""
        return super().transport_for(self._slot())

    def _say(self, device: Optional[int], **fields: Any) -> None:
        """Jobs of one host entry run at once under Slurm: their rows are the job threads, not devices."""
        super()._say(None if device is None else self._slot(), **fields)

    # -- the job's sbatch command --------------------------------------------------
    def node_command(self, job: Job, remote_dir: str) -> Tuple[List[str], bool]:
        """The job's argv for the node with its device written as DEVICE_TOKEN, and whether it names one."""
        marked = self.job_command(dataclasses.replace(job, device=DEVICE_TOKEN), remote_dir)
        plain = self.job_command(job, remote_dir)
        token = str(DEVICE_TOKEN)
        if len(marked) != len(plain) or any(token in a for a, b in zip(marked, plain) if a == b):
            raise StageFailure("start", "the job's command contains %s, the device placeholder" % token)
        return marked, marked != plain

    def sbatch_argv(self, job: Job, remote_dir: str) -> List[str]:
        """``sbatch ... slurm_job.sh [options] -- <job command>``: every value is its own argv element."""
        assert self.script is not None
        command, uses_device = self.node_command(job, remote_dir)
        if uses_device and not self.spec.gres:
            raise StageFailure(
                "start",
                "vendor %s runs on a device: ask Slurm for one with gres (slurm.vendors.%s.gres, e.g. gpu:1)"
                % (self.vendor.name, self.vendor.name),
            )
        spec = self.spec
        output = posixpath.join(remote_dir, OUTPUT_NAME).replace("%", "%%")  # sbatch expands %j, %x, ...
        argv = ["sbatch", "--parsable", "--job-name=rn50bench." + job.job_id, "--output=" + output]
        argv += ["--chdir=" + remote_dir, "--nodes=1", "--ntasks=1", "--no-requeue"]
        options = (
            ("--partition", spec.partition), ("--account", spec.account), ("--qos", spec.qos),
            ("--reservation", spec.reservation), ("--time", spec.time_limit), ("--gres", spec.gres),
            ("--constraint", spec.constraint), ("--cpus-per-task", spec.cpus_per_task), ("--mem", spec.mem),
        )  # fmt: skip
        argv += ["%s=%s" % (name, value) for name, value in options if value is not None]
        argv += ["--exclusive"] if spec.exclusive else []
        argv.append(self.script)
        docker = self.host.runtime == "docker"
        if uses_device:
            argv += ["--device-token", str(DEVICE_TOKEN), "--device-from", "docker" if docker else "visible"]
        if docker:
            assert self.image is not None and self.context is not None
            argv += ["--image", self.image, "--context", self.context]
            for key, value in self.labels:
                argv += ["--label", "%s=%s" % (key, value)]
            argv += ["--container", containers.container_name(self.ctx.run_id, job.job_id)]
        return argv + ["--"] + command

    # -- running: submit, follow, map the end state ---------------------------------
    def _run_runner(self, transport: Transport, job: Job, remote_dir: str, log_path: Path) -> RunnerOutcome:
        """Submit the job and follow it to its end; StageFailure when Slurm ended it, Cancelled on Ctrl-C."""
        assert self.slurm is not None
        outcome = RunnerOutcome(self.host.docker.memory if self.host.runtime == "docker" else None)
        with stage_errors("start"):
            argv = self.sbatch_argv(job, remote_dir)
        try:
            watch = _Watch(self.slurm.submit(argv))
        except TransportError as exc:
            raise StageFailure("start", one_line(str(exc))) from None
        self._say(job.device, stage="queued", note="slurm job %s" % watch.slurm_id)
        follower = OutputFollower(transport, posixpath.join(remote_dir, OUTPUT_NAME), self.timeouts.connect)
        with log_path.open("w", buffering=1) as log:
            on_line = self._line_handler(transport, job, watch, outcome, log)
            try:
                status = self._follow(job, watch, follower, on_line)
            except BaseException as exc:
                self._cancel(watch.slurm_id)
                if isinstance(exc, TransportError) and not isinstance(exc, Cancelled):
                    raise StageFailure("run" if watch.ran else "start", one_line(str(exc))) from None
                raise
            finally:
                if watch.monitor is not None:
                    watch.monitor.stop()
                self.slurm.forget(watch.slurm_id)
        outcome.monitor = watch.monitor
        failure = status.failure(watch.ran or status.state == "TIMEOUT")
        if failure is not None:
            stage, reason = failure
            raise StageFailure(
                stage, reason + ("; the runner was in stage %s" % watch.stage if watch.stage else "")
            )
        outcome.returncode = status.returncode()
        return outcome

    def _cancel(self, slurm_id: str) -> None:
        """scancel the job and wait (up to CANCEL_WAIT_S) until Slurm has ended it and its container."""
        assert self.slurm is not None
        try:
            self.slurm.cancel(slurm_id)
            deadline = time.monotonic() + CANCEL_WAIT_S
            while time.monotonic() < deadline:
                status = self.slurm.status(slurm_id)
                if status is not None and status.terminal:
                    return
                time.sleep(self.settings.poll_interval_s)
        except TransportError:
            pass  # the submit host is out of reach: nothing more can be done from here

    def _follow(
        self, job: Job, watch: _Watch, follower: OutputFollower, on_line: Callable[[str], None]
    ) -> JobStatus:
        """Poll squeue/sacct and the output file until the job ends; its final status."""
        assert self.slurm is not None
        shown: Tuple[str, str] = ("", "")
        while True:
            if self.ctx.cancel.is_set():
                raise Cancelled(
                    "%s: %s; slurm job %s cancelled" % (self.host.name, INTERRUPTED, watch.slurm_id)
                )
            status = self.slurm.status(watch.slurm_id)
            if status is not None:
                if status.state in _STARTED and not watch.ran:
                    watch.ran, watch.running_since = True, time.monotonic()
                if (status.state, status.reason) != shown and not status.terminal:
                    shown = (status.state, status.reason)
                    note = "slurm job %s %s" % (watch.slurm_id, status.state)
                    self._say(job.device, note=note + (" (%s)" % status.reason if status.reason else ""))
            for line in follower.read():
                on_line(line)
            if status is not None and status.terminal:
                for line in follower.read(final=True):
                    on_line(line)
                return status
            if watch.ran and time.monotonic() - watch.running_since > self.timeouts.run:
                raise StageFailure(
                    "run",
                    "runner exceeded the run timeout of %g s (timeouts.run); slurm job %s cancelled"
                    % (self.timeouts.run, watch.slurm_id),
                )
            self.ctx.cancel.wait(self.settings.poll_interval_s)

    def _line_handler(
        self, transport: Transport, job: Job, watch: _Watch, outcome: RunnerOutcome, log: Any
    ) -> Callable[[str], None]:
        """Feed output lines to the runner's event handling; the preamble starts the node-side probes."""

        def on_event(event: Dict[str, Any]) -> None:
            if event["ev"] == "stage":
                watch.stage = str(event.get("stage", ""))
            self._on_event(job, event, watch.monitor)

        handle = outcome.stdout_handler(log, on_event)

        def on_line(line: str) -> None:
            match = PREAMBLE.match(line)
            if match and watch.node is None:
                self._on_node(transport, job, watch, match.group(2), match.group(4))
            handle(line)
            if parse_event(line) is None and line.strip():
                outcome.last_stderr = line.strip()  # the job's output mixes stdout and stderr

        return on_line

    def _on_node(self, transport: Transport, job: Job, watch: _Watch, node: str, visible: str) -> None:
        """The job runs on ``node``: start the vendor's monitor there and capture its facts once."""
        watch.node, watch.ran = node, True
        watch.running_since = watch.running_since or time.monotonic()
        self._say(job.device, stage="running", note="slurm job %s on %s" % (watch.slurm_id, node))
        probe = SrunTransport(transport, watch.slurm_id)
        device = int(visible) if visible.isdigit() else 0  # the index the job's own steps see
        watch.monitor = Monitor.start(
            probe, self.vendor, device, self.ctx.cluster.defaults.monitor_interval_s
        )
        with self._env_lock:
            if self._env_node is not None:
                return
            env = envinfo.capture_host(probe, self.vendor, self.host.runtime, self.timeouts.connect)
            if env.get("hostname") is None:
                return  # the step did not run (the job already ended): the next job tries
            env.update(launcher="slurm", slurm_node=node, slurm_job=watch.slurm_id)
            self.env = env
            self.ctx.store.put_environment(self.ctx.run_id, self.host.name, env)
            self._env_node = node


def run_host(ctx: RunContext, host_name: str, jobs: List[Job]) -> Dict[str, str]:
    """Launcher slurm: prepare the submit host, then keep up to ``slurm.max_jobs`` jobs in Slurm at once."""
    host = next(h for h in ctx.cluster.hosts if h.name == host_name)
    worker = SlurmWorker(ctx, host)
    threads = min(len(jobs), worker.settings.max_jobs)
    return run_queues(ctx, worker, jobs, [[job] for job in jobs], threads, lambda job: -1)
